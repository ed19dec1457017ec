"""Does an image carry burned-in annotation: text in its pixels that may name the patient?

De-identification (:mod:`core.library.deid`) cleans the DICOM header but leaves the pixels as
they are, so text burned into them (a name, a date, an accession number, the hospital) survives
an import. Nothing here removes such text; this module only *flags* the images that may carry
it, so that an import can warn the user to check them before sharing. Two checks:

Header
    DICOM Burned In Annotation (0028,0301) or Recognizable Visual Features (0028,0302) is
    ``YES`` (any case, any spaces). Those are the modality's own statement; de-identification
    keeps them, but the check runs on the original file all the same.
Pixels
    Text-like marks along a border: a row of at least :data:`MIN_CHARACTERS` small,
    high-contrast marks of one height (white or black), side by side with gaps no wider than
    about a character, on one baseline or cap line, wholly inside the outer
    :data:`BORDER_FRACTION` of the image's height (top and bottom) or width (left and right).
    That is where scanners and viewers write their annotation. Small text whose letters blur
    into one mark per word counts by the upright strokes of the mark.

What the pixel check does not find (its limits): text in the middle of the image (a
reading room's label written over the lungs is rare, and anatomy there makes the check far
less sure); text of one or two characters (a laterality marker ``L`` or ``R`` alone is not
flagged, by design: it identifies no one); text turned on its side; text with little contrast
against what is behind it (white text on a bright abdomen, black text on a black
background); dark text on a small light label that sits on a dark background (the label's
surroundings darken the neighbourhood the text is compared with: measured missed along the
side edges of demo phantoms); text that
touches the image's edge (anatomy cut by the edge looks the same); handwriting; text so small that
its characters are under :data:`MIN_CHARACTER_PX` pixels high; and text too large for a
character (above :data:`MAX_CHARACTER_FRACTION` of the image's short side). A flag is a prompt
to look at the image, not a verdict: an unflagged image may still carry text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pydicom
from scipy import ndimage

__all__ = [
    "BORDER_FRACTION",
    "BurnedInCheck",
    "check_burned_in",
    "header_reasons",
    "text_reasons",
]

#: How far in from each edge the pixel check looks, as a fraction of the image's height (top and
#: bottom bands) or width (left and right bands).
BORDER_FRACTION: float = 0.15
#: Fewest character-like marks in a row for the row to count as text.
MIN_CHARACTERS: int = 3
#: Smallest character height the pixel check sees, in pixels of the working image.
MIN_CHARACTER_PX: int = 3
#: Smallest and largest character height, as a fraction of the image's short side.
MIN_CHARACTER_FRACTION: float = 0.012
MAX_CHARACTER_FRACTION: float = 0.08
#: Tallest character that may blur with its neighbours into one mark per word, as a fraction of
#: the image's short side.
WORD_CHARACTER_FRACTION: float = 0.045
#: Images are shrunk by a whole factor until the long side is at most this, for speed.
WORK_PX: int = 512
#: How much brighter (or darker) than its neighbourhood a pixel must be to belong to a mark, in
#: units of the image's display range.
CONTRAST: float = 0.25

HEADER_REASON = "the DICOM header says the pixels carry burned-in annotation"
FEATURES_REASON = "the DICOM header says the image shows recognisable visual features"
_SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class BurnedInCheck:
    """The verdict on one image (or one series): flagged, and why in plain words."""

    flagged: bool
    reasons: tuple[str, ...] = ()

    @staticmethod
    def of(reasons: Iterable[str]) -> BurnedInCheck:
        """A verdict from its reasons (flagged when there is any), each reason once, in order."""
        unique = tuple(dict.fromkeys(reasons))
        return BurnedInCheck(bool(unique), unique)

    def summary(self) -> str | None:
        """The reasons as one line, as the library stores them with the study; None when not flagged."""
        return "; ".join(self.reasons) if self.flagged else None


def _is_yes(value: object) -> bool:
    return str(value or "").strip().upper() == "YES"


def header_reasons(data: bytes) -> tuple[str, ...]:
    """Why a DICOM file's header says its pixels may identify someone; empty for any other file.

    A file that is not DICOM, or whose header cannot be read, gives no reason (the readers
    report unreadable files on their own).
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        return ()
    try:
        ds = pydicom.dcmread(
            BytesIO(data),
            stop_before_pixels=True,
            specific_tags=["BurnedInAnnotation", "RecognizableVisualFeatures"],
        )
    except Exception:  # noqa: BLE001 - an unreadable header is the readers' to report, not ours
        return ()
    reasons = []
    if _is_yes(ds.get("BurnedInAnnotation")):
        reasons.append(HEADER_REASON)
    if _is_yes(ds.get("RecognizableVisualFeatures")):
        reasons.append(FEATURES_REASON)
    return tuple(reasons)


