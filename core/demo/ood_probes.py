"""Seeded generators of inputs unlike a model's training data ("out-of-distribution probes").

They measure how well each model's "unlike my training data" detector fires on things people
really upload by mistake: a colour photograph, a software screenshot, a lateral chest
radiograph (the models expect frontal ones), a frontal radiograph simulated from CT instead of
a real one, an axial CT slice exported to PNG, and a radiograph with its grey levels inverted.

Every generator is deterministic: the same arguments give the same array, bit for bit, with a
given version of numpy and Pillow. Images are numpy arrays: uint8 (H, W, 3) RGB for the colour
probes, float32 (H, W) in [0, 1] (larger = brighter) for the grey ones; :func:`to_png` turns
either into the bytes of the file a user would upload.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from core.demo.ct_phantom import CtPhantom, generate_ct

#: Labels a phantom probe is drawn from (the seed chooses one).
PHANTOM_LABELS: tuple[str, ...] = ("Normal", "COVID-19", "Viral pneumonia")

#: Range of the severity drawn for a diseased phantom probe.
PHANTOM_SEVERITY_RANGE: tuple[float, float] = (0.3, 0.9)

#: Default CT window (center, width) in HU of :func:`ct_slice_image`: a lung window.
LUNG_WINDOW: tuple[float, float] = (-600.0, 1500.0)

#: Water-equivalent path (cm) above which a ray of a DRR counts as going through the body.
BODY_PATH_CM: float = 1.0

_MIN_PICTURE_SIZE = 64
_MIN_DRR_SIZE = 8

_WORDS: tuple[str, ...] = (
    "patient",
    "report",
    "settings",
    "export",
    "status",
    "series",
    "upload",
    "window",
    "results",
    "summary",
    "network",
    "account",
    "version",
    "folder",
    "preview",
    "options",
    "history",
    "update",
    "search",
    "profile",
    "total",
    "weekly",
    "review",
    "data",
)
_BUTTON_LABELS: tuple[str, ...] = ("OK", "Cancel", "Save", "Open", "Export", "Next", "Back", "Apply", "Close")

RGB = tuple[int, int, int]


# --------------------------------------------------------------------------- checks and helpers


def _check_size(size: int, minimum: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < minimum:
        raise ValueError(f"size must be an integer >= {minimum}, got {size!r}")
    return int(size)


def _check_unit(unit: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(unit)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must be a float image in [0, 1], got dtype {arr.dtype}")
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"{what} must hold finite values in [0, 1]")
    return arr


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    """RGB of a colour given as hue in degrees and saturation and value in percent."""
    rgb = ImageColor.getrgb(f"hsv({hue % 360.0:.2f},{saturation:.2f}%,{value:.2f}%)")
    return int(rgb[0]), int(rgb[1]), int(rgb[2])


def _gradient(top: RGB, bottom: RGB, rows: int, cols: int) -> np.ndarray:
    """float32 (rows, cols, 3): a vertical linear blend from ``top`` to ``bottom``."""
    t = np.linspace(0.0, 1.0, max(rows, 1), dtype=np.float32)[:rows, None, None]
    a = np.asarray(top, np.float32)
    b = np.asarray(bottom, np.float32)
    return np.broadcast_to(a + (b - a) * t, (rows, cols, 3)).astype(np.float32)


# --------------------------------------------------------------------------- photograph


def _draw_tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, horizon: int) -> None:
    base_x = rng.uniform(0.05, 0.95) * size
    base_y = horizon + rng.uniform(0.0, 0.2) * size
    height = rng.uniform(0.15, 0.4) * size
    trunk_w = max(2.0, height * rng.uniform(0.06, 0.12))
    trunk = _hsv(rng.uniform(15, 40), rng.uniform(40, 70), rng.uniform(25, 45))
    draw.rectangle((base_x - trunk_w / 2, base_y - height * 0.45, base_x + trunk_w / 2, base_y), fill=trunk)
    crown = _hsv(rng.uniform(70, 150), rng.uniform(40, 80), rng.uniform(30, 65))
    half_w = height * rng.uniform(0.2, 0.35)
    top = base_y - height
    draw.ellipse((base_x - half_w, top, base_x + half_w, base_y - height * 0.35), fill=crown)


def _draw_blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    cx, cy = rng.uniform(0.0, 1.0, 2) * size
    rx, ry = rng.uniform(0.03, 0.15, 2) * size
    colour = _hsv(rng.uniform(0, 360), rng.uniform(35, 95), rng.uniform(30, 95))
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)


def _draw_polygon(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    n = int(rng.integers(3, 7))
    angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
    radii = rng.uniform(0.04, 0.16, n) * size
    points = [(float(cx + r * np.cos(a)), float(cy + r * np.sin(a))) for a, r in zip(angles, radii, strict=True)]
    colour = _hsv(rng.uniform(0, 360), rng.uniform(35, 95), rng.uniform(30, 95))
    draw.polygon(points, fill=colour)


def photograph(seed: int, size: int = 256) -> np.ndarray:
    """A colour "photograph" of an outdoor scene.

    A vertical sky gradient of a random hue over a ground band of another hue, with a sun,
    trees and random filled ellipses and polygons, under fine multiplicative texture noise
    (partly per channel, like sensor noise).

    Parameters
    ----------
    seed : int
        Non-negative seed; different seeds give visibly different scenes.
    size : int, default 256
        Width and height in pixels, at least 64.

    Returns
    -------
    np.ndarray
        uint8 (size, size, 3) RGB.
    """
    size = _check_size(size, _MIN_PICTURE_SIZE)
    rng = np.random.default_rng(seed)
    hue = rng.uniform(0.0, 360.0)
    sky_top = _hsv(hue, rng.uniform(45, 85), rng.uniform(55, 85))
    sky_bottom = _hsv(hue + rng.uniform(-30, 30), rng.uniform(15, 40), rng.uniform(85, 100))
    ground_hue = hue + rng.uniform(90.0, 270.0)
    ground_top = _hsv(ground_hue, rng.uniform(35, 75), rng.uniform(45, 80))
    ground_bottom = _hsv(ground_hue + rng.uniform(-20, 20), rng.uniform(40, 85), rng.uniform(20, 50))
    horizon = int(size * rng.uniform(0.45, 0.75))

    canvas = np.empty((size, size, 3), np.float32)
    canvas[:horizon] = _gradient(sky_top, sky_bottom, horizon, size)
    canvas[horizon:] = _gradient(ground_top, ground_bottom, size - horizon, size)
    picture = Image.fromarray(np.rint(canvas).astype(np.uint8))
    draw = ImageDraw.Draw(picture)

    if rng.random() < 0.7:
        r = rng.uniform(0.04, 0.09) * size
        sx, sy = rng.uniform(0.1, 0.9) * size, rng.uniform(0.08, 0.3) * horizon
        draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=_hsv(rng.uniform(35, 60), rng.uniform(20, 60), 100))
    for _ in range(int(rng.integers(4, 9))):
        kind = int(rng.integers(0, 3))
        if kind == 0:
            _draw_tree(draw, rng, size, horizon)
        elif kind == 1:
            _draw_blob(draw, rng, size)
        else:
            _draw_polygon(draw, rng, size)

    out = np.asarray(picture, dtype=np.float32)
    texture = 1.0 + 0.06 * rng.standard_normal((size, size, 1), dtype=np.float32)
    texture = texture + 0.025 * rng.standard_normal((size, size, 3), dtype=np.float32)
    return np.clip(np.rint(out * texture), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- screenshot


def _words(rng: np.random.Generator, low: int, high: int) -> str:
    n = int(rng.integers(low, high + 1))
    return " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), n))


def screenshot(seed: int, size: int = 256) -> np.ndarray:
    """A software screenshot: a window with a title bar, text, buttons and a bar chart.

    A light background, a coloured title bar with a title and window controls, several lines
    of text (random words from a small fixed list, drawn with Pillow's default font), two or
    three rounded buttons and a small bar chart in a white panel. Mostly flat colours.

    Parameters
    ----------
    seed : int
        Non-negative seed of the colours, words and layout.
    size : int, default 256
        Width and height in pixels, at least 64.

    Returns
    -------
    np.ndarray
        uint8 (size, size, 3) RGB.
    """
    size = _check_size(size, _MIN_PICTURE_SIZE)
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    grey = int(rng.integers(232, 248))
    background: RGB = (grey, grey, min(255, grey + int(rng.integers(0, 8))))
    accent_hue = rng.uniform(0.0, 360.0)
    accent = _hsv(accent_hue, rng.uniform(50, 80), rng.uniform(45, 75))
    text_colour: RGB = (40, 40, 48)
    picture = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(picture)

    # Title bar with a title and three window controls.
    bar_h = max(12, size // 12)
    draw.rectangle((0, 0, size - 1, bar_h - 1), fill=accent)
    draw.text((size * 0.03, bar_h * 0.15), _words(rng, 2, 3).title(), fill=(255, 255, 255), font=font)
    r = bar_h * 0.22
    for i in range(3):
        cx, cy = size - bar_h * (0.6 + 0.8 * i), bar_h / 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 250, 250))

    # Lines of text in the left part.
    left = size * 0.05
    line_h = max(font.getbbox("Ag")[3] + 4, size * 0.06)
    y = bar_h + size * 0.05
    for _ in range(int(rng.integers(4, 8))):
        if y + line_h > size * 0.78:
            break
        words = _words(rng, 1, 3).split()
        while len(words) > 1 and draw.textlength(" ".join(words), font=font) > size * 0.5:
            words.pop()
        draw.text((left, y), " ".join(words), fill=text_colour, font=font)
        y += line_h

    # A bar chart in a white panel on the right.
    px0, py0, px1, py1 = size * 0.58, bar_h + size * 0.06, size * 0.95, size * 0.66
    draw.rectangle((px0, py0, px1, py1), fill=(255, 255, 255), outline=(200, 200, 205))
    ax0, ay1 = px0 + (px1 - px0) * 0.1, py1 - (py1 - py0) * 0.1
    ax1, ay0 = px1 - (px1 - px0) * 0.06, py0 + (py1 - py0) * 0.08
    n_bars = int(rng.integers(3, 7))
    slot = (ax1 - ax0) / n_bars
    bar_colour = _hsv(accent_hue + rng.uniform(120, 240), rng.uniform(45, 75), rng.uniform(55, 85))
    for i, h in enumerate(rng.uniform(0.15, 1.0, n_bars)):
        bx = ax0 + slot * (i + 0.2)
        draw.rectangle((bx, ay1 - (ay1 - ay0) * h, bx + slot * 0.6, ay1), fill=bar_colour)
    draw.line((ax0, ay0, ax0, ay1, ax1, ay1), fill=(90, 90, 96), width=1)

    # Two or three buttons along the bottom.
    n_buttons = int(rng.integers(2, 4))
    labels = rng.choice(len(_BUTTON_LABELS), n_buttons, replace=False)
    bw, bh = size * 0.22, max(12.0, size * 0.09)
    by0 = size * 0.85
    for i, k in enumerate(labels):
        bx1 = size * 0.95 - i * (bw + size * 0.04)
        bx0 = bx1 - bw
        fill = accent if i == 0 else (218, 218, 224)
        ink = (255, 255, 255) if i == 0 else text_colour
        draw.rounded_rectangle((bx0, by0, bx1, by0 + bh), radius=bh * 0.3, fill=fill, outline=(150, 150, 158))
        draw.text((bx0 + bw * 0.15, by0 + bh * 0.2), _BUTTON_LABELS[int(k)], fill=ink, font=font)

    return np.asarray(picture, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- radiographs from CT


def _check_volume(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    vol = np.asarray(hu)
    if vol.ndim != 3 or min(vol.shape) < 1:
        raise ValueError(f"hu must be a non-empty 3D (z, y, x) volume, got shape {vol.shape}")
    if not (np.issubdtype(vol.dtype, np.integer) or np.issubdtype(vol.dtype, np.floating)):
        raise ValueError(f"hu must hold numbers, got dtype {vol.dtype}")
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must be three positive numbers (z, y, x), got {spacing_mm!r}")
    return vol, spacing


def _drr(hu: np.ndarray, spacing_mm: tuple[float, float, float], axis: int, size: int) -> np.ndarray:
    """Digitally reconstructed radiograph integrating along ``axis`` (1 or 2); rows z, head up."""
    size = _check_size(size, _MIN_DRR_SIZE)
    vol, spacing = _check_volume(hu, spacing_mm)
    mu = np.maximum(vol.astype(np.float32) + np.float32(1000.0), np.float32(0.0)) / np.float32(1000.0)
    path = mu.sum(axis=axis, dtype=np.float64) * (spacing[axis] / 10.0)  # water-equivalent cm
    body = path > BODY_PATH_CM
    reference = path[body] if body.any() else path[path > 0]
    if reference.size:
        k = np.log(2.0) / float(np.median(reference))
        unit = 1.0 - np.exp(-k * path)
    else:  # nothing but air: a black radiograph
        unit = np.zeros_like(path)
    unit = unit[::-1].astype(np.float32)  # row 0 = last z index

    col_spacing = spacing[1] if axis == 2 else spacing[2]
    extent_rows = unit.shape[0] * spacing[0]
    extent_cols = unit.shape[1] * col_spacing
    scale = size / max(extent_rows, extent_cols)  # pixels per mm
    rows = int(min(size, max(1, round(extent_rows * scale))))
    cols = int(min(size, max(1, round(extent_cols * scale))))
    resized = Image.fromarray(np.ascontiguousarray(unit)).resize((cols, rows), Image.Resampling.BILINEAR)
    out = np.zeros((size, size), np.float32)
    r0, c0 = (size - rows) // 2, (size - cols) // 2
    out[r0 : r0 + rows, c0 : c0 + cols] = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return out


def lateral_drr(hu: np.ndarray, spacing_mm: tuple[float, float, float], size: int = 256) -> np.ndarray:
    """A lateral chest radiograph simulated from a CT volume (digitally reconstructed).

    Hounsfield units become linear attenuation relative to water, ``max(0, (HU + 1000) / 1000)``
    (air 0, water 1), summed along x (axis 2) times the x spacing in cm, and displayed as
    ``1 - exp(-k * path)`` (dense = bright), with ``k`` set so that the median over the body
    (rays with more than :data:`BODY_PATH_CM` of water-equivalent path) is 0.5. Rows run along
    z and columns along y; the image is resampled to keep the physical aspect ratio and centred
    in a black (0) square frame.

    Parameters
    ----------
    hu : np.ndarray
        (z, y, x) volume in Hounsfield units; axis 1 runs anterior to posterior, axis 2 right
        to left.
    spacing_mm : tuple of float
        Voxel spacing (z, y, x) in millimetres.
    size : int, default 256
        Width and height of the output in pixels, at least 8.

    Returns
    -------
    np.ndarray
        float32 (size, size) in [0, 1]. Row 0 is the last z index (the top slice of a volume
        stored inferior to superior, such as the demo phantoms, so the head is up); column 0 is
        y index 0 (anterior).

    Raises
    ------
    ValueError
        For a volume that is not 3D, a spacing that is not three positive numbers, or a size
        below 8.
    """
    return _drr(hu, spacing_mm, axis=2, size=size)


def frontal_drr(hu: np.ndarray, spacing_mm: tuple[float, float, float], size: int = 256) -> np.ndarray:
    """A frontal chest radiograph simulated from a CT volume, integrating along y (axis 1).

    Same model as :func:`lateral_drr`; rows run along z and columns along x.

    Parameters
    ----------
    hu : np.ndarray
        (z, y, x) volume in Hounsfield units.
    spacing_mm : tuple of float
        Voxel spacing (z, y, x) in millimetres.
    size : int, default 256
        Width and height of the output in pixels, at least 8.

    Returns
    -------
    np.ndarray
        float32 (size, size) in [0, 1]. Row 0 is the last z index; column 0 is x index 0 (the
        patient's right in the demo phantoms, i.e. the viewer's left as on a PA radiograph).

    Raises
    ------
    ValueError
        As :func:`lateral_drr`.
    """
    return _drr(hu, spacing_mm, axis=1, size=size)


def _phantom_for_seed(seed: int) -> CtPhantom:
    """The demo CT phantom behind the phantom probes of ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative seed: chooses the label among :data:`PHANTOM_LABELS` and the severity in
        :data:`PHANTOM_SEVERITY_RANGE`, and is the phantom's own seed.

    Returns
    -------
    CtPhantom
        From :func:`core.demo.ct_phantom.generate_ct` at its default shape.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    label = PHANTOM_LABELS[int(rng.integers(0, len(PHANTOM_LABELS)))]
    severity = float(rng.uniform(*PHANTOM_SEVERITY_RANGE))
    return generate_ct(label, severity, int(seed))


def lateral_phantom(seed: int, size: int = 256) -> np.ndarray:
    """:func:`lateral_drr` of the demo CT phantom of :func:`_phantom_for_seed`.

    Parameters
    ----------
    seed : int
        Non-negative seed of the phantom.
    size : int, default 256
        Width and height in pixels, at least 8.

    Returns
    -------
    np.ndarray
        float32 (size, size) in [0, 1], head up, anterior on the left, in a black frame above
        and below (the phantom's field of view is 288 mm high and 358.4 mm deep).
    """
    phantom = _phantom_for_seed(seed)
    return lateral_drr(phantom.hu, phantom.spacing_mm, size)


def frontal_phantom(seed: int, size: int = 256) -> np.ndarray:
    """:func:`frontal_drr` of the demo CT phantom of :func:`_phantom_for_seed`.

    Parameters
    ----------
    seed : int
        Non-negative seed of the phantom.
    size : int, default 256
        Width and height in pixels, at least 8.

    Returns
    -------
    np.ndarray
        float32 (size, size) in [0, 1], head up, the patient's right on the left, in a black
        frame above and below.
    """
    phantom = _phantom_for_seed(seed)
    return frontal_drr(phantom.hu, phantom.spacing_mm, size)


# --------------------------------------------------------------------------- CT slices


def ct_slice_image(hu_slice: np.ndarray, window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """One axial CT slice in a display window, as a slice exported to PNG looks.

    Parameters
    ----------
    hu_slice : np.ndarray
        (H, W) Hounsfield units.
    window : tuple of float, default :data:`LUNG_WINDOW`
        (center, width) in HU; width must be positive.

    Returns
    -------
    np.ndarray
        float32 (H, W) in [0, 1]: 0 at and below ``center - width / 2``, 1 at and above
        ``center + width / 2``, linear in between.
    """
    arr = np.asarray(hu_slice)
    if arr.ndim != 2:
        raise ValueError(f"hu_slice must be 2D (H, W), got shape {arr.shape}")
    center, width = float(window[0]), float(window[1])
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        raise ValueError(f"window must be a finite (center, width) with width > 0, got {window!r}")
    low = center - width / 2.0
    unit = (arr.astype(np.float64) - low) / width
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def ct_phantom_slices(seed: int, n: int = 4) -> list[np.ndarray]:
    """Axial slices through the lungs of the demo CT phantom of :func:`_phantom_for_seed`.

    The slices are spread evenly over the central half of the lungs' z extent (the centre
    slice when ``n`` is 1), inferior first; two may coincide when ``n`` exceeds the number of
    slices there.

    Parameters
    ----------
    seed : int
        Non-negative seed of the phantom.
    n : int, default 4
        Number of slices, at least 1.

    Returns
    -------
    list of np.ndarray
        ``n`` float32 (y, x) images in [0, 1] from :func:`ct_slice_image` in the lung window,
        anterior up and the patient's right on the left (128 x 128 for the default phantom).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    phantom = _phantom_for_seed(seed)
    lung_z = np.flatnonzero(phantom.lung_mask.any(axis=(1, 2)))
    if lung_z.size:
        z0, z1 = float(lung_z[0]), float(lung_z[-1])
    else:
        z0 = z1 = (phantom.hu.shape[0] - 1) / 2.0
    fractions = 0.25 + 0.5 * (np.arange(int(n)) + 0.5) / int(n)
    indices = np.rint(z0 + (z1 - z0) * fractions).astype(int)
    return [ct_slice_image(phantom.hu[i]) for i in indices]


# --------------------------------------------------------------------------- transforms and files


def inverted(unit: np.ndarray) -> np.ndarray:
    """Grey levels inverted, as a radiograph saved with the wrong photometric interpretation.

    Parameters
    ----------
    unit : np.ndarray
        Float image with values in [0, 1], any shape.

    Returns
    -------
    np.ndarray
        float32 ``1 - unit``, same shape; a new array.

    Raises
    ------
    ValueError
        For a non-float array or values outside [0, 1].
    """
    arr = _check_unit(unit, "unit")
    return (np.float32(1.0) - arr.astype(np.float32)).astype(np.float32)


def to_png(image: np.ndarray) -> bytes:
    """The PNG file a user would upload, without metadata.

    Parameters
    ----------
    image : np.ndarray
        Either a float (H, W) image in [0, 1], saved as 8-bit grayscale (``round(255 * x)``),
        or a uint8 (H, W) grayscale or (H, W, 3) RGB image, saved as is.

    Returns
    -------
    bytes
        The PNG file.

    Raises
    ------
    ValueError
        For another dtype or shape, or float values outside [0, 1].
    """
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.ndim != 2:
            raise ValueError(f"a float image must be 2D (H, W), got shape {arr.shape}")
        arr = np.rint(_check_unit(arr, "image").astype(np.float64) * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected float (H, W), uint8 (H, W) or uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"image must not be empty, got shape {arr.shape}")
    picture = Image.fromarray(np.ascontiguousarray(arr))
    buffer = BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
