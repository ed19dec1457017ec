"""Training data sources for the X-ray classifiers, and the patient-level split.

A source is either a folder of class folders (``COVID/``, ``NORMAL/``, ``Viral Pneumonia/`` as
in the Kaggle COVID-19 Radiography Database, ``covid/``, ``non_covid/`` as in the Soares CT
slices) or a CSV manifest with columns ``path,label[,patient_id]`` (paths relative to the CSV's
folder). Labels are read in the spellings the public datasets use (:data:`LABEL_ALIASES`); a
model learns the classes its data holds, in the order of :data:`core.types.KNOWN_LABELS`.

Images without a patient id (class folders, empty ``patient_id`` cells) are grouped for the
split by blocks of neighbouring file numbers when ``block`` > 1: in the public sets
neighbouring numbers are often one patient or consecutive slices of one scan, so a random
split by image would put one patient on both sides.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InsufficientDataError, InvalidInputError
from core.labels import KNOWN_LABELS, canonical_label

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ""}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    patient_id: str
    #: True when the source gives no patient id and ``patient_id`` only names the image
    #: (``row-N`` of a CSV, ``folder/file`` of a class folder).
    anonymous: bool = False


_NUMBER = re.compile(r"(\d+)")


def split_group(sample: Sample, block: int = 1) -> str:
    """The unit a split keeps on one side: the patient where known; else, with ``block`` > 1,
    the block of ``block`` neighbouring file numbers in the same folder and class (the last
    number in the file name: ``bimcv-01822.png`` -> 1822); else the image itself."""
    if sample.anonymous and block > 1:
        numbers = _NUMBER.findall(sample.path.stem)
        if numbers:
            return f"block:{sample.label}:{sample.path.parent.name}:{int(numbers[-1]) // block}"
    return sample.patient_id


def label_set(samples: list[Sample]) -> tuple[str, ...]:
    """The classes present in ``samples``, in :data:`core.types.KNOWN_LABELS` order."""
    present = {s.label for s in samples}
    return tuple(label for label in KNOWN_LABELS if label in present)


def _from_folders(root: Path) -> list[Sample]:
    samples: list[Sample] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            label = canonical_label(folder.name, KNOWN_LABELS)
        except InvalidInputError:
            continue  # e.g. a masks/ folder beside the class folders
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                # No patient ids in a class-folder dataset: the image stands for its patient.
                samples.append(Sample(f, label, f"{folder.name}/{f.relative_to(folder)}", anonymous=True))
    return samples


def _from_csv(path: Path) -> list[Sample]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "path" not in cols or "label" not in cols:
            raise InvalidInputError(f"{path.name} needs the columns path and label (found: {', '.join(cols)}).")
        samples = []
        for i, row in enumerate(reader, start=2):
            rel = (row[cols["path"]] or "").strip()
            if not rel:
                raise InvalidInputError(f"{path.name}, line {i}: empty path.")
            file = (path.parent / rel).resolve()
            pid = (row.get(cols.get("patient_id", ""), "") or "").strip() if "patient_id" in cols else ""
            label = canonical_label(row[cols["label"]], KNOWN_LABELS)
            samples.append(Sample(file, label, pid or f"row-{i}", anonymous=not pid))
    return samples


def load_source(src: str | Path) -> list[Sample]:
    """Read a class-folder dataset or a CSV manifest into samples."""
    src = Path(src)
    if src.is_dir():
        samples = _from_folders(src)
    elif src.is_file() and src.suffix.lower() == ".csv":
        samples = _from_csv(src)
    else:
        raise InvalidInputError(f"{src} is neither a folder of class folders nor a CSV manifest.")
    if not samples:
        raise InsufficientDataError(f"No images with a known label were found in {src}.")
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        raise InvalidInputError(f"{len(missing)} listed image(s) do not exist, e.g. {missing[0]}.")
    return samples


def split_by_patient(
    samples: list[Sample],
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    block: int = 1,
) -> dict[str, list[Sample]]:
    """Seeded train/dev/test split in which no patient (or block, :func:`split_group`) appears
    in two parts.

    Stratified: each label's groups (a group's label is that of its first image) are shuffled
    and cut by ``fractions`` separately, so every part keeps the class mix.
    """
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_patient[split_group(s, block)].append(s)
    by_label: dict[str, list[str]] = defaultdict(list)
    for pid, items in by_patient.items():
        by_label[items[0].label].append(pid)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Sample]] = {"train": [], "dev": [], "test": []}
    for label in sorted(by_label):
        pids = sorted(by_label[label])
        rng.shuffle(pids)
        n = len(pids)
        n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
        n_dev = max(1, round(n * fractions[1])) if n >= 3 else 0
        cuts = {"test": pids[:n_test], "dev": pids[n_test : n_test + n_dev], "train": pids[n_test + n_dev :]}
        for part, ids in cuts.items():
            for pid in ids:
                parts[part].extend(by_patient[pid])
    if not parts["train"] or not parts["dev"] or not parts["test"]:
        raise InsufficientDataError("Too few patients to make train, dev and test splits (need at least 3 per class).")
    return parts


#: Suffixes of 2D slice images (not series) among training data.
_SLICE_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def is_image_source(src: str | Path) -> bool:
    """Whether ``src`` is a 2D image dataset (class folders of image files, or a CSV whose first
    ``path`` is an image file) rather than CT series: how ``train-ct-slice`` tells slice images
    (the Soares set) from series."""
    src = Path(src)
    if src.is_dir():
        if (src / "metadata.csv").is_file():
            return False
        return any(
            f.is_file() and f.suffix.lower() in _SLICE_IMAGE_SUFFIXES
            for folder in src.iterdir()
            if folder.is_dir()
            for f in folder.iterdir()
        )
    if src.is_file() and src.suffix.lower() == ".csv":
        with src.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            row = next(reader, None)
        if row is None or "path" not in cols:
            return False
        first = src.parent / (row[cols["path"]] or "").strip()
        return first.is_file() and first.suffix.lower() in _SLICE_IMAGE_SUFFIXES
    return False
