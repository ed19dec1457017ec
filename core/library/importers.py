"""Importers that bring datasets into the case library, de-identified.

Three layouts are read (PRODUCT.md, "Data the product reads"):

- ``cohen``: the covid-chestxray-dataset layout, ``metadata.csv`` + ``images/``. One row is
  one study: an X-ray file, a CT slice image, or (the demo cohort's CT rows) a folder of DICOM
  slices. Frontal views by default; lateral views and CT rows kept or skipped by option.
  Offsets, survival, intubation, ICU and clinical notes are kept; the demo cohort's extra
  columns (``offset_admission``, ``length_of_stay``, ``outcome`` and finding columns) too.
- ``folders``: class folders (``COVID/``, ``NORMAL/``, ``Viral Pneumonia/`` as in the Kaggle
  COVID-19 Radiography Database; ``CT_COVID/``, ``CT_NonCOVID/`` as in COVID-CT). Each image
  is its own patient, since those datasets carry no patient ids.
- ``csv``: a manifest with ``path, label, patient_id`` and optionally ``offset_days,
  offset_admission_days, survival, age, sex, view, note, outcome, modality, length_of_stay``;
  paths relative to the manifest's folder (a folder path is a CT series).

De-identification: patients become keyed pseudonyms; DICOM files go through
:class:`core.library.deid.Deidentifier` (names, ids, birth date, addresses, institution,
accession removed, UIDs re-mapped consistently, dates shifted); other images are decoded and
re-encoded as PNG, which drops every metadata chunk; original file names are never stored.
Burned-in text: de-identification leaves the pixels as they are, so every study is checked on
its original files (:mod:`core.library.burned_in`: the DICOM header's Burned In Annotation, and
text-like marks along the image's borders; for a CT series the header of every slice and the
pixels of a few slices through it). A flagged study is still imported, and the report says so
in a warning naming its row, patient pseudonym and study id (never a file name).
A study whose source files were imported before (same content) is recognised by a keyed
fingerprint and skipped, so re-importing a source does not duplicate cases. A malformed row or
a missing image is reported with its row number and skipped; the rest imports.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from core.demo.ct_phantom import CT_FINDINGS
from core.demo.xray_phantom import FINDINGS
from core.errors import DashboardError, InvalidInputError
from core.io.ct_series import read_ct_series
from core.io.images import read_xray
from core.io.numbers import finite_float
from core.labels import canonical_label, cohen_label
from core.library.burned_in import BurnedInCheck, check_burned_in, header_reasons, text_reasons
from core.library.deid import Deidentifier
from core.library.records import ImportReport, NewPatient, NewStudy
from core.library.store import CaseLibrary, NewImage, content_key
from core.types import Progress, XrayImage

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("cohen", "folders", "csv")
THUMBNAIL_PX: int = 256
#: The lung window used for CT thumbnails: (center, width) in HU.
LUNG_WINDOW: tuple[float, float] = (-600.0, 1500.0)
LATERAL_VIEWS = {"l", "lateral", "ll", "rl"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
#: How many slices of a CT series, spread from its first to its last, the burned-in text check
#: looks at (the header check reads every slice).
CHECKED_SLICES: int = 5


# ----------------------------------------------------------------------------- values


def _shown(text: str) -> str:
    """A path from a table, as one line in a problem report: line breaks and other control
    characters written as escapes (``\\n``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _label(raw: str) -> str | None:
    if not raw.strip():
        return None
    mapped = cohen_label(raw)
    if mapped is not None:
        return mapped
    return canonical_label(_shown(raw.strip()))  # its error quotes the value: one line


def _number(raw: str | None, what: str) -> float | None:
    text = (raw or "").strip()
    if not text:
        return None
    value = finite_float(text)
    if value is None:
        raise InvalidInputError(f"{what} {text!r} is not a number")
    return value


def _yes_no(raw: str | None, what: str) -> bool | None:
    text = (raw or "").strip().lower()
    if not text:
        return None
    if text in {"y", "yes", "1", "true"}:
        return True
    if text in {"n", "no", "0", "false"}:
        return False
    raise InvalidInputError(f"{what} {text!r} is not Y or N")


def _sex(raw: str | None) -> str | None:
    text = (raw or "").strip().upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}.get(text)


