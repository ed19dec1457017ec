"""What a model is evaluated on: the held-out (or dev) split recorded at training time, or a
dataset the user points to.

Every training command records its split in the model card: the X-ray classifiers the test and
dev files, the CT models the held-out test patients (and the folds, seeded), the findings model
its seed. This module rebuilds those cases from the same source with the same seeded split
functions the trainers used, so the numbers on the Model performance page are the model's
numbers on data it never trained on. Sources that are not on disk any more but were drawn by
the project's own generator (the demo datasets) are drawn again: the generators are seeded and
deterministic.

A case is loaded lazily: an X-ray case gives the image in [0, 1] as the model's preprocessing
expects it (:meth:`core.types.XrayImage.windowed`), a CT case its volume in Hounsfield units
and, for the demo phantoms, the fraction of each slice's lung drawn as lesion (the per-slice
truth).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.datasets.ct_sources import load_ct_source
from core.datasets.findings import DEMO_COHORT_SEED, csv_samples, demo_xrays, draw_demo_xray
from core.datasets.sources import Sample, load_source, split_by_patient
from core.datasets.splits import patient_split
from core.demo.xray_phantom import FINDINGS, write_xray_dataset
from core.errors import InsufficientDataError, InvalidInputError
from core.io.images import read_xray
from core.labels import SLICE_CLASSES
from core.models.manifest import ModelCard

#: How the two X-ray demo datasets were made: the card's note names the command.
_DEMO_XRAY_COMMAND = re.compile(
    r"demo xray-dataset --per-class (?P<per_class>\d+) --size (?P<size>\d+) --seed (?P<seed>\d+)"
)
SPLITS = ("test", "dev", "train")
#: Kinds evaluated as single-label 2D image classifiers: the X-ray models, and the CT slice model
#: when it was trained on slice images (the Soares set) rather than on series.
IMAGE_KINDS = ("xray", "slice-images")


@dataclass(frozen=True)
class EvalCase:
    """One image or scan to evaluate on.

    ``label`` is the class name from the source (one of :data:`core.types.XRAY_LABELS` for the
    3-class and CT sources); ``findings`` the 0/1 finding labels for the multi-label model.
    """

    case_id: str
    patient_id: str
    label: str
    load: Callable[[], Any]
    findings: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EvalData:
    """The cases a model is evaluated on, and in words where they come from."""

    split: str  # "held-out", "dev" or "user"
    description: str
    source: str
    cases: tuple[EvalCase, ...]

    @property
    def n_patients(self) -> int:
        return len({c.patient_id for c in self.cases})

    def subset(self, keep: Callable[[EvalCase], bool], description: str | None = None) -> EvalData:
        return EvalData(
            self.split, description or self.description, self.source, tuple(c for c in self.cases if keep(c))
        )


def model_kind(card: ModelCard) -> str:
    """``xray`` (3-class), ``findings`` (multi-label), ``ct-volume``, ``ct-slice`` (trained on
    series), ``slice-images`` (the slice model trained on slice images), or the card's task for
    the series models (``survival``, ``prognosis``)."""
    task = card.extra.get("task") if card.extra else None
    if card.multi_label:
        return "findings"
    if task in ("survival", "prognosis"):
        return str(task)
    recorded = card.training.get("data") if card.training else None
    if card.input_kind == "ct-slice" and isinstance(recorded, dict) and "test_files" in recorded:
        return "slice-images"
    return card.input_kind


def evaluation_data(card: ModelCard, data: str | Path | None = None, split: str = "test") -> EvalData:
    """The cases to evaluate ``card``'s model on.

    Parameters
    ----------
    card
        The model's card from the manifest.
    data
        ``None`` for the split recorded at training time; else a dataset in one of the formats
        the model's training command reads (for X-ray models class folders or a CSV manifest,
        for the findings model a CheXpert-style CSV, for CT models ``demo``, a folder with a
        ``metadata.csv`` or a CSV manifest of series), every case of which is used.
    split
        ``test`` (the held-out split), ``dev`` (where the calibration temperature and the OOD
        threshold are fitted) or ``train`` (where the OOD reference is fitted); only with
        ``data=None``.

    Raises
    ------
    InvalidInputError
        The model kind cannot be evaluated here, or the recorded split cannot be rebuilt.
    """
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
    kind = model_kind(card)
    if kind in ("survival", "prognosis"):
        raise InvalidInputError(
            f"{card.id} is a {kind} model: its held-out results are the ones recorded at training time "
            "(see the Survival and prognosis page for its Kaplan-Meier analysis)."
        )
    if kind in IMAGE_KINDS:
        return _xray_data(card, data, split)
    if kind == "findings":
        return _findings_data(card, data, split)
    if kind in ("ct-volume", "ct-slice"):
        return _ct_data(card, data, split)
    raise InvalidInputError(f"Evaluating models of kind {kind!r} is not supported.")


def _recorded(card: ModelCard) -> dict[str, Any]:
    data = card.training.get("data") if card.training else None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{card.id}'s card records no training data, so its held-out split is unknown.")
    return data


def _seed(card: ModelCard) -> int:
    return int((card.training.get("config") or {}).get("seed", 0))


def _block(card: ModelCard) -> int:
    """The split block of images without patient ids (1 for cards trained before blocks)."""
    return int((card.training.get("config") or {}).get("block", 1))


_WORDS = {"test": "held-out test", "dev": "dev", "train": "training"}


def _split(samples: list[Any], card: ModelCard) -> dict[str, list[Any]]:
    """The trainer's split of ``samples`` (core.training.xray.train_xray): by the recorded block,
    image by image where there are too few images for blocks, as the trainer falls back."""
    try:
        return split_by_patient(samples, seed=_seed(card), block=_block(card))
    except InsufficientDataError:
        if _block(card) == 1:
            raise
        return split_by_patient(samples, seed=_seed(card), block=1)


# ----------------------------------------------------------------------------- X-ray (3 classes)


def _file_loader(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return read_xray(path.read_bytes(), path.name).windowed()

    return load


def _bytes_loader(raw: bytes, name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return read_xray(raw, name).windowed()

    return load


def _xray_cases(samples: Sequence[Any], base: Path) -> list[EvalCase]:
    cases = []
    for s in samples:
        try:
            rel = str(s.path.resolve().relative_to(base.resolve()))
        except ValueError:
            rel = str(s.path)
        cases.append(EvalCase(rel, s.patient_id, s.label, _file_loader(s.path)))
    return cases


@lru_cache(maxsize=2)
def _demo_xray_dataset(per_class: int, size: int, seed: int) -> tuple[tuple[Any, ...], dict[str, bytes]]:
    """The demo X-ray dataset ``python -m core demo xray-dataset`` writes, drawn again (once per
    process: the three demo X-ray models share it): its samples with paths relative to the
    dataset, and each file's bytes."""
    with tempfile.TemporaryDirectory(prefix="eval-xray-") as tmp:
        root = write_xray_dataset(tmp, n_per_class=per_class, seed=seed, size=size).resolve()
        samples = load_source(root / "manifest.csv")
        relative = tuple(Sample(s.path.resolve().relative_to(root), s.label, s.patient_id) for s in samples)
        files = {str(r.path): s.path.read_bytes() for r, s in zip(relative, samples, strict=True)}
    return relative, files


