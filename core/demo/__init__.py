"""Deterministic synthetic demo data: chest X-ray and CT phantoms and a demo cohort."""