def _outcome(raw: str | None, survival: bool | None) -> str | None:
    text = (raw or "").strip().lower()
    if text in {"discharged", "died", "in hospital"}:
        return text
    if text in {"dead", "death", "deceased"}:
        return "died"
    if text:
        raise InvalidInputError(f"outcome {text!r} is not discharged, died or in hospital")
    return "died" if survival is False else None


def _findings(row: dict[str, str], names: Iterable[str]) -> dict[str, int] | None:
    out: dict[str, int] = {}
    for name in names:
        text = (row.get(name) or "").strip()
        if text:
            value = _number(text, name)
            if value not in (-1.0, 0.0, 1.0):
                raise InvalidInputError(f"{name} must be 1, 0, -1 or blank, not {text!r}")
            out[name] = int(value)  # type: ignore[arg-type]
    return out or None


#: The finding columns an import reads where a CSV has them: the demo cohort's X-ray and CT findings.
KNOWN_FINDINGS: tuple[str, ...] = FINDINGS + tuple(f for f in CT_FINDINGS if f not in FINDINGS)


# ----------------------------------------------------------------------------- images


def _png(pixels_u8_or_u16: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels_u8_or_u16).save(buf, format="PNG")
    return buf.getvalue()


def _thumbnail(unit: np.ndarray) -> bytes:
    """PNG (at most THUMBNAIL_PX on the long side) of a float image in [0, 1]."""
    im = Image.fromarray(np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8))
    im.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def prepare_image(name: str, data: bytes, secret: bytes, pseudonym: str, modality: str) -> NewImage:
    """De-identify one 2D image file and make its thumbnail (X-ray, or a CT slice image)."""
    return _read_image(data, secret, pseudonym, modality)[0]


def prepare_checked_image(
    name: str, data: bytes, secret: bytes, pseudonym: str, modality: str
) -> tuple[NewImage, BurnedInCheck]:
    """:func:`prepare_image`, and whether the original file may carry burned-in text (its
    DICOM header before de-identification, its pixels as displayed)."""
    image, read = _read_image(data, secret, pseudonym, modality)
    return image, check_burned_in(read.windowed(), dicom=(data,))


def _read_image(data: bytes, secret: bytes, pseudonym: str, modality: str) -> tuple[NewImage, XrayImage]:
    if _is_dicom(data):
        data = Deidentifier(secret).deidentify_bytes(data, pseudonym)
        image = read_xray(data, "the image")
        stored = ("image.dcm", data)
    else:
        image = read_xray(data, "the image")
        # Re-encoding drops metadata chunks (text, EXIF, ICC) that might name someone.
        pixels = image.pixels
        if image.bits_stored > 8:
            raw = np.clip(np.rint(pixels), 0, 65535).astype(np.uint16)
        else:
            raw = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        stored = ("image.png", _png(raw))
    kind = "xray" if modality == "X-ray" else "ct-slice"
    height, width = image.shape
    return NewImage(kind, (stored,), width=width, height=height, thumbnail_png=_thumbnail(image.windowed())), image


def prepare_series(files: Sequence[tuple[str, bytes]], secret: bytes, pseudonym: str) -> NewImage:
    """De-identify a CT series (DICOM slices) and make a lung-window thumbnail."""
    return prepare_checked_series(files, secret, pseudonym)[0]


def prepare_checked_series(
    files: Sequence[tuple[str, bytes]], secret: bytes, pseudonym: str
) -> tuple[NewImage, BurnedInCheck]:
    """:func:`prepare_series`, and whether the original series may carry burned-in text: the
    header of every slice, and the pixels of :data:`CHECKED_SLICES` slices spread through it
    in the lung window (as the thumbnail shows them)."""
    reasons = [reason for _, data in files for reason in header_reasons(data)]
    deid = Deidentifier(secret)
    cleaned = [(f"IM-{i + 1:04d}.dcm", deid.deidentify_bytes(data, pseudonym)) for i, (_, data) in enumerate(files)]
    volume = read_ct_series(cleaned)
    center, width = LUNG_WINDOW
    for z in np.unique(np.linspace(0, volume.hu.shape[0] - 1, CHECKED_SLICES).round().astype(int)):
        reasons.extend(text_reasons(np.clip((volume.hu[z] - (center - width / 2)) / width, 0.0, 1.0)))
    return series_image(cleaned, volume.hu), BurnedInCheck.of(reasons)


