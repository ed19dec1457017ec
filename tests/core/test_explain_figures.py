"""The side-by-side figure: two panels whose zoom is one (the second's axes follow the first's),
in pixels or in millimetres for a CT slice."""

from __future__ import annotations

import numpy as np
import pytest

from core.explain.figures import side_by_side_figure


def _rgb(h: int, w: int, value: int) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def test_two_panels_share_one_zoom() -> None:
    fig = side_by_side_figure(_rgb(40, 60, 10), _rgb(40, 60, 200), ("Prior", "Current"))
    assert [t.type for t in fig.data] == ["image", "image"]
    assert [a.text for a in fig.layout.annotations] == ["Prior", "Current"]
    # Zooming one panel zooms the other: both axes of the second panel match the first's.
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    assert list(fig.layout.xaxis.range) == [0, 60] and list(fig.layout.yaxis.range) == [40, 0]


def test_pixel_spacing_sets_the_axes_in_millimetres() -> None:
    fig = side_by_side_figure(_rgb(40, 60, 10), _rgb(40, 60, 200), ("a", "b"), pixel_mm=(2.5, 0.5))
    assert list(fig.layout.xaxis2.range) == [0, 30.0]
    assert list(fig.layout.yaxis2.range) == [100.0, 0]
    assert fig.data[1].dx == pytest.approx(0.5) and fig.data[1].dy == pytest.approx(2.5)


def test_images_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        side_by_side_figure(_rgb(40, 60, 10), _rgb(40, 61, 10), ("a", "b"))