def _xray_data(card: ModelCard, data: str | Path | None, split: str) -> EvalData:
    if data is not None:
        samples = load_source(data)
        base = Path(data) if Path(data).is_dir() else Path(data).parent
        return EvalData("user", f"all {len(samples)} images of {data}", str(data), tuple(_xray_cases(samples, base)))
    recorded = _recorded(card)
    wanted = recorded.get(f"{split}_files")
    if not wanted and split != "train":
        raise InvalidInputError(f"{card.id}'s card does not list its {split} files.")
    source = Path(str(recorded.get("source", "")))
    words = _WORDS[split]
    if source.exists():
        samples = load_source(source)
        part = _split(samples, card)[split]
        cases = _xray_cases(part, source if source.is_dir() else source.parent)
        how = f"read from {source}"
    else:
        match = _DEMO_XRAY_COMMAND.search(str(recorded.get("note", "")))
        if match is None:
            raise InvalidInputError(
                f"{card.id} was trained on {source}, which is not on this machine; point --data at a copy of it."
            )
        samples, files = _demo_xray_dataset(int(match["per_class"]), int(match["size"]), int(match["seed"]))
        part = _split(list(samples), card)[split]
        cases = [
            EvalCase(str(s.path), s.patient_id, s.label, _bytes_loader(files[str(s.path)], s.path.name)) for s in part
        ]
        how = "drawn again by the demo generator"
    found = sorted(c.case_id for c in cases)
    if split == "train":
        counts = (recorded.get("images") or {}).get("train") or {}
        wanted = found if sum(counts.values()) == len(found) else []
    if found != sorted(wanted):
        raise InvalidInputError(
            f"The {words} split rebuilt from {source} is not the one {card.id} recorded "
            f"({len(set(found) & set(wanted))} of {len(wanted)} files match): the data changed since training."
        )
    description = f"the {words} split recorded at training time: {len(cases)} images ({how})"
    return EvalData(_split_name(split), description, str(source), tuple(cases))