def series_image(files: Sequence[tuple[str, bytes]], hu: np.ndarray) -> NewImage:
    """A CT series to store: its (already de-identified) slices, and a lung-window thumbnail of
    the axial slice of ``hu`` with the most aerated lung, which shows the lungs best."""
    lung = ((hu > -950) & (hu < -700)).sum(axis=(1, 2))
    center, width = LUNG_WINDOW
    unit = (hu[int(np.argmax(lung))] - (center - width / 2)) / width
    depth, height, width_px = hu.shape
    return NewImage(
        "ct-series", tuple(files), width=width_px, height=height, depth=depth, thumbnail_png=_thumbnail(unit)
    )


def _read_files(path: Path) -> list[tuple[str, bytes]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [(p.name, p.read_bytes()) for p in files]
    return [(path.name, path.read_bytes())]


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class ImportRow:
    """One study to import, parsed from a row, before its files are read."""

    line: int
    path: Path
    patient: NewPatient
    study: NewStudy


@dataclass(frozen=True)
class _Prepared:
    line: int
    patient: NewPatient
    study: NewStudy
    images: tuple[NewImage, ...]
    source_key: str
    burned_in: BurnedInCheck = BurnedInCheck(False)


def burned_in_warning(where: str, check: BurnedInCheck) -> str | None:
    """The one-line warning for a study flagged by the burned-in text check (None if it is not),
    starting with ``where`` (a row number, a pseudonym and a study id; never a file name)."""
    if not check.flagged:
        return None
    return (
        f"{where}: the pixels may carry identifiers (burned-in text: {check.summary()}); "
        "check the image before sharing it."
    )


def _prepare(row: ImportRow, secret: bytes, known: frozenset[str] = frozenset()) -> _Prepared | str:
    """Read, fingerprint and de-identify one row's files; a string is the problem to report.

    Files whose fingerprint is in ``known`` (already in the library) are not de-identified
    again: the result has no images.
    """
    try:
        files = _read_files(row.path)
        if not files:
            return f"row {row.line}: the folder {_shown(row.path.name)} holds no files; skipped."
        key = content_key(secret, (data for _, data in files))
        if key in known:
            return _Prepared(row.line, row.patient, row.study, (), key)
        pseudonym = row.patient.pseudonym
        if row.path.is_dir():
            image, check = prepare_checked_series(files, secret, pseudonym)
        else:
            image, check = prepare_checked_image(files[0][0], files[0][1], secret, pseudonym, row.study.modality)
    except DashboardError as e:
        return f"row {row.line}: {e} Skipped."
    except OSError as e:
        return f"row {row.line}: the file could not be read ({e.strerror}); skipped."
    return _Prepared(row.line, row.patient, row.study, (image,), key, check)


def _prepare_chunk(rows: list[ImportRow], secret: bytes, known: frozenset[str]) -> list[_Prepared | str]:
    return [_prepare(r, secret, known) for r in rows]


def _store(
    library: CaseLibrary,
    rows: list[ImportRow],
    report: ImportReport,
    *,
    workers: int | None,
    progress: Progress | None,
) -> ImportReport:
    """Prepare rows (in parallel for large imports) and add them to the library in row order."""
    secret = library.secret()
    known_patients = {p.pseudonym for p in library.patients()}
    known = frozenset(library.source_keys())
    total = len(rows)
    n_workers = max(1, min(workers or os.cpu_count() or 1, 4))
    chunks = [rows[i : i + 8] for i in range(0, total, 8)]

    def results() -> Iterable[list[_Prepared | str]]:
        if n_workers == 1 or total < 32:
            for chunk in chunks:
                yield _prepare_chunk(chunk, secret, known)
        else:
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                yield from pool.map(_prepare_chunk, chunks, [secret] * len(chunks), [known] * len(chunks))

    done = 0
    for chunk_results in results():
        for item in chunk_results:
            done += 1
            if isinstance(item, str):
                report.problems.append(item)
            elif library.has_source_key(item.source_key):
                report.duplicates += 1
            else:
                study = dataclasses.replace(item.study, burned_in=item.burned_in.summary())
                study_id = library.add_case(item.patient, study, item.images, item.source_key)
                report.added_studies += 1
                where = f"row {item.line} (patient {item.patient.pseudonym}, study {study_id})"
                warning = burned_in_warning(where, item.burned_in)
                if warning is not None:
                    report.warnings.append(warning)
                report.added_images += len(item.images)
                if item.patient.pseudonym not in known_patients:
                    known_patients.add(item.patient.pseudonym)
                    report.added_patients += 1
            if progress is not None:
                progress(done, total)
    return report


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The columns and the ``(line, row)`` pairs of a CSV file in UTF-8 (with or without a BOM)
    or, when it starts with a UTF-16 BOM, in UTF-16."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"{path.name} could not be read ({e.strerror}).") from e
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        label = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise InvalidInputError(
            f"{path.name} is not {label} text (byte {e.start + 1} is not valid {label}); "
            "save it as CSV UTF-8 and import it again."
        ) from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [c.strip() for c in reader.fieldnames or []]
        rows = []
        for row in reader:
            clean = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()}
            rows.append((reader.line_num, clean))
    except csv.Error as e:
        raise InvalidInputError(f"{path.name} could not be read as a CSV file ({e}).") from e
    return fields, rows


