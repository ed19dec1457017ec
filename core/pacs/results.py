"""The dashboard's results as DICOM objects a PACS files with the study they were made from.

For an analysed X-ray (:func:`xray_results`) or CT series (:func:`ct_results`), two objects:

- a **Secondary Capture** (RGB): the Grad-CAM overlay as the pages draw it
  (:func:`core.explain.overlay.render_overlay`), a colour bar beside it, and the model's
  statement burned in below it: model id and version, the predicted class and its probability
  with its threshold (or "the most probable of its N classes"), the verdict on whether the input
  is like the model's training data ("unlike the training data: no result" where the model
  withholds its label), and "Research use only, not for diagnosis". An X-ray shows the
  radiograph; a CT series the lung-window axial slice through the lungs where COVID3D's 3D
  Grad-CAM is strongest (or, without COVID3D, the slice model's most COVID-like slice), chosen
  as the meeting minute chooses it;
- a **Comprehensive SR**: the same facts as content items (algorithm name and version, one
  probability per class or P(COVID+) and the patient score, the threshold, the training-data
  verdict and score, the research-use statement), an IMAGE item for the source image shown and
  one for the capture, and every source instance listed as evidence.

Both carry the source's Study Instance UID and patient and study modules (this is the
hospital's own archive: the identifiers belong there), new Series Instance UIDs, and a
Manufacturer and Series Description saying what made them. Built with highdicom, which checks
each module as it builds it; nothing is written to disk and nothing with an identifier is logged.

Examples
--------
>>> datasets = xray_results([("xray.dcm", data)], registry.load("cxr-resnet18"))  # doctest: +SKIP
>>> [ds.Modality for ds in datasets]  # doctest: +SKIP
['OT', 'SR']
>>> send_datasets(settings, datasets)  # see core.pacs.send  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from core import __version__
from core.case_reports.common import REPORT_IMAGE_MAX_SIDE
from core.ct.analysis import CtAnalysis, analyse_ct, slice_cam
from core.ct.preprocess import LUNG_WINDOW, lung_slices, window_hu
from core.ct.views import pixel_size_mm
from core.errors import InvalidInputError
from core.explain.overlay import colormap_lut, display_shape, downsample_for_display, render_overlay, resize_unit
from core.inference import xray_analysis, xray_reading
from core.io.ct_input import read_ct_upload
from core.io.decoding import looks_like_raw_dicom
from core.io.images import read_xray
from core.models.registry import LoadedModel
from core.ood import OodVerdict
from core.pacs._logging import quiet_network_logs

__all__ = [
    "MANUFACTURER",
    "RESEARCH_STATEMENT",
    "SC_SERIES_DESCRIPTION",
    "SR_SERIES_DESCRIPTION",
    "ModelStatement",
    "burn_in",
    "ct_results",
    "describe_results",
    "result_statement",
    "xray_results",
]

#: Who made the objects, as their Manufacturer and the SR's device observer say.
MANUFACTURER = "COVID-19 chest imaging dashboard"
RESEARCH_STATEMENT = "Research use only, not for diagnosis."
SC_SERIES_DESCRIPTION = "AI Grad-CAM overlay (research use only)"
SR_SERIES_DESCRIPTION = "AI results report (research use only)"
#: Series numbers far above a scanner's, so the results sort after the images in a viewer.
SC_SERIES_NUMBER, SR_SERIES_NUMBER = 9901, 9902
#: A stable UID for the dashboard as an SR device observer (derived from its name).
DEVICE_UID = pydicom.uid.generate_uid(entropy_srcs=[MANUFACTURER])
#: A capture's image is at least this many pixels on its longest side (a 64 px demo slice is
#: enlarged), so the burned-in statement below it stays readable.
MIN_CAPTURE_SIDE = 512
OVERLAY_COLORMAP, OVERLAY_OPACITY = "Jet", 0.5
#: Local codes (DICOM PS3.16 8.2: a "99" coding scheme is the sender's own) for what no standard
#: code names.
LOCAL_SCHEME = "99COVIDDASH"
_PERCENT = hd.sr.CodedConcept("%", "UCUM", "percent")
_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
_KEYWORDS_TYPE2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def _local(meaning: str) -> hd.sr.CodedConcept:
    """A local code for ``meaning``: its value (at most 16 characters) made from the meaning,
    so the same meaning always has the same code."""
    return hd.sr.CodedConcept(hashlib.sha1(meaning.encode()).hexdigest()[:8].upper(), LOCAL_SCHEME, meaning)


@dataclass(frozen=True)
class ModelStatement:
    """What one model said about the source, in the words burned into the capture and the items
    of the report.

    ``probabilities`` are (what, probability in [0, 1]) pairs, the decisive one first;
    ``threshold`` is what the first is held against (None: an argmax label, the most probable
    of ``n_classes``); ``decision`` the label or decision ("COVID-19", "COVID+"); ``numbers``
    other values without a unit (name, value), such as COVID3D's logit; ``ood`` the verdict on the input, None when the
    model has no reference to tell.
    """

    model_id: str
    model_version: str
    probabilities: tuple[tuple[str, float], ...]
    threshold: float | None
    n_classes: int
    decision: str
    ood: OodVerdict | None = None
    numbers: tuple[tuple[str, float], ...] = ()
    rule: str = ""
    #: The report's name of each probability (default "Probability of <what>").
    report_names: tuple[str, ...] = ()

    @property
    def withheld(self) -> bool:
        """The input is unlike the model's training data: its label is not a result."""
        return self.ood is not None and not self.ood.in_distribution

    @property
    def finding(self) -> str:
        """The model's result in words: its decision, or "No result" when withheld."""
        return "No result: unlike the training data" if self.withheld else self.decision

    def threshold_words(self) -> str:
        if self.threshold is not None:
            return f"against its threshold {self.threshold:.0%}"
        return f"no threshold: the most probable of its {self.n_classes} classes"

    def ood_words(self) -> str:
        """The training-data verdict in a sentence; empty without a reference."""
        if self.ood is None:
            return ""
        if self.withheld:
            return f"Unlike the training data: no result (OOD {self.ood.comparison()})."
        return f"Like its training data (OOD {self.ood.comparison()})."

    def lines(self) -> list[str]:
        """The statement as burned into the capture, one sentence a line."""
        (what, p), rest = self.probabilities[0], self.probabilities[1:]
        output = f"{what} {p:.1%} ({self.threshold_words()})"
        if rest:
            output += "; " + ", ".join(f"{w} {q:.1%}" for w, q in rest)
        numbers = "".join(f"; {name} {value:+.2f}" for name, value in self.numbers)
        head = f"{self.model_id} {self.model_version}: "
        if self.withheld:
            assert self.ood is not None  # withheld
            return [
                head + f"unlike the training data: no result (OOD {self.ood.comparison()}).",
                f"For reference only: {output}{numbers}.",
            ]
        decision = "" if self.decision == what else f"{self.decision}: "
        return [head + f"{decision}{output}{numbers}.", *([self.ood_words()] if self.ood else [])]

    def probability_names(self) -> list[str]:
        """The report's concept name of each probability."""
        return list(self.report_names) or [f"Probability of {what}" for what, _ in self.probabilities]


