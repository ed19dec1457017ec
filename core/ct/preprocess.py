"""From a CT volume in Hounsfield units to model inputs: windowing and resampling.

The same functions serve training (:mod:`core.training.ct`) and inference
(:mod:`core.ct.analysis`), so a model always sees what it was trained on:

- :func:`prepare_volume` (COVID3D): window the whole volume, resample it to the model's fixed
  grid ``spec.depth x spec.size x spec.size`` and normalise;
- :func:`prepare_slices` (the slice model): window each axial slice, resize it to
  ``spec.size x spec.size`` and normalise.

Resampling follows ``torch.nn.functional.interpolate`` with ``align_corners=False`` (voxel
centres map to voxel centres: a voxel i of n covers [i, i+1) / n of the extent), linear along
every axis (trilinear for a volume). Where an axis shrinks, the linear kernel is widened by the
shrink factor (``antialias=True``), so a 512 px slice resampled to 112 px averages its noise
instead of aliasing it; where an axis grows this is plain linear interpolation. The two axes
in-plane are resampled first, then z.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from core.models.manifest import InputSpec
from core.types import CtVolume

#: Window presets as (center, width) in HU.
LUNG_WINDOW: Final[tuple[float, float]] = (-600.0, 1500.0)
MEDIASTINUM_WINDOW: Final[tuple[float, float]] = (50.0, 350.0)
BONE_WINDOW: Final[tuple[float, float]] = (500.0, 2000.0)
CT_WINDOWS: Final[dict[str, tuple[float, float]]] = {
    "lung": LUNG_WINDOW,
    "mediastinum": MEDIASTINUM_WINDOW,
    "bone": BONE_WINDOW,
}


def window_hu(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map HU linearly to [0, 1]: ``center - width / 2`` -> 0, ``center + width / 2`` -> 1, clipped.

    Works on any shape (a slice, a volume); returns float32 of the same shape, never a view
    of ``hu``. At the lung window (-600, 1500), -600 HU -> 0.5, -1350 HU and below -> 0.
    """
    if not width > 0:
        raise ValueError(f"the window width must be positive, got {width}")
    low = np.float32(center - width / 2.0)
    out = np.subtract(hu, low, dtype=np.float32)
    out *= np.float32(1.0 / width)
    return np.clip(out, 0.0, 1.0, out=out)


def _hu_of(volume: CtVolume | np.ndarray) -> np.ndarray:
    hu = volume.hu if isinstance(volume, CtVolume) else np.asarray(volume)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"expected a CT volume (z, y, x), got shape {hu.shape}")
    return hu


def _window_of(spec: InputSpec) -> tuple[float, float]:
    return spec.window if spec.window is not None else LUNG_WINDOW


