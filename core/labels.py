"""The label vocabularies of the models and data, and the spellings public datasets use.

One place for every class name: the demo X-ray classes, the real data's classes, the order a
model's outputs follow, the CT slice model's classes, and the aliases that map a dataset's
folder names and label spellings (Kaggle's ``Viral Pneumonia``, Soares' ``non_covid``, Cohen's
``Pneumonia/Viral/COVID-19``) to ours.
"""

from __future__ import annotations

from core.errors import InvalidInputError

#: Output order of the demo 3-class chest X-ray models (and the case library's diagnoses).
XRAY_LABELS: tuple[str, ...] = ("Normal", "Viral pneumonia", "COVID-19")

#: The middle class of the real adult X-ray data: pneumonia of any cause (NIH ChestX-ray14's
#: "Pneumonia" label), not specifically viral as the demo's "Viral pneumonia".
PNEUMONIA_ANY: str = "Pneumonia (non-COVID)"

#: The negative class of real COVID-19 CT data (Soares et al.): not infected by SARS-CoV-2,
#: which is not the same as healthy.
NON_COVID: str = "Non-COVID"

#: Every class a training set may use, in the order a model's outputs follow: a model's labels
#: are the classes its data holds, in this order (the demo data gives :data:`XRAY_LABELS`).
KNOWN_LABELS: tuple[str, ...] = ("Normal", NON_COVID, "Viral pneumonia", PNEUMONIA_ANY, "COVID-19")


#: The classes of the demo CT slice model (seed 002), in its output order.
SLICE_CLASSES: tuple[str, str] = ("Normal", "COVID-19")

#: Folder names and label spellings of the public datasets, lower-cased, to our labels.
LABEL_ALIASES: dict[str, str] = {
    "normal": "Normal",
    "no finding": "Normal",
    "viral pneumonia": "Viral pneumonia",
    "viral": "Viral pneumonia",
    "pneumonia/viral": "Viral pneumonia",
    "covid": "COVID-19",
    "covid-19": "COVID-19",
    "covid19": "COVID-19",
    "pneumonia/viral/covid-19": "COVID-19",
    "viral_pneumonia": "Viral pneumonia",
    "viral-pneumonia": "Viral pneumonia",
    "pneumonia": PNEUMONIA_ANY,
    "bacterial pneumonia": PNEUMONIA_ANY,
    "pneumonia (non-covid)": PNEUMONIA_ANY,
    "non-covid pneumonia": PNEUMONIA_ANY,
    "non-covid": NON_COVID,
    "non_covid": NON_COVID,
    "noncovid": NON_COVID,
    "non covid": NON_COVID,
    "covid-negative": NON_COVID,
    "covid_19": "COVID-19",
    "covid-positive": "COVID-19",
}


def canonical_label(raw: str, labels: tuple[str, ...] = XRAY_LABELS) -> str:
    """Map a folder name or label spelling to one of ``labels``; raise on anything else."""
    key = raw.strip().lower()
    for label in labels:
        if key == label.lower():
            return label
    mapped = LABEL_ALIASES.get(key)
    if mapped in labels:
        return mapped
    raise InvalidInputError(f"Unknown label '{raw}'. Expected one of: {', '.join(labels)}.")


def cohen_label(finding: str) -> str | None:
    """Our label for a Cohen ``finding`` value, or None for other diseases (kept, unlabelled)."""
    text = finding.strip().lower()
    if not text:
        return None
    if "covid" in text:
        return "COVID-19"
    if text in {"no finding", "normal"}:
        return "Normal"
    if text.startswith("pneumonia/viral") or text in {"viral pneumonia", "viral"}:
        return "Viral pneumonia"
    return None