# --------------------------------------------------------------------------------------------
# Public functions


def xray_results(
    files: Sequence[tuple[str, bytes]],
    model: LoadedModel,
    *,
    colormap: str = OVERLAY_COLORMAP,
    opacity: float = OVERLAY_OPACITY,
) -> list[Dataset]:
    """Analyse one DICOM radiograph with ``model`` and build its capture and report.

    Parameters
    ----------
    files
        ``(name, bytes)`` pairs holding exactly one DICOM radiograph (an upload, or a series
        retrieved with :func:`core.pacs.retrieve.retrieve_series`).
    model
        A single-label X-ray classifier: its Grad-CAM for the class it predicts is drawn.
    colormap, opacity
        The overlay, as on the X-ray page.

    Returns
    -------
    list of pydicom.Dataset
        The Secondary Capture, then the Comprehensive SR.

    Raises
    ------
    InvalidInputError
        Not exactly one DICOM file, or a file that is not a readable radiograph.
    """
    dicom = _dicom_files(files)
    if len(dicom) != 1:
        raise InvalidInputError(
            f"Results are sent for one radiograph at a time; these files hold {len(dicom)} DICOM images: choose one."
        )
    _, data = dicom[0]
    header = _header(data)
    image = read_xray(data, "source")
    analysis = xray_analysis(model, image)
    reading = xray_reading(model, image, analysis.prediction)
    pred = reading.prediction
    ranked = sorted(zip(pred.labels, pred.probabilities, strict=True), key=lambda lp: -lp[1])
    statement = ModelStatement(
        model_id=pred.model_id,
        model_version=pred.model_version,
        probabilities=tuple((label, float(p)) for label, p in ranked),
        threshold=None,
        n_classes=len(pred.labels),
        decision=pred.predicted_label,
        ood=reading.ood,
    )
    gray = downsample_for_display(image.windowed(), REPORT_IMAGE_MAX_SIDE)
    shape = _capture_shape(gray.shape)
    if _unlike(reading.ood):  # a map of a model with no grounds here is not drawn
        rgb = render_overlay(resize_unit(gray, shape), None, colormap, opacity)
        map_line = f"No map: {pred.model_id} finds this image unlike its training data."
    else:
        heat = analysis.explanation(display_shape(image.shape, REPORT_IMAGE_MAX_SIDE)).values
        rgb = render_overlay(resize_unit(gray, shape), resize_unit(heat, shape), colormap, opacity)
        map_line = (
            f"Grad-CAM of {pred.model_id} for the class it predicts ({pred.predicted_label}), {colormap} colour bar."
        )
    orientation = _orientation(header, default=("L", "F"))
    return _build(header, [header], header, rgb, orientation, [statement], map_line, colormap)