def _require(fields: Sequence[str], needed: Sequence[str], name: str) -> None:
    missing = [c for c in needed if c not in fields]
    if missing:
        raise InvalidInputError(f"{name} lacks the column(s) {', '.join(missing)}.")


@dataclass(frozen=True)
class _Columns:
    """Where a layout keeps the columns it names its own way."""

    offset_onset: str
    offset_admission: str
    note: str


COHEN_COLUMNS = _Columns("offset", "offset_admission", "clinical_notes")
CSV_COLUMNS = _Columns("offset_days", "offset_admission_days", "note")


def _case(
    library: CaseLibrary,
    source: str,
    pid: str,
    r: dict[str, str],
    label: str | None,
    modality: str,
    view: str | None,
    finding_names: Sequence[str],
    columns: _Columns,
) -> tuple[NewPatient, NewStudy]:
    """The patient and the study of one row of either CSV layout (``cohen`` or ``csv``): the
    clinical columns both share, and the offsets and note where ``columns`` says.

    Raises
    ------
    InvalidInputError
        A value that is not what its column holds (a bad number, yes/no or outcome).
    """
    survival = _yes_no(r.get("survival"), "survival")
    patient = NewPatient(
        pseudonym=library.pseudonym(source, pid),
        source=source,
        label=label,
        sex=_sex(r.get("sex")),
        age_years=_number(r.get("age"), "age"),
        outcome=_outcome(r.get("outcome"), survival),
        survival=survival,
        length_of_stay_days=_number(r.get("length_of_stay"), "length_of_stay"),
        went_icu=_yes_no(r.get("went_icu"), "went_icu"),
        intubated=_yes_no(r.get("intubated"), "intubated"),
    )
    study = NewStudy(
        modality=modality,
        view=view,
        offset_onset_days=_number(r.get(columns.offset_onset), columns.offset_onset),
        offset_admission_days=_number(r.get(columns.offset_admission), columns.offset_admission),
        label=label,
        note=(r.get(columns.note) or "").strip() or None,
        findings=_findings(r, finding_names),
    )
    return patient, study


def cohen_row(
    library: CaseLibrary,
    root: Path,
    line: int,
    r: dict[str, str],
    finding_names: Sequence[str],
    include_lateral: bool,
    include_ct: bool,
    source: str,
    *,
    check_files: bool = True,
) -> ImportRow | None:
    """One row of a Cohen-layout ``metadata.csv`` as a study to import; None when the options
    skip it.

    Raises
    ------
    InvalidInputError
        A row that cannot be imported (empty id or file name, bad number, missing image).
    """
    pid = r.get("patientid", "").strip()
    filename = r.get("filename", "").strip()
    if not pid or not filename:
        raise InvalidInputError("patientid and filename must not be empty")
    modality = "CT" if r.get("modality", "").strip().upper() == "CT" else "X-ray"
    view = r.get("view", "").strip() or None
    if modality == "X-ray" and view and view.lower() in LATERAL_VIEWS and not include_lateral:
        return None
    if modality == "CT" and not include_ct:
        return None
    path = root / (r.get("folder", "").strip() or "images") / filename
    if check_files and not path.exists():
        raise InvalidInputError(f"the image {_shown(str(Path(r.get('folder') or 'images', filename)))} is missing")
    label = cohen_label(r.get("finding", ""))
    patient, study = _case(library, source, pid, r, label, modality, view, finding_names, COHEN_COLUMNS)
    return ImportRow(line, path, patient, study)


