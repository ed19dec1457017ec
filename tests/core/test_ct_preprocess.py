from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.ct.preprocess import (
    BONE_WINDOW,
    CT_WINDOWS,
    LUNG_WINDOW,
    MEDIASTINUM_WINDOW,
    prepare_slices,
    prepare_volume,
    resample_volume,
    window_hu,
)
from core.models.manifest import InputSpec
from tests.ct_helpers import phantom_volume

VOLUME_SPEC = InputSpec(24, 1, (0.5,), (0.25,), "test", depth=12, window=LUNG_WINDOW)
SLICE_SPEC = InputSpec(20, 1, (0.5,), (0.25,), "test", window=LUNG_WINDOW)


def test_window_presets_are_center_and_width() -> None:
    assert LUNG_WINDOW == (-600.0, 1500.0)
    assert MEDIASTINUM_WINDOW == (50.0, 350.0)
    assert BONE_WINDOW == (500.0, 2000.0)
    assert CT_WINDOWS == {"lung": LUNG_WINDOW, "mediastinum": MEDIASTINUM_WINDOW, "bone": BONE_WINDOW}


def test_window_hu_maps_the_window_linearly_to_unit_range() -> None:
    hu = np.array([-2000, -1350, -975, -600, 150, 3000], dtype=np.int16)
    out = window_hu(hu, *LUNG_WINDOW)
    assert out.dtype == np.float32 and out.shape == hu.shape
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, 0.5, 1.0, 1.0], atol=1e-6)
    # Mediastinum: 50 HU is mid-grey, water (0 HU) a little darker.
    np.testing.assert_allclose(window_hu(np.array([50.0, 0.0]), *MEDIASTINUM_WINDOW), [0.5, 0.5 - 50 / 350], atol=1e-6)


def test_window_hu_leaves_its_input_alone_and_rejects_a_zero_width() -> None:
    hu = np.full((2, 3, 4), -600.0, dtype=np.float32)
    out = window_hu(hu, *LUNG_WINDOW)
    out[:] = 7.0
    assert (hu == -600.0).all()
    with pytest.raises(ValueError, match="width"):
        window_hu(hu, -600.0, 0.0)


def test_prepare_volume_shape_dtype_and_known_values() -> None:
    hu = np.full((30, 50, 40), -600.0, dtype=np.float32)
    x = prepare_volume(hu, VOLUME_SPEC)
    assert x.shape == (1, 1, 12, 24, 24) and x.dtype == torch.float32
    # -600 HU -> 0.5 in the lung window -> (0.5 - 0.5) / 0.25 = 0
    assert torch.allclose(x, torch.zeros_like(x), atol=1e-6)
    air = prepare_volume(np.full((5, 8, 8), -1000, dtype=np.int16), VOLUME_SPEC)
    assert torch.allclose(air, torch.full_like(air, (350 / 1500 - 0.5) / 0.25), atol=1e-5)


def test_prepare_volume_takes_a_ct_volume_keeps_z_order_and_does_not_modify_it() -> None:
    volume = phantom_volume()
    before = volume.hu.copy()
    x = prepare_volume(volume, VOLUME_SPEC)
    assert np.array_equal(volume.hu, before)
    assert torch.equal(x, prepare_volume(volume.hu, VOLUME_SPEC))
    ramp = np.broadcast_to(np.linspace(-1300, 100, 40, dtype=np.float32)[:, None, None], (40, 16, 16))
    z_profile = prepare_volume(ramp, VOLUME_SPEC)[0, 0, :, 5, 5]
    assert (torch.diff(z_profile) > 0).all()  # slice 0 stays first


def test_prepare_volume_uses_the_spec_window_and_channels() -> None:
    hu = np.full((6, 10, 10), 50.0, dtype=np.float32)
    spec = InputSpec(8, 3, (0.5, 0.4, 0.3), (0.25, 0.2, 0.1), "t", depth=4, window=MEDIASTINUM_WINDOW)
    x = prepare_volume(hu, spec)
    assert x.shape == (1, 3, 4, 8, 8)
    expected = torch.tensor([(0.5 - 0.5) / 0.25, (0.5 - 0.4) / 0.2, (0.5 - 0.3) / 0.1])
    assert torch.allclose(x.mean(dim=(2, 3, 4))[0], expected, atol=1e-5)


def test_prepare_volume_needs_a_volume_spec_and_a_3d_array() -> None:
    with pytest.raises(ValueError, match="depth"):
        prepare_volume(np.zeros((4, 8, 8)), SLICE_SPEC)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        prepare_volume(np.zeros((8, 8)), VOLUME_SPEC)


@pytest.mark.parametrize(("src", "dst"), [((5, 7, 9), (11, 13, 17)), ((4, 6, 6), (4, 12, 6)), ((8, 8, 8), (8, 8, 8))])
def test_resampling_is_trilinear_when_no_axis_shrinks(src: tuple[int, int, int], dst: tuple[int, int, int]) -> None:
    u = torch.rand(*src, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(u[None, None], size=dst, mode="trilinear", align_corners=False)[0, 0]
    assert torch.allclose(resample_volume(u, dst), expected, atol=1e-6)


def test_shrinking_averages_noise_instead_of_aliasing_it() -> None:
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.normal(0.5, 0.1, size=(64, 128, 128)).astype(np.float32))
    ours = resample_volume(noise, (16, 24, 24))
    naive = F.interpolate(noise[None, None], size=(16, 24, 24), mode="trilinear", align_corners=False)[0, 0]
    assert float(ours.std()) < 0.5 * float(naive.std())
    assert abs(float(ours.mean()) - 0.5) < 0.01


def test_prepare_slices_gives_each_axial_slice_in_order() -> None:
    levels = np.linspace(-1300, 100, 7, dtype=np.float32)
    hu = np.broadcast_to(levels[:, None, None], (7, 30, 26)).copy()
    x = prepare_slices(hu, SLICE_SPEC)
    assert x.shape == (7, 1, 20, 20) and x.dtype == torch.float32
    expected = (window_hu(levels, *LUNG_WINDOW) - 0.5) / 0.25
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.from_numpy(expected), atol=1e-5)


def test_prepare_slices_replicates_grayscale_to_three_channels() -> None:
    spec = InputSpec(16, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "t", window=LUNG_WINDOW)
    volume = phantom_volume()
    x = prepare_slices(volume, spec)
    assert x.shape == (volume.hu.shape[0], 3, 16, 16)
    # The same grayscale under each channel's normalisation.
    unit = x * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)
    assert torch.allclose(unit[:, 0], unit[:, 1], atol=1e-5) and torch.allclose(unit[:, 0], unit[:, 2], atol=1e-5)
    assert float(unit.min()) >= -1e-6 and float(unit.max()) <= 1 + 1e-6


def test_prepare_slices_without_a_window_uses_the_lung_window() -> None:
    spec = InputSpec(16, 1, (0.5,), (0.25,), "t")
    hu = np.full((3, 16, 16), -600.0, dtype=np.float32)
    assert torch.allclose(prepare_slices(hu, spec), torch.zeros(3, 1, 16, 16), atol=1e-6)