def ct_results(
    files: Sequence[tuple[str, bytes]],
    covid3d: LoadedModel | None,
    slice_model: LoadedModel | None,
    *,
    series_uid: str | None = None,
    colormap: str = OVERLAY_COLORMAP,
    opacity: float = OVERLAY_OPACITY,
) -> list[Dataset]:
    """Analyse one DICOM CT series with COVID3D and/or the slice model and build its capture
    and report.

    The capture shows the lung-window axial slice through the lungs where COVID3D's 3D Grad-CAM
    is strongest, its map over it; without COVID3D, or where COVID3D finds the series unlike its
    training data, the slice model's most COVID-like slice with its Grad-CAM; where every model
    finds it so, the middle lung slice without a map. The report states each model's output.

    Parameters
    ----------
    files
        ``(name, bytes)`` pairs of DICOM slices (an upload, or a retrieved series).
    covid3d, slice_model
        A "ct-volume" and a "ct-slice" model; at least one.
    series_uid
        The series to read when the files hold several.
    colormap, opacity
        The overlay, as on the CT page.

    Returns
    -------
    list of pydicom.Dataset
        The Secondary Capture, then the Comprehensive SR.

    Raises
    ------
    InvalidInputError
        No model, files that are not DICOM, or no CT series among them (and the readers' errors).
    """
    if covid3d is None and slice_model is None:
        raise InvalidInputError("A CT result needs COVID3D or a slice model: none was given.")
    dicom = _dicom_files(files)
    if not dicom:
        raise InvalidInputError("Results are sent with the study they belong to: the source must be DICOM files.")
    volume = read_ct_upload(dicom, series_uid)
    headers = [
        h for h in (_header(data) for _, data in dicom) if str(h.get("SeriesInstanceUID", "")) == volume.series_uid
    ]
    count = int(volume.hu.shape[0])
    lungs = np.flatnonzero(lung_slices(volume.hu))
    analysis = analyse_ct(volume, covid3d, slice_model, cam=covid3d is not None)
    # A map is drawn only by a model that finds the series like its training data: COVID3D's
    # first, else the slice model's; where neither does, the slice without a map.
    heat: np.ndarray | None
    if analysis.cam is not None and not _unlike(analysis.covid3d_ood):
        strength = analysis.cam.reshape(count, -1).mean(axis=1)
        index = int(lungs[np.argmax(strength[lungs])]) if lungs.size else int(np.argmax(strength))
        heat = analysis.cam[index]
        which = "through the lungs where the map is strongest" if lungs.size else "where the map is strongest"
        mapped = f"3D Grad-CAM of {analysis.covid3d_id}"
    elif slice_model is not None and analysis.slice_probabilities is not None and not _unlike(analysis.slice_ood):
        index = int(np.argmax(np.where(analysis.slices_read, analysis.slice_probabilities, -1.0)))
        heat = slice_cam(volume, slice_model, index)
        which, mapped = "its most COVID-like slice", f"Grad-CAM of {slice_model.card.id} for COVID-19"
    else:
        index = int(lungs[lungs.size // 2]) if lungs.size else count // 2
        heat = None
        which = "the middle of the lungs" if lungs.size else "the middle of the series"
        mapped = "no map: every model finds this series unlike its training data"
    row_mm, col_mm = pixel_size_mm(volume.spacing_mm, "Axial")
    unit = min(row_mm, col_mm)  # square pixels, as the pages show a slice
    h, w = volume.hu.shape[1] * row_mm / unit, volume.hu.shape[2] * col_mm / unit
    scale = min(1.0, REPORT_IMAGE_MAX_SIDE / max(h, w))
    shape = _capture_shape((max(1, round(h * scale)), max(1, round(w * scale))))
    gray = resize_unit(window_hu(volume.hu[index], *LUNG_WINDOW), shape)
    rgb = render_overlay(gray, resize_unit(heat, shape) if heat is not None else None, colormap, opacity)
    ordered = _slice_order(headers)
    shown = ordered[index] if ordered is not None and len(ordered) == count else None
    statements = _ct_statements(analysis, covid3d, slice_model)
    drawn = f"{mapped}, {colormap} colour bar" if heat is not None else mapped
    map_line = f"Axial slice {index + 1} of {count} ({which}), lung window; {drawn}."
    ref = shown if shown is not None else headers[0]
    orientation = _orientation(ref, default=("L", "P"))
    return _build(ref, headers, shown, rgb, orientation, statements, map_line, colormap)


def _unlike(verdict: OodVerdict | None) -> bool:
    """Whether a model said the input is unlike its training data (None: it has no reference)."""
    return verdict is not None and not verdict.in_distribution


def result_statement(datasets: Sequence[Dataset]) -> list[str]:
    """The statement burned into the capture among ``datasets``, one sentence a line, read back
    from its Image Comments."""
    comments = next((str(ds.ImageComments) for ds in datasets if "ImageComments" in ds), "")
    return comments.splitlines()


def describe_results(datasets: Sequence[Dataset]) -> list[str]:
    """What is about to be sent, one line per object and then the statement, read back from the
    objects themselves (no identifier: the study by its UID only)."""
    lines = []
    for ds in datasets:
        what = pydicom.uid.UID(str(ds.SOPClassUID)).name.removesuffix(" Storage")
        size = f", {ds.Columns} x {ds.Rows} px" if "Rows" in ds else ""
        lines.append(f"{what} '{ds.get('SeriesDescription', '')}'{size}, into study {ds.StudyInstanceUID}")
    return lines + [f"  {line}" for line in result_statement(datasets)]


# --------------------------------------------------------------------------------------------
# The source


def _dicom_files(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The DICOM files among ``files``; a plain error when one is not DICOM (results go back
    into the study of their source, which only a DICOM file names)."""
    out = []
    for name, data in files:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInputError("The source files could not be read: expected each file's contents as bytes.")
        data = bytes(data)
        if data[128:132] != b"DICM" and not looks_like_raw_dicom(data):
            raise InvalidInputError(
                "Results are sent with the study they belong to: every source file must be DICOM (one is not)."
            )
        out.append((name, data))
    return out


def _header(data: bytes) -> Dataset:
    """The file's header without its pixels, with the patient and study attributes highdicom
    copies present (empty where the file has none: they are type 2 in the objects built)."""
    try:
        ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=data[128:132] != b"DICM")
    except Exception as e:
        raise InvalidInputError("A source DICOM file could not be read (damaged or truncated).") from e
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not str(ds.get(keyword, "")).strip():
            raise InvalidInputError(f"A source DICOM file has no {keyword}: results cannot be filed with its study.")
    for keyword in _KEYWORDS_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _slice_order(headers: Sequence[Dataset]) -> list[Dataset] | None:
    """The single-frame slices in the volume's z order (by position along the slice normal,
    as :mod:`core.io.ct_series` orders them), one per position; None when that order cannot be
    told (a multi-frame file, slices without position)."""
    try:
        keyed = []
        for h in headers:
            if int(h.get("NumberOfFrames", 1) or 1) != 1:
                return None
            iop = np.asarray([float(v) for v in h.ImageOrientationPatient])
            normal = np.cross(iop[:3], iop[3:])
            keyed.append((round(float(np.dot(normal, [float(v) for v in h.ImagePositionPatient])), 3), h))
    except (AttributeError, TypeError, ValueError):
        return None
    ordered: dict[float, Dataset] = {}
    for position, h in sorted(keyed, key=lambda kh: kh[0]):
        ordered.setdefault(position, h)
    return list(ordered.values())


def _orientation(header: Dataset, default: tuple[str, str]) -> tuple[str, str]:
    """The image's (row, column) directions in patient terms: the source's Patient Orientation,
    else derived from its Image Orientation (Patient), else ``default`` (the usual display of a
    frontal chest film, or of an axial CT slice)."""
    given = header.get("PatientOrientation")
    if given is not None and not isinstance(given, str) and len(given) == 2 and all(given):
        return (str(given[0]), str(given[1]))
    try:
        iop = [float(v) for v in header.ImageOrientationPatient]
    except (AttributeError, TypeError, ValueError):
        return default
    letters = (("R", "L"), ("A", "P"), ("F", "H"))  # the patient axes x, y, z: negative, positive

    def direction(v: Sequence[float]) -> str:
        axis = int(np.argmax(np.abs(v)))
        return letters[axis][int(v[axis] > 0)]

    return (direction(iop[:3]), direction(iop[3:]))


def _ct_statements(
    analysis: CtAnalysis, covid3d: LoadedModel | None, slice_model: LoadedModel | None
) -> list[ModelStatement]:
    out = []
    if covid3d is not None and analysis.probability is not None and analysis.threshold is not None:
        out.append(
            ModelStatement(
                model_id=covid3d.card.id,
                model_version=covid3d.card.version,
                probabilities=(("P(COVID+)", float(analysis.probability)),),
                threshold=float(analysis.threshold),
                n_classes=2,
                decision="COVID+" if analysis.covid_positive else "COVID-",
                ood=analysis.covid3d_ood,
                numbers=(("score s (logit)", float(analysis.score or 0.0)),),
                rule="COVID+ when P(COVID+) is at or above the threshold",
                report_names=("Probability of COVID+",),
            )
        )
    if slice_model is not None and analysis.patient_score is not None:
        thresholds = slice_model.card.thresholds
        threshold = float(thresholds.get("scan", thresholds.get("covid", 0.5)))
        out.append(
            ModelStatement(
                model_id=slice_model.card.id,
                model_version=slice_model.card.version,
                probabilities=(("patient score", float(analysis.patient_score)),),
                threshold=threshold,
                n_classes=len(slice_model.card.labels),
                decision="COVID+" if analysis.patient_score >= threshold else "COVID-",
                ood=analysis.slice_ood,
                rule="patient score: the mean P(COVID-19) of the top 10% of the slices read; COVID+ at or above the "
                "threshold",
                report_names=("Patient score",),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The objects


def _capture_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) enlarged so the longest side is at least :data:`MIN_CAPTURE_SIDE`."""
    h, w = int(shape[0]), int(shape[1])
    scale = max(1.0, MIN_CAPTURE_SIDE / max(h, w))
    return (max(1, round(h * scale)), max(1, round(w * scale)))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(line: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_px: int) -> list[str]:
    """``line`` broken at spaces into lines at most ``max_px`` wide (a word longer than that on a
    line of its own)."""
    out: list[str] = []
    for word in line.split():
        if out and font.getlength(f"{out[-1]} {word}") <= max_px:
            out[-1] += f" {word}"
        else:
            out.append(word)
    return out or [""]


def burn_in(rgb: np.ndarray, lines: Sequence[str], colormap: str = OVERLAY_COLORMAP) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with a colour bar (low at the bottom, high at the top) at its
    right and ``lines`` written below it, white on black, wrapped to the width; uint8
    (H + band, W + bar, 3)."""
    h, w = rgb.shape[:2]
    size = max(12, round(max(w, h) / 48))
    font = _font(size)
    bar_w = max(12, size)
    label_w = int(max(font.getlength(t) for t in ("high", "low"))) + size // 2
    side = bar_w + label_w + size
    width = w + side
    wrapped = [part for line in lines for part in _wrap(line, font, width - size)]
    line_h = round(size * 1.3)
    band = size // 2 + line_h * len(wrapped) + size // 2
    canvas = Image.new("RGB", (width, h + band), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    lut = colormap_lut(colormap)
    ramp = lut[np.linspace(255, 0, h).round().astype(np.uint8)]  # top row: high
    bar = np.repeat(ramp[:, None, :], bar_w, axis=1)
    x0 = w + size // 2
    canvas.paste(Image.fromarray(np.ascontiguousarray(bar)), (x0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((x0 + bar_w + size // 4, 0), "high", fill=(255, 255, 255), font=font)
    draw.text((x0 + bar_w + size // 4, h - line_h), "low", fill=(255, 255, 255), font=font)
    for i, line in enumerate(wrapped):
        draw.text((size // 2, h + size // 2 + i * line_h), line, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _build(
    ref: Dataset,
    sources: Sequence[Dataset],
    shown: Dataset | None,
    rgb: np.ndarray,
    orientation: tuple[str, str],
    statements: Sequence[ModelStatement],
    map_line: str,
    colormap: str,
) -> list[Dataset]:
    lines = [line for s in statements for line in s.lines()]
    if any(s.withheld for s in statements):
        map_line += " The map shows where the model looked, not a finding."
    lines += [map_line, f"{RESEARCH_STATEMENT} Made by the {MANUFACTURER} {__version__}."]
    pixels = burn_in(rgb, lines, colormap)
    quiet_network_logs()  # highdicom's records quote the source's UIDs
    sc = hd.sc.SCImage.from_ref_dataset(
        ref,
        pixels,
        hd.PhotometricInterpretationValues.RGB,
        8,
        hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=hd.UID(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=orientation,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=SC_SERIES_DESCRIPTION,
        manufacturer_model_name=MANUFACTURER,
        software_versions=__version__,
    )
    sc.ConversionType = "WSD"  # made on a workstation, not digitised from a film or a video
    sc.BurnedInAnnotation = "NO"  # the burned-in text names the model, never the patient
    sc.ImageComments = "\n".join(lines)
    sc.DerivationDescription = map_line[:1024]
    sc.SourceImageSequence = [_reference(h) for h in ([shown] if shown is not None else sources)]
    return [sc, _report(sources, shown, sc, statements, lines)]


def _reference(header: Dataset) -> Dataset:
    """A Source Image Sequence item: the source instance the capture was drawn from."""
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
    ]
    return item


def _report(
    sources: Sequence[Dataset],
    shown: Dataset | None,
    sc: Dataset,
    statements: Sequence[ModelStatement],
    lines: Sequence[str],
) -> Dataset:
    root = hd.sr.ContainerContentItem(codes.LN.DiagnosticImagingReport, template_id=None)
    items: list[hd.sr.ContentItem] = [
        *hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=DEVICE_UID, name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=__version__
            ),
        ),
        hd.sr.TextContentItem(codes.DCM.Comment, RESEARCH_STATEMENT, relationship_type="CONTAINS"),
    ]
    for s in statements:
        items.append(_model_container(s))
    if shown is not None:
        items.append(
            hd.sr.ImageContentItem(
                codes.DCM.SourceOfMeasurement, shown.SOPClassUID, shown.SOPInstanceUID, relationship_type="CONTAINS"
            )
        )
    items.append(
        hd.sr.ImageContentItem(
            codes.DCM.IllustrationOfFinding, sc.SOPClassUID, sc.SOPInstanceUID, relationship_type="CONTAINS"
        )
    )
    items.append(hd.sr.TextContentItem(codes.DCM.Summary, "\n".join(lines), relationship_type="CONTAINS"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    evidence = [*sources, sc]
    return hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=MANUFACTURER,
        software_versions=__version__,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )


def _model_container(s: ModelStatement) -> hd.sr.ContainerContentItem:
    """One model's result: its name and version, each probability, the threshold or the rule,
    the finding, and the training-data verdict with its score."""
    container = hd.sr.ContainerContentItem(codes.DCM.Finding, relationship_type="CONTAINS")
    items: list[hd.sr.ContentItem] = [
        hd.sr.TextContentItem(codes.DCM.AlgorithmName, s.model_id, relationship_type="CONTAINS"),
        hd.sr.TextContentItem(codes.DCM.AlgorithmVersion, s.model_version, relationship_type="CONTAINS"),
    ]
    for name, (_, p) in zip(s.probability_names(), s.probabilities, strict=True):
        items.append(hd.sr.NumContentItem(_local(name), round(100.0 * p, 4), _PERCENT, relationship_type="CONTAINS"))
    for what, value in s.numbers:
        items.append(hd.sr.NumContentItem(_local(what), round(value, 6), _NO_UNITS, relationship_type="CONTAINS"))
    if s.threshold is not None:
        items.append(
            hd.sr.NumContentItem(
                codes.DCM.ThresholdValue, round(100.0 * s.threshold, 4), _PERCENT, relationship_type="CONTAINS"
            )
        )
    rule = s.rule or s.threshold_words()
    items.append(hd.sr.TextContentItem(_local("Decision rule"), rule, relationship_type="CONTAINS"))
    items.append(hd.sr.TextContentItem(codes.DCM.Finding, s.finding, relationship_type="CONTAINS"))
    if s.ood is not None:
        items += [
            hd.sr.TextContentItem(_local("Training-data check"), s.ood_words(), relationship_type="CONTAINS"),
            hd.sr.NumContentItem(
                _local("OOD score"), round(float(s.ood.score), 6), _NO_UNITS, relationship_type="CONTAINS"
            ),
            hd.sr.NumContentItem(
                _local("OOD threshold"),
                round(float(s.ood.threshold), 6),
                _NO_UNITS,
                relationship_type="CONTAINS",
            ),
        ]
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container