def import_cohen(
    library: CaseLibrary,
    src: str | Path,
    *,
    include_lateral: bool = False,
    include_ct: bool = True,
    source: str = "cohen",
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a covid-chestxray-dataset folder (``metadata.csv`` + ``images/``).

    Raises
    ------
    InvalidInputError
        If ``src`` has no readable ``metadata.csv`` with the needed columns. Problems with
        single rows are reported in the returned report instead.
    """
    root = Path(src)
    meta = root / "metadata.csv" if root.is_dir() else root
    if not meta.is_file():
        raise InvalidInputError(f"No metadata.csv was found in {root}.")
    root = meta.parent
    fields, raw_rows = _read_csv(meta)
    _require(fields, ("patientid", "finding", "filename"), "metadata.csv")
    finding_names = [f for f in KNOWN_FINDINGS if f in fields]
    report = ImportReport()
    rows: list[ImportRow] = []
    for line, r in raw_rows:
        try:
            row = cohen_row(library, root, line, r, finding_names, include_lateral, include_ct, source)
        except InvalidInputError as e:
            report.problems.append(f"row {line}: {e}; skipped.")
            continue
        if row is None:
            report.skipped_by_option += 1
        else:
            rows.append(row)
    return _store(library, rows, report, workers=workers, progress=progress)


#: Class folders of the public datasets: folder name (lower case) -> (modality, label).
CLASS_FOLDERS: dict[str, tuple[str, str | None]] = {
    "covid": ("X-ray", "COVID-19"),
    "covid-19": ("X-ray", "COVID-19"),
    "normal": ("X-ray", "Normal"),
    "viral pneumonia": ("X-ray", "Viral pneumonia"),
    "ct_covid": ("CT", "COVID-19"),
    # COVID-CT's negatives mix normal scans and other diseases: kept without a label.
    "ct_noncovid": ("CT", None),
}


def import_folders(
    library: CaseLibrary,
    src: str | Path,
    *,
    source: str = "folders",
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import class folders; each image becomes its own patient (no patient ids there)."""
    root = Path(src)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder.")
    rows: list[ImportRow] = []
    report = ImportReport()
    known = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in CLASS_FOLDERS]
    if not known:
        names = ", ".join(sorted({"COVID", "NORMAL", "Viral Pneumonia", "CT_COVID", "CT_NonCOVID"}))
        raise InvalidInputError(f"{root} has none of the class folders {names}.")
    n = 0
    for folder in known:
        modality, label = CLASS_FOLDERS[folder.name.lower()]
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(root)
            if not f.is_file() or f.name.startswith(".") or "masks" in {p.lower() for p in rel.parts}:
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            n += 1
            patient = NewPatient(pseudonym=library.pseudonym(source, rel.as_posix()), source=source, label=label)
            rows.append(ImportRow(n, f, patient, NewStudy(modality=modality, label=label)))
    return _store(library, rows, report, workers=workers, progress=progress)


