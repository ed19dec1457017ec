"""Overlays: an attribution map in [0, 1] drawn in colour over a grayscale image."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

#: Colour maps offered in the UI (names of plotly's colour scales).
COLORMAPS: tuple[str, ...] = ("Jet", "Turbo", "Inferno", "Viridis", "Hot")
#: The longest side of an image a page sends to the browser.
DISPLAY_MAX_SIDE = 1024


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table sampled from the plotly colour scale ``name``."""
    from plotly import colors

    try:
        scale = colors.get_colorscale(name)
    except Exception as e:  # plotly raises PlotlyError for unknown names
        raise ValueError(f"unknown colour map {name!r}") from e
    samples = colors.sample_colorscale(scale, np.linspace(0.0, 1.0, 256).tolist(), colortype="rgb")
    rgb = [colors.unlabel_rgb(s) for s in samples]  # "rgb(r, g, b)" -> (r, g, b) in 0-255
    return np.clip(np.round(np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.uint8)


def render_overlay(
    gray_unit: np.ndarray,
    heat_unit: np.ndarray | None,
    colormap: str = "Jet",
    opacity: float = 0.5,
) -> np.ndarray:
    """Blend ``heat_unit`` (H, W) in [0, 1] over ``gray_unit`` (H, W) in [0, 1]; RGB uint8 (H, W, 3).

    The blend weight is ``opacity * sqrt(heat)``: regions the model ignored stay readable as
    radiograph, and the colour at any pixel is the colour bar's colour for its value.
    """
    if gray_unit.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {gray_unit.shape}")
    gray = np.clip(gray_unit, 0.0, 1.0).astype(np.float32)[..., None] * np.float32(255.0)
    if heat_unit is None or opacity <= 0:
        return np.repeat(gray, 3, axis=2).round().astype(np.uint8)
    if heat_unit.shape != gray_unit.shape:
        raise ValueError(f"map shape {heat_unit.shape} differs from image shape {gray_unit.shape}")
    heat = np.clip(heat_unit, 0.0, 1.0).astype(np.float32)
    color = colormap_lut(colormap)[np.round(heat * 255).astype(np.uint8)].astype(np.float32)
    alpha = (np.float32(min(max(opacity, 0.0), 1.0)) * np.sqrt(heat))[..., None]
    out = gray * (1.0 - alpha) + color * alpha
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB or grayscale uint8 array as PNG, in memory."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _display_factor(shape: tuple[int, ...], max_side: int) -> int:
    """The whole-number factor :func:`downsample_for_display` shrinks an image of ``shape`` by."""
    return max(1, int(np.ceil(max(shape[0], shape[1]) / max_side)))


def display_shape(shape: tuple[int, ...], max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(H, W) of an image of ``shape`` after :func:`downsample_for_display`: the size to make a
    map that is drawn over it."""
    factor = _display_factor(shape, max_side)
    return (int(shape[0]) // factor, int(shape[1]) // factor)


def downsample_for_display(arr: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """Stride-free area downsampling so a 2048-3000 px radiograph renders quickly in a browser."""
    factor = _display_factor(arr.shape, max_side)
    if factor <= 1:
        return arr
    h, w = display_shape(arr.shape, max_side)
    a = arr[: h * factor, : w * factor].astype(np.float32)
    a = a.reshape(h, factor, w, factor, *arr.shape[2:]).mean(axis=(1, 3))
    return a.astype(arr.dtype) if arr.dtype != np.uint8 else a.round().astype(np.uint8)


def resize_unit(unit: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A float (H, W) image or map in [0, 1] resized to ``shape`` (anti-aliased bilinear), so two
    images of different sizes can be shown on one grid."""
    import torch
    import torch.nn.functional as F

    if unit.shape == shape:
        return unit
    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))[None, None]
    antialias = t.shape[-2] > shape[0] or t.shape[-1] > shape[1]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=antialias)
    return out[0, 0].clamp_(0.0, 1.0).numpy()