def _shrink(unit: np.ndarray) -> np.ndarray:
    """The image as float32, shrunk by a whole factor (block mean) to at most WORK_PX a side."""
    image = np.asarray(unit, dtype=np.float32)
    factor = -(-max(image.shape) // WORK_PX)
    if factor <= 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    out = np.zeros((h, w), dtype=np.float32)
    for dy in range(factor):  # a sum of strided views: several times faster than reshape + mean
        for dx in range(factor):
            out += image[dy : dy + h * factor : factor, dx : dx + w * factor : factor]
    out *= np.float32(1.0 / (factor * factor))
    return out


def _marks(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Masks of the pixels much brighter, then much darker, than their neighbourhood (a square
    of ``size`` pixels)."""
    local = ndimage.uniform_filter(image, size=size, mode="nearest")
    diff = image - local
    return [diff > CONTRAST, diff < -CONTRAST]


def _word_characters(component: np.ndarray) -> int:
    """How many characters a wide mark holds when it reads as a word of touching characters
    (small text, where the gaps between letters blur away), else 0.

    A word's mark has upright strokes: runs of columns filled at least three quarters of the
    way up (about one per letter, two for round ones), and the columns it covers mostly reach
    both its top and its bottom, as capitals do. A bar fills every column (one run), a wire or
    the curved edge of a lung reaches the top or the bottom of its box only here and there."""
    h = component.shape[0]
    columns = component.any(axis=0)
    ys = np.arange(h)[:, None]
    top = np.where(component, ys, h).min(axis=0)[columns]
    bottom = np.where(component, ys, -1).max(axis=0)[columns]
    edge = max(1, h // 4)
    if np.mean(top < edge) < 0.5 or np.mean(bottom >= h - edge) < 0.5:
        return 0
    full = component.sum(axis=0) >= 0.75 * h
    strokes = int(np.count_nonzero(full[1:] & ~full[:-1]) + bool(full[0]))
    return strokes // 2 + 1 if strokes >= 4 else 0


def _boxes(mask: np.ndarray, low: float, high: float, by: int, bx: int) -> np.ndarray:
    """The connected marks of character size that lie wholly in a border band (``by`` pixels
    from the top or bottom, ``bx`` from the left or right): ``(y0, y1, x0, x1, characters)``
    each, where a mark as wide as a word of touching characters counts as several characters.

    Marks are found in the whole image and only then kept by where they lie, so that anatomy
    that reaches into a band (a lung's edge) is not cut by the band into a mark of its own."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 5))
    # Only small text blurs into one mark per word; larger text keeps its letters apart.
    word_high = max(low + 1, WORD_CHARACTER_FRACTION * min(mask.shape))
    slices = ndimage.find_objects(labels)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = []
    for index, (sl, area) in enumerate(zip(slices, areas, strict=True), start=1):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        h, w = y1 - y0, x1 - x0
        if not low <= h <= high:
            continue
        if not (y1 <= by or y0 >= mask.shape[0] - by or x1 <= bx or x0 >= mask.shape[1] - bx):
            continue
        if y0 == 0 or x0 == 0 or y1 == mask.shape[0] or x1 == mask.shape[1]:
            continue  # cut by the image's edge: anatomy cropped by the field, not a character
        fill = area / (h * w)
        if w <= 1.2 * high and 0.12 <= fill and (fill <= 0.92 or w <= 0.4 * h):  # "I" and "1" are solid
            boxes.append((y0, y1, x0, x1, 1))
        elif h <= word_high and 2.5 * h <= w <= 30 * h and 0.25 <= fill <= 0.85:
            characters = _word_characters(labels[sl] == index)
            if characters:
                boxes.append((y0, y1, x0, x1, characters))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 5)


def _rows(boxes: np.ndarray) -> list[np.ndarray]:
    """Rows of text: boxes of one height side by side along x, gaps under about a character,
    centres on one horizontal line, each row as the array of its boxes. A row counts when it
    holds at least MIN_CHARACTERS characters that sit on one line as letters do (:func:`_lettered`)."""
    if boxes[:, 4].sum() < MIN_CHARACTERS:
        return []
    order = np.argsort(boxes[:, 2], kind="stable")
    boxes = boxes[order]
    heights = boxes[:, 1] - boxes[:, 0]
    centres = (boxes[:, 0] + boxes[:, 1]) / 2
    used = np.zeros(len(boxes), dtype=bool)
    rows = []
    for start in range(len(boxes)):
        if used[start]:
            continue
        chain = [start]
        h_ref = heights[start]
        for j in range(start + 1, len(boxes)):
            last = chain[-1]
            gap = boxes[j, 2] - boxes[last, 3]
            if gap > 3 * h_ref:
                break  # boxes are in order of their left edge: every later one is further away
            if gap > 1.2 * h_ref or gap < -0.3 * h_ref or used[j]:
                continue
            ratio = heights[j] / h_ref
            if 0.55 <= ratio <= 1.8 and abs(centres[j] - centres[last]) <= 0.4 * h_ref:
                chain.append(j)
                h_ref = float(np.median(heights[chain]))
        row = boxes[chain]
        if _lettered(row):
            used[chain] = True
            rows.append(row)
    return rows


def _lettered(row: np.ndarray) -> bool:
    """Whether a row of boxes sits as letters do: at least MIN_CHARACTERS characters share a
    baseline or a cap line (their bottoms, or their tops, within a fifth of the height of the
    row's median), and the boxes are not mostly wider than tall (pieces of a slanted or curved
    edge of anatomy step up or down along it, and lie flat)."""
    h = float(np.median(row[:, 1] - row[:, 0]))
    tolerance = max(1.0, 0.2 * h)
    if len(row) > 1 and np.median((row[:, 3] - row[:, 2]) / (row[:, 1] - row[:, 0])) > 1.3:
        return False
    for edge in (row[:, 1], row[:, 0]):
        on_line = np.abs(edge - np.median(edge)) <= tolerance
        if row[on_line, 4].sum() >= MIN_CHARACTERS:
            return True
    return False


def text_reasons(unit: np.ndarray) -> tuple[str, ...]:
    """Which borders of an image carry text-like marks, as reasons in plain words.

    Parameters
    ----------
    unit : np.ndarray
        (H, W) image in [0, 1] as it is displayed (windowed; brighter = denser).

    Returns
    -------
    tuple of str
        ``"text-like marks along the top border"`` and so on, one per border that has any;
        empty when none has (or the image is too small to tell).
    """
    image = _shrink(unit)
    if image.ndim != 2 or min(image.shape) < 32 or not np.isfinite(image).all():
        return ()
    height, width = image.shape
    short = min(height, width)
    low = max(MIN_CHARACTER_PX, MIN_CHARACTER_FRACTION * short)
    high = max(low + 1, MAX_CHARACTER_FRACTION * short)
    size = int(round(high)) | 1
    by, bx = max(1, round(BORDER_FRACTION * height)), max(1, round(BORDER_FRACTION * width))
    found: set[str] = set()
    for mask in _marks(image, size):
        boxes = _boxes(mask, low, high, by, bx)
        for row in _rows(boxes):
            found.update(_sides(row, height, width, by, bx))
    return tuple(f"text-like marks along the {side} border" for side in _SIDES if side in found)


def _sides(row: np.ndarray, height: int, width: int, by: int, bx: int) -> set[str]:
    """The borders whose band holds the whole of a row of boxes."""
    y0, y1 = row[:, 0].min(), row[:, 1].max()
    x0, x1 = row[:, 2].min(), row[:, 3].max()
    sides = set()
    if y1 <= by:
        sides.add("top")
    if y0 >= height - by:
        sides.add("bottom")
    if x1 <= bx:
        sides.add("left")
    if x0 >= width - bx:
        sides.add("right")
    return sides


def check_burned_in(unit: np.ndarray | None = None, dicom: Iterable[bytes] = ()) -> BurnedInCheck:
    """Flag an image whose header or pixels say it may carry burned-in text.

    Parameters
    ----------
    unit : np.ndarray, optional
        The displayed image in [0, 1] for the pixel check (none: header check only).
    dicom : iterable of bytes
        The original files (before de-identification) for the header check; files that are not
        DICOM are passed over.
    """
    reasons: list[str] = []
    for data in dicom:
        reasons.extend(header_reasons(data))
    if unit is not None:
        reasons.extend(text_reasons(unit))
    return BurnedInCheck.of(reasons)