def _split_name(split: str) -> str:
    return {"test": "held-out", "dev": "dev", "train": "train"}[split]


# ----------------------------------------------------------------------------- findings


def _findings_data(card: ModelCard, data: str | Path | None, split: str) -> EvalData:
    if data is not None:
        samples, targets, problems = csv_samples(data)
        cases = [
            EvalCase(str(s.path.name), s.patient_id, s.label, _file_loader(s.path), tuple(int(v) for v in t))
            for s, t in zip(samples, targets, strict=True)
        ]
        skipped = f"; {len(problems)} rows skipped" if problems else ""
        return EvalData("user", f"all {len(cases)} images of {data}{skipped}", str(data), tuple(cases))
    config = card.training.get("config") or {}
    source = str(_recorded(card).get("source", ""))
    if len(FINDINGS) != len(card.labels):
        raise InvalidInputError(f"{card.id} has {len(card.labels)} outputs, the findings list {len(FINDINGS)}.")
    words = _WORDS[split]
    if source.startswith("demo"):
        n_patients = int(config.get("demo_patients", 0))
        if n_patients < 1:
            raise InvalidInputError(f"{card.id}'s card does not record how many demo patients it was trained on.")
        xrays = demo_xrays(n_patients, DEMO_COHORT_SEED)
        part = {id(s) for s in split_by_patient([x.sample for x in xrays], seed=_seed(card))[split]}
        cases = []
        for x in xrays:
            if id(x.sample) in part:  # only the split's phantoms are drawn
                pixels, findings = draw_demo_xray(x)
                sample = x.sample
                cases.append(
                    EvalCase(str(sample.path), sample.patient_id, sample.label, lambda p=pixels: p, tuple(findings))
                )
        how = "drawn again by the demo generator"
    else:
        path = Path(source.removeprefix("CSV ").strip())
        if not path.is_file():
            raise InvalidInputError(
                f"{card.id} was trained on {path}, which is not on this machine; point --data at it."
            )
        samples, targets, _ = csv_samples(path)
        part = {id(s) for s in split_by_patient(samples, seed=_seed(card))[split]}
        cases = [
            EvalCase(str(s.path.name), s.patient_id, s.label, _file_loader(s.path), tuple(int(v) for v in t))
            for s, t in zip(samples, targets, strict=True)
            if id(s) in part
        ]
        how = f"read from {path}"
    recorded_n = (_recorded(card).get("images") or {}).get(split)
    if isinstance(recorded_n, int) and recorded_n != len(cases):
        raise InvalidInputError(
            f"The {words} split rebuilt from {source} has {len(cases)} images; {card.id} recorded {recorded_n}: "
            "the data changed since training."
        )
    description = f"the {words} split recorded at training time: {len(cases)} images ({how})"
    return EvalData(_split_name(split), description, source, tuple(cases))


