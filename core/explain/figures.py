"""Zoomable plotly figures of images and overlays: one image with its colour bar, or two side by
side with linked zoom. An image travels as one PNG, downsampled for display."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.explain.overlay import downsample_for_display, png_bytes


def _image_trace(rgb: np.ndarray, pixel_mm: tuple[float, float]) -> go.Image:
    """An RGB image as one PNG trace, downsampled for display, its axes in original pixels times
    ``pixel_mm`` (row height, column width)."""
    h, w = rgb.shape[:2]
    row_mm, col_mm = pixel_mm
    shown = downsample_for_display(rgb)
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(shown)).decode("ascii")
    return go.Image(
        source=uri, x0=0, y0=0, dx=col_mm * w / shown.shape[1], dy=row_mm * h / shown.shape[0], hoverinfo="skip"
    )


def image_figure(
    rgb: np.ndarray,
    colorscale: str | None = None,
    colorbar_title: str = "",
    height: int = 560,
    pixel_mm: tuple[float, float] = (1.0, 1.0),
) -> go.Figure:
    """A zoomable, pannable image (RGB uint8 (H, W, 3)); with ``colorscale``, a colour bar 0-1.

    The image travels as one PNG (not a heatmap of numbers), so a 2048 px radiograph stays
    light in the browser. Axes are in original pixels times ``pixel_mm`` (row height, column
    width): with a CT slice's spacing, the slice keeps its physical aspect ratio.
    """
    h, w = rgb.shape[:2]
    row_mm, col_mm = pixel_mm
    fig = go.Figure(_image_trace(rgb, pixel_mm))
    if colorscale:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                showlegend=False,
                hoverinfo="skip",
                marker=dict(
                    colorscale=colorscale,
                    cmin=0.0,
                    cmax=1.0,
                    color=[0.0],
                    showscale=True,
                    colorbar=dict(
                        title=dict(text=colorbar_title, side="right"),
                        thickness=14,
                        tickvals=[0, 0.5, 1],
                        ticktext=["low", "0.5", "high"],
                    ),
                ),
            )
        )
    fig.update_xaxes(visible=False, range=[0, w * col_mm])
    fig.update_yaxes(visible=False, range=[h * row_mm, 0], scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=0, b=0), dragmode="pan")
    return fig


#: Browser-side options: scroll to zoom, drag to pan, double-click to reset.
IMAGE_CONFIG = {"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def side_by_side_figure(
    left: np.ndarray,
    right: np.ndarray,
    titles: tuple[str, str],
    height: int = 520,
    pixel_mm: tuple[float, float] = (1.0, 1.0),
) -> go.Figure:
    """Two RGB images (H, W, 3) of the same shape side by side with linked zoom and pan.

    Axes are in pixels times ``pixel_mm`` (row height, column width), as in :func:`image_figure`:
    two CT slices on one grid keep the slice's physical aspect ratio.
    """
    if left.shape != right.shape:
        raise ValueError(f"images differ in shape: {left.shape} vs {right.shape}")
    h, w = left.shape[:2]
    row_mm, col_mm = pixel_mm
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.02)
    for col, rgb in ((1, left), (2, right)):
        fig.add_trace(_image_trace(rgb, pixel_mm), row=1, col=col)
    # One zoom for both: the second panel's axes follow the first's.
    fig.update_xaxes(visible=False, range=[0, w * col_mm], matches="x")
    fig.update_yaxes(visible=False, range=[h * row_mm, 0], matches="y", scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), dragmode="pan")
    return fig
