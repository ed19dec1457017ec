"""Float32 image fields for the X-ray phantom: soft steps, blurs, resampling and smooth noise."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: Every field is float32; constants are cast so that numpy keeps it so.
F32 = np.float32


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One uniform draw in [low, high), as a Python float."""
    return float(rng.uniform(low, high))


def ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Soft step from 0 (d <= -width/2) to 1 (d >= width/2), linear in between."""
    out = d * F32(1.0 / width)
    out += F32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def unit_clip(d: np.ndarray, scale: float) -> np.ndarray:
    """``clip(d * scale, 0, 1)`` as float32."""
    out = d * F32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of values already in [0, 1]."""
    return t * t * (F32(3.0) - F32(2.0) * t)


def side_map(right: np.ndarray, pair: tuple[float, float]) -> np.ndarray:
    """Per-pixel value of a (right lung, left lung) parameter pair."""
    return np.where(right, F32(pair[0]), F32(pair[1]))


@lru_cache(maxsize=32)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian kernel truncated at 3 sigma, float32."""
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    out = (taps / taps.sum()).astype(np.float32)
    out.setflags(write=False)
    return out


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (sigma in pixels, mirrored borders) of a float32 image.

    Shifted adds rather than BLAS products: on a shared 2-core machine a multithreaded matrix
    product stalls whenever the other core is busy.
    """
    if sigma <= 0:
        return image
    kernel = _gaussian_kernel(float(sigma))
    radius = kernel.size // 2
    h, w = image.shape
    padded = np.pad(image, ((radius, radius), (0, 0)), mode="reflect")
    rows = kernel[0] * padded[:h]
    for i in range(1, kernel.size):
        rows += kernel[i] * padded[i : i + h]
    padded = np.pad(rows, ((0, 0), (radius, radius)), mode="reflect")
    out = kernel[0] * padded[:, :w]
    for i in range(1, kernel.size):
        out += kernel[i] * padded[:, i : i + w]
    return out


@lru_cache(maxsize=32)
def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices i0, i0 + 1 and weight of i0 + 1 for linear resampling from n_in to n_out."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    for a in (i0, i1, frac):
        a.setflags(write=False)
    return i0, i1, frac


def resample(image: np.ndarray, n_out: int, sigma_in: float) -> np.ndarray:
    """Blur a square float32 image (sigma in its own pixels), then resize it linearly.

    Returns float32 (n_out, n_out).
    """
    image = _blur(image, sigma_in)
    i0, i1, frac = _linear_taps(n_out, image.shape[0])
    top = image[i0]
    rows = top + (image[i1] - top) * frac[:, None]
    left = rows[:, i0]
    return left + (rows[:, i1] - left) * frac[None, :]


def smooth_noise(rng: np.random.Generator, n_coarse: int, sigma: float, size: int) -> np.ndarray:
    """Smooth Gaussian random field (size, size) with unit standard deviation, float32.

    ``n_coarse`` sets the grid the white noise is drawn on and ``sigma`` (in coarse pixels) its
    correlation length, so the feature size is about ``sigma * size / n_coarse`` pixels.
    """
    white = rng.standard_normal((n_coarse, n_coarse), dtype=np.float32)
    coarse = _blur(white, sigma)
    coarse *= F32(1.0 / max(float(coarse.std()), 1e-6))
    return resample(coarse, size, 0.0)