# ----------------------------------------------------------------------------- CT


def _ct_cases(scans: Sequence[Any]) -> list[EvalCase]:
    return [EvalCase(s.name, s.patient_id, s.label, s.load) for s in scans]


def ct_split(card: ModelCard, scans: Sequence[Any]) -> tuple[set[str], set[str]]:
    """(held-out test patients, the kept fold's validation patients) of a CT model, from its
    card: the test patients as recorded, the folds re-made with the trainer's seeded split."""
    recorded = _recorded(card)
    test = set(recorded.get("test_patients") or [])
    if not test:
        raise InvalidInputError(f"{card.id}'s card does not list its held-out test patients.")
    config = card.training.get("config") or {}
    if card.input_kind == "ct-volume":
        label = {s.patient_id: int(s.label == "COVID-19") for s in scans}
    else:
        label = {s.patient_id: SLICE_CLASSES.index(s.label) for s in scans if s.label in SLICE_CLASSES}
    patients = sorted(label)
    remade, folds = patient_split(
        patients,
        [label[p] for p in patients],
        int(config.get("folds", 5)),
        float(config.get("test_fraction", 0.15)),
        int(config.get("seed", 0)),
    )
    if remade != test:
        raise InvalidInputError(
            f"The held-out patients rebuilt from {recorded.get('source')} differ from the ones {card.id} recorded: "
            "the data changed since training."
        )
    kept = int(card.training.get("kept_fold") or 1)
    return test, folds[kept - 1]


def _ct_data(card: ModelCard, data: str | Path | None, split: str) -> EvalData:
    if data is not None:
        scans = load_ct_source(data, seed=0)
        return EvalData("user", f"all {len(scans)} CT scans of {data}", str(data), tuple(_ct_cases(scans)))
    recorded = _recorded(card)
    source = str(recorded.get("source", ""))
    scans = load_ct_source(source, seed=_seed(card))
    test, dev = ct_split(card, scans)
    if split == "train":  # the kept fold's training patients: everyone else the model could learn from
        eligible = {s.patient_id for s in scans if card.input_kind == "ct-volume" or s.label in SLICE_CLASSES}
        keep = eligible - test - dev
    else:
        keep = test if split == "test" else dev
    chosen = [s for s in scans if s.patient_id in keep]
    if not chosen:
        raise InsufficientDataError(f"No scans of {card.id}'s {split} patients were found in {source}.")
    words = {
        "test": f"the held-out test patients recorded at training time ({len(keep)} patients, {len(chosen)} scans)",
        "dev": f"the validation patients of the kept fold ({len(keep)} patients, {len(chosen)} scans)",
        "train": f"the training patients of the kept fold ({len(keep)} patients, {len(chosen)} scans)",
    }[split]
    return EvalData(_split_name(split), words, source, tuple(_ct_cases(chosen)))


def held_out_for(card: ModelCard, cases: Sequence[EvalCase]) -> set[str]:
    """The case ids among ``cases`` that ``card``'s model never trained on, judged from its card:
    used to compare models on the cases held out by all of them."""
    kind = model_kind(card)
    recorded = _recorded(card)
    if kind in IMAGE_KINDS:
        held = set(recorded.get("test_files") or [])
        return {c.case_id for c in cases if c.case_id in held}
    if kind in ("ct-volume", "ct-slice"):
        test = set(recorded.get("test_patients") or [])
        # The slice model never sees patients of other classes (viral pneumonia): they are unseen.
        unseen_class = (lambda c: c.label not in SLICE_CLASSES) if kind == "ct-slice" else (lambda c: False)
        return {c.case_id for c in cases if c.patient_id in test or unseen_class(c)}
    raise InvalidInputError(f"Comparing {kind} models is not supported.")