def import_csv(
    library: CaseLibrary,
    manifest: str | Path,
    *,
    source: str = "csv",
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a CSV manifest (columns in the module docstring); paths relative to its folder."""
    path = Path(manifest)
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a file.")
    fields, raw_rows = _read_csv(path)
    _require(fields, ("path", "label", "patient_id"), path.name)
    finding_names = [f for f in KNOWN_FINDINGS if f in fields]
    report = ImportReport()
    rows: list[ImportRow] = []
    for line, r in raw_rows:
        try:
            rel = r.get("path", "").strip()
            pid = r.get("patient_id", "").strip()
            if not rel or not pid:
                raise InvalidInputError("path and patient_id must not be empty")
            file = path.parent / rel
            if not file.exists():
                raise InvalidInputError(f"the image {_shown(rel)} is missing")
            label = _label(r.get("label", ""))
            modality_raw = r.get("modality", "").strip().upper()
            modality = "CT" if modality_raw == "CT" or file.is_dir() else "X-ray"
            view = r.get("view", "").strip() or None
            patient, study = _case(library, source, pid, r, label, modality, view, finding_names, CSV_COLUMNS)
        except InvalidInputError as e:
            report.problems.append(f"row {line}: {e}; skipped.")
            continue
        rows.append(ImportRow(line, file, patient, study))
    return _store(library, rows, report, workers=workers, progress=progress)


def import_source(library: CaseLibrary, fmt: str, src: str | Path, **options: object) -> ImportReport:
    """Dispatch to the importer of ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "cohen":
        return import_cohen(library, src, **options)  # type: ignore[arg-type]
    if fmt == "folders":
        return import_folders(library, src, **options)  # type: ignore[arg-type]
    if fmt == "csv":
        return import_csv(library, src, **options)  # type: ignore[arg-type]
    raise InvalidInputError(f"Unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}.")


@dataclass(frozen=True)
class AddedUpload:
    """What :func:`add_upload` added: the patient's pseudonym, the new study's id, and a warning
    when the upload may carry burned-in text (None otherwise). Unpacks as ``(pseudonym,
    study_id)``, as the tuple it replaces did."""

    pseudonym: str
    study_id: int
    warning: str | None = None

    def __iter__(self) -> Iterator[str | int]:
        return iter((self.pseudonym, self.study_id))


def add_upload(
    library: CaseLibrary,
    files: Sequence[tuple[str, bytes]],
    *,
    modality: str,
    label: str | None,
    note: str | None = None,
    offset_onset_days: float | None = None,
    offset_admission_days: float | None = None,
    patient: str | None = None,
    sex: str | None = None,
    age_years: float | None = None,
) -> AddedUpload:
    """Add a reviewed upload (one image, or the slices of one CT series) as a new case.

    ``patient`` is an existing pseudonym to add the study to; otherwise a new patient is made
    (from the DICOM PatientID when there is one, so later uploads of the same person link up;
    else a random pseudonym). Returns the pseudonym, the study id and, when the original files
    may carry burned-in text (their DICOM header or their pixels, as on import), a warning; the
    study is added all the same.

    Raises
    ------
    InvalidInputError
        For an unreadable file, or an upload that is in the library already.
    """
    if not files:
        raise InvalidInputError("Nothing was uploaded.")
    if patient is not None:
        library.patient(patient)  # raises if unknown
        pseudonym = patient
    else:
        pid = _dicom_patient_id(files[0][1])
        pseudonym = library.pseudonym("upload", pid) if pid else library.pseudonym("upload", secrets.token_hex(16))
    row = ImportRow(
        0,
        Path("upload"),
        NewPatient(pseudonym=pseudonym, source="upload", label=label, sex=sex, age_years=age_years),
        NewStudy(
            modality=modality,
            view=None,
            offset_onset_days=offset_onset_days,
            offset_admission_days=offset_admission_days,
            label=label,
            note=(note or "").strip() or None,
        ),
    )
    key = library.content_key(data for _, data in files)
    if library.has_source_key(key):
        raise InvalidInputError("This upload is in the case library already.")
    try:
        if modality == "CT" and len(files) > 1:
            image, check = prepare_checked_series(files, library.secret(), pseudonym)
        else:
            image, check = prepare_checked_image(files[0][0], files[0][1], library.secret(), pseudonym, modality)
    except InvalidInputError as e:  # said alone on a page, not after "row 3: " as in an import
        text = str(e)
        raise type(e)(text[:1].upper() + text[1:]) from e
    study_id = library.add_case(row.patient, dataclasses.replace(row.study, burned_in=check.summary()), (image,), key)
    return AddedUpload(pseudonym, study_id, burned_in_warning(f"Study {study_id} of patient {pseudonym}", check))


def _dicom_patient_id(data: bytes) -> str | None:
    if not _is_dicom(data):
        return None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:  # noqa: BLE001 - an unreadable header just means no id to link by
        return None
    pid = str(ds.get("PatientID", "") or "").strip()
    return pid or None
