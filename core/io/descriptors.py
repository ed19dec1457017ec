"""Free-text descriptors of a DICOM file (Study Description, Series Description, Protocol Name)
that may name the patient.

Descriptors help a user tell series apart ("CHEST 1.25 LUNG", "SCOUT"), so de-identification
keeps them under PS3.15's Clean Descriptors option, and the CT reader shows them in its series
chooser. But they are typed by people, and sometimes carry the patient's or a physician's name,
the patient id, the accession number, the birth date or the institution. One rule decides for
both: a descriptor names someone when it contains a word of any name in the file, one of those
ids or dates, or a run of six or more digits (a number or a date).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["IdentifyingTokens", "element_strings", "identifying_tokens", "shown_descriptor"]

_WORD = re.compile(r"[^\W_]+")
_LONG_NUMBER = re.compile(r"\d{6,}")

_NAME_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
)
_PHRASE_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate", "InstitutionName")


def element_strings(value: Any) -> list[str]:
    """An element's value as a list of strings (empty for None)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    return [str(value)]


class IdentifyingTokens:
    """What identifies the patient in one dataset, to recognise it in free-text descriptors."""

    def __init__(self, words: Iterable[str], phrases: Iterable[str]) -> None:
        self.words = frozenset(w for w in words if len(w) >= 2)
        self.phrases = tuple(p for p in phrases if len(p) >= 3)

    def found_in(self, texts: Iterable[str]) -> bool:
        """Whether any of ``texts`` contains a name word, an id or date phrase, or a long number."""
        for text in texts:
            folded = text.casefold()
            if _LONG_NUMBER.search(folded) or any(p in folded for p in self.phrases):
                return True
            if any(word in self.words for word in _WORD.findall(folded)):
                return True
        return False


def identifying_tokens(ds: Dataset) -> IdentifyingTokens:
    """The name words and id phrases of ``ds`` (its top level)."""
    words: list[str] = []
    for keyword in _NAME_KEYWORDS:
        for value in element_strings(ds.get(keyword)):
            words.extend(_WORD.findall(value.casefold()))
    phrases = [v.strip().casefold() for keyword in _PHRASE_KEYWORDS for v in element_strings(ds.get(keyword))]
    return IdentifyingTokens(words, phrases)


def shown_descriptor(ds: Dataset, keyword: str = "SeriesDescription") -> str:
    """A descriptor of ``ds`` as the app may show it: stripped, or "" when it may name someone."""
    text = " ".join(element_strings(ds.get(keyword))).strip()
    return "" if text and identifying_tokens(ds).found_in([text]) else text
