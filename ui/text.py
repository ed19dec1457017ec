"""Wording shown on several pages."""

DISCLAIMER = (
    "Research use only. This dashboard is not a medical device and must not be used for diagnosis "
    "or treatment decisions. The shipped demo models were trained on synthetic phantoms, not on "
    "patients' images."
)
