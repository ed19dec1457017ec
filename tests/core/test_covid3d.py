from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from core.models.architectures import ARCHITECTURES, build_model, gradcam_layer_of
from core.models.covid3d import COVID3D_GRADCAM_LAYER, DEMO_COVID3D, INCEPTION_CHANNELS, Covid3D, Inception3d
from core.models.manifest import InputSpec, ModelCard
from core.models.registry import ModelRegistry
from tests.ct_helpers import register_tiny_ct_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("width", "shape"), [(0.0625, (16, 32, 32)), (0.125, (20, 40, 48)), (0.25, (16, 64, 64))])
def test_forward_maps_a_batch_of_volumes_to_one_logit_each(width: float, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = Covid3D(width=width).eval()
    x = torch.randn(2, 1, *shape)
    with torch.inference_mode():
        logits = model(x)
        features = model.embed(x)
        head = model.fc(features)
    assert logits.shape == (2, 1)
    assert features.shape == (2, model.embedding_dim)
    assert torch.isfinite(logits).all()
    # The FC is the only thing between the pooled features and the logit.
    assert torch.allclose(logits, head, atol=1e-6)


def test_width_scales_every_channel_count_and_the_parameters() -> None:
    counts = {w: _params(Covid3D(width=w)) for w in (0.25, 0.5, 1.0)}
    assert counts[0.25] < counts[0.5] < counts[1.0]
    # The paper's width: Inception-v1 inflated to 3D, about 12.3 M parameters (with a 1-output FC).
    assert 12.0e6 < counts[1.0] < 12.5e6
    assert Covid3D(width=1.0).embedding_dim == 1024  # mixed_5c: 384 + 384 + 128 + 128
    assert Covid3D(width=0.5).embedding_dim == 512
    # Narrow networks keep at least 4 channels in every convolution.
    narrow = Covid3D(width=0.01)
    assert min(m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv3d)) == 4


def test_the_27_layers_are_counted_as_googlenet_counts_them() -> None:
    model = Covid3D(width=1.0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    inceptions = [m for m in model.features if isinstance(m, Inception3d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool3d)]
    assert len(inceptions) == 9 and len(pools) == 4
    assert len(convs) == 3 + 9 * 6  # the stem's three and six per module
    # 3 stem convs + 9 modules x 2 + FC = 22 layers with parameters; + 5 pooling layers = 27.
    assert model.layer_count() == 27
    assert [n for n, _ in model.features.named_children()] == [
        "conv_1a",
        "pool_2a",
        "conv_2b",
        "conv_2c",
        "pool_3a",
        "mixed_3b",
        "mixed_3c",
        "pool_4a",
        "mixed_4b",
        "mixed_4c",
        "mixed_4d",
        "mixed_4e",
        "mixed_4f",
        "pool_5a",
        "mixed_5b",
        "mixed_5c",
    ]
    assert list(INCEPTION_CHANNELS) == [n for n, m in model.features.named_children() if isinstance(m, Inception3d)]
    stem = model.features.conv_1a.conv
    assert stem.kernel_size == (7, 7, 7) and stem.stride == (2, 2, 2)


def test_every_conv_is_followed_by_batchnorm_and_an_out_of_place_relu() -> None:
    model = Covid3D(width=0.25)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 57 and not any(r.inplace for r in relus)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.modules()) == 57
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv3d))


def test_grad_cam_layer_is_the_last_inception_module() -> None:
    model = build_model("covid3d", width=0.25)
    assert isinstance(model, Covid3D)
    assert model.gradcam_layer == COVID3D_GRADCAM_LAYER == "features.mixed_5c"
    assert gradcam_layer_of(model, model.gradcam_layer) is model.features.mixed_5c
    assert "covid3d" in ARCHITECTURES and "ct-resnet" in ARCHITECTURES


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="width"):
        Covid3D(width=0.0)
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        Covid3D(width=0.0625).embed(torch.zeros(1, 16, 32, 32))


def test_demo_configuration_builds_and_runs_on_its_input_grid() -> None:
    model = Covid3D(width=DEMO_COVID3D["width"]).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, DEMO_COVID3D["depth"], DEMO_COVID3D["size"], DEMO_COVID3D["size"]))
    assert out.shape == (1, 1)


def test_registered_tiny_covid3d_loads_with_its_volume_input_spec(tmp_path: Path) -> None:
    card = register_tiny_ct_model(tmp_path, "covid3d-tiny")
    registry = ModelRegistry(tmp_path, device=torch.device("cpu"))
    assert registry.ids("ct-volume") == ["covid3d-tiny"]
    model = registry.load("covid3d-tiny")
    assert isinstance(model.module, Covid3D) and not model.module.training
    assert model.card.input.depth == 16 and model.card.input.window == (-600.0, 1500.0)
    assert model.card.gradcam_layer == "features.mixed_5c"
    assert model.card == card
    x = torch.zeros(1, 1, card.input.depth, card.input.size, card.input.size)
    with torch.inference_mode():
        assert model.module(x).shape == (1, 1)


def test_input_spec_keeps_old_entries_unchanged_and_round_trips_ct_fields() -> None:
    old = {"size": 224, "channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "grayscale": "x"}
    spec = InputSpec.from_dict(old)
    assert spec.depth is None and spec.window is None
    assert spec.to_dict() == old  # no new keys written for an X-ray entry
    ct = InputSpec(112, 1, (0.5,), (0.25,), "ct", depth=48, window=(-600.0, 1500.0))
    d = json.loads(json.dumps(ct.to_dict()))
    assert d["depth"] == 48 and d["window"] == [-600.0, 1500.0]
    assert InputSpec.from_dict(d) == ct


def test_the_shipped_manifest_reads_and_writes_back_unchanged() -> None:
    path = Path(__file__).resolve().parents[2] / "weights" / "manifest.json"
    if not path.exists():
        pytest.skip("no shipped manifest")
    entries = json.loads(path.read_text(encoding="utf-8"))["models"]
    for entry in entries:
        assert ModelCard.from_dict(entry).to_dict() == entry