def _normalise(unit: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(N, 1, ...) in [0, 1] -> (N, spec.channels, ...) minus mean, over std (per channel)."""
    if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
        raise ValueError(f"the input spec has {spec.channels} channels but {len(spec.mean)} means")
    x = unit.expand(-1, spec.channels, *unit.shape[2:])
    shape = (1, spec.channels) + (1,) * (unit.ndim - 2)
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(shape)
    std = torch.tensor(spec.std, dtype=x.dtype).view(shape)
    return (x - mean) / std


def _resize_planes(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, *size): linear, widened where shrinking (see the module doc)."""
    if tuple(planes.shape[-2:]) == size:
        return planes
    shrinks = planes.shape[-2] > size[0] or planes.shape[-1] > size[1]
    return F.interpolate(planes, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def resample_volume(unit: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Resample a float32 (z, y, x) tensor to ``shape`` (the mapping of the module doc).

    In-plane first (each axial slice), then along z; without shrinking this equals
    ``F.interpolate(..., mode="trilinear", align_corners=False)``.
    """
    depth, rows, cols = shape
    out = _resize_planes(unit[:, None], (rows, cols))[:, 0]  # (z, rows, cols)
    if out.shape[0] != depth:
        # (rows, 1, z, cols): the same 2D resize, along z only.
        out = _resize_planes(out.permute(1, 0, 2)[:, None], (depth, cols))[:, 0].permute(1, 0, 2)
    return out.contiguous()


def prepare_volume(volume: CtVolume | np.ndarray, spec: InputSpec) -> torch.Tensor:
    """A whole CT volume as one COVID3D input (1, C, depth, size, size), float32.

    Steps: HU -> [0, 1] in ``spec.window`` (default :data:`LUNG_WINDOW`); the whole volume
    resampled to ``(spec.depth, spec.size, spec.size)`` (:func:`resample_volume`); minus
    ``spec.mean``, over ``spec.std``; replicated to ``spec.channels``.

    Physical aspect is *not* preserved: every volume fills the same fixed grid whatever its
    field of view, slice count and spacing (a 300-slice 1 mm scan and a 48-slice 6 mm one both
    become ``depth`` slices). The model is trained on volumes mapped by this same function, so
    it sees at inference the geometry it learnt. Maps on this grid go back to the volume's own
    (z, y, x) with :func:`core.explain.gradcam3d.resize_cam`, the inverse mapping.

    ``volume`` is a :class:`CtVolume` or its ``hu`` array (z, y, x) in HU, of any numeric
    dtype; it is not modified.
    """
    if spec.depth is None:
        raise ValueError("the input spec has no depth: it does not describe a volume model")
    unit = torch.from_numpy(window_hu(_hu_of(volume), *_window_of(spec)))
    grid = resample_volume(unit, (spec.depth, spec.size, spec.size)).clamp_(0.0, 1.0)
    return _normalise(grid[None, None], spec).contiguous()


#: HU above which a voxel counts as the patient's body (soft tissue, bone) for :func:`body_box`.
BODY_HU: Final = -400.0


def body_box(hu: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the in-plane bounding box, over all slices, of the largest connected
    region above :data:`BODY_HU` (the patient, without the table and the air around them); the
    whole slice when nothing is found."""
    step = max(1, max(hu.shape[1:]) // 128)  # labelled at about 128 px: the box needs no more
    body = np.asarray(hu)[:, ::step, ::step] > BODY_HU
    labels, n = ndimage.label(body)
    if n == 0:
        return 0, hu.shape[1], 0, hu.shape[2]
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero((labels == 1 + int(np.argmax(sizes))).any(axis=0))
    y0, y1 = int(ys.min()) * step, min(hu.shape[1], (int(ys.max()) + 1) * step)
    x0, x1 = int(xs.min()) * step, min(hu.shape[2], (int(xs.max()) + 1) * step)
    if y1 - y0 < 8 or x1 - x0 < 8:
        return 0, hu.shape[1], 0, hu.shape[2]
    return y0, y1, x0, x1


#: Margin added around the lungs' box on each side by the "lungs" crop, as a share of its size.
LUNG_MARGIN: Final = 0.06

#: A slice is read by a model trained on lung-slice images when its lungs cover at least this
#: share of the series' largest lung cross-section (:func:`lung_slices`).
LUNG_SLICE_SHARE: Final = 0.5

#: Below this share of a slice's area, a slice shows no lung (:func:`lung_areas`).
MIN_LUNG_AREA: Final = 0.01

Box = tuple[int, int, int, int]


def _lung_mask(plane: np.ndarray) -> np.ndarray:
    """The air inside the body of one axial slice (bool, the plane's shape): the largest region
    above :data:`BODY_HU` with its holes filled, minus what is above :data:`BODY_HU`."""
    body = plane > BODY_HU
    labels, n = ndimage.label(body)
    if n == 0:
        return np.zeros_like(body)
    sizes = np.bincount(labels.ravel())[1:]
    inside = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return ndimage.binary_opening(inside & ~body)


def lung_boxes(hu: np.ndarray) -> tuple[list[Box | None], np.ndarray]:
    """Per axial slice, the lungs' in-plane box (y0, y1, x0, x1) with :data:`LUNG_MARGIN`, or None
    where the slice shows no lung; and the lungs' area as a share of the slice (float64 (z,)).

    Lungs are the air enclosed by the body (:func:`_lung_mask`), found at about 128 px.
    """
    hu = _hu_of(hu)
    step = max(1, max(hu.shape[1:]) // 128)
    boxes: list[Box | None] = []
    areas = np.zeros(hu.shape[0])
    for z in range(hu.shape[0]):
        lungs = _lung_mask(np.asarray(hu[z, ::step, ::step]))
        areas[z] = lungs.mean() if lungs.size else 0.0
        if areas[z] < MIN_LUNG_AREA:
            boxes.append(None)
            continue
        ys, xs = np.nonzero(lungs)
        y0, y1 = int(ys.min()) * step, min(hu.shape[1], (int(ys.max()) + 1) * step)
        x0, x1 = int(xs.min()) * step, min(hu.shape[2], (int(xs.max()) + 1) * step)
        my, mx = round((y1 - y0) * LUNG_MARGIN), round((x1 - x0) * LUNG_MARGIN)
        boxes.append((max(0, y0 - my), min(hu.shape[1], y1 + my), max(0, x0 - mx), min(hu.shape[2], x1 + mx)))
    return boxes, areas


def lung_slices(hu: np.ndarray) -> np.ndarray:
    """Which axial slices show the lungs (bool (z,)): those whose lung area is at least
    :data:`LUNG_SLICE_SHARE` of the series' largest; every slice when none shows lung."""
    _, areas = lung_boxes(hu)
    if areas.max(initial=0.0) < MIN_LUNG_AREA:
        return np.ones(areas.shape, dtype=bool)
    return areas >= LUNG_SLICE_SHARE * areas.max()


def slices_read(volume: CtVolume | np.ndarray, spec: InputSpec) -> np.ndarray:
    """The axial slices a slice model reads (bool (z,)): with ``spec.crop == "lungs"`` (a model
    trained on images of slices through the lungs) those that show the lungs (:func:`lung_slices`),
    else every slice."""
    hu = _hu_of(volume)
    if spec.crop == "lungs":
        return lung_slices(hu)
    return np.ones(hu.shape[0], dtype=bool)


def crop_boxes(volume: CtVolume | np.ndarray, spec: InputSpec) -> list[Box]:
    """Per axial slice, the in-plane box (y0, y1, x0, x1) a slice model sees: its lungs
    (:func:`lung_boxes`, the body where a slice shows none) with ``spec.crop == "lungs"``, the
    body (:func:`body_box`) with ``"body"``, else the whole slice."""
    hu = _hu_of(volume)
    if spec.crop == "lungs":
        boxes, _ = lung_boxes(hu)
        body = body_box(hu)
        return [box or body for box in boxes]
    box = body_box(hu) if spec.crop == "body" else (0, hu.shape[1], 0, hu.shape[2])
    return [box] * hu.shape[0]


def prepare_slices(volume: CtVolume | np.ndarray, spec: InputSpec, boxes: list[Box] | None = None) -> torch.Tensor:
    """Every axial slice as a slice-model input: (z, C, size, size), float32, in z order.

    Each slice: cropped to its box (:func:`crop_boxes`, or ``boxes`` when given, one per
    slice): the body when ``spec.crop == "body"``, its own lungs with a margin when
    ``spec.crop == "lungs"`` (models trained on exported slice images that show the chest or
    the lungs only); HU -> [0, 1] in ``spec.window`` (default :data:`LUNG_WINDOW`); resized to
    ``size x size`` (bilinear, anti-aliased when shrinking, no padding: the aspect of a
    non-square slice is not kept, as in training); minus ``spec.mean``, over ``spec.std``;
    grayscale replicated to ``spec.channels`` (3 for ImageNet-shaped models).
    """
    hu = _hu_of(volume)
    boxes = crop_boxes(hu, spec) if boxes is None else boxes
    if len(boxes) != hu.shape[0]:
        raise ValueError(f"{len(boxes)} crop boxes for {hu.shape[0]} slices")
    size = (spec.size, spec.size)
    window = _window_of(spec)
    if len(set(boxes)) == 1:  # one box for all: one resize of the whole stack
        y0, y1, x0, x1 = boxes[0]
        planes = _resize_planes(torch.from_numpy(window_hu(hu[:, y0:y1, x0:x1], *window))[:, None], size)
    else:
        planes = torch.cat(
            [
                _resize_planes(torch.from_numpy(window_hu(hu[z : z + 1, y0:y1, x0:x1], *window))[:, None], size)
                for z, (y0, y1, x0, x1) in enumerate(boxes)
            ]
        )
    return _normalise(planes.clamp_(0.0, 1.0), spec).contiguous()
