"""COVID3D: an I3D-style inflated Inception-v1 (GoogLeNet) 3D CNN with one COVID logit (seed 003).

Seed 003 describes COVID3D as "a 27-layer I3D-Inception feature extractor, 3D spatial average
pooling, and 1 fully-connected layer". This module builds that network from scratch (no
Kinetics-600 pretraining is available here):

- the I3D stem: ``conv_1a`` 7x7x7 stride 2, ``pool_2a`` 1x3x3 stride (1, 2, 2), ``conv_2b``
  1x1x1, ``conv_2c`` 3x3x3, ``pool_3a`` 1x3x3 stride (1, 2, 2);
- nine Inception modules ``mixed_3b`` ... ``mixed_5c`` with GoogLeNet's channel table
  (Inception 3a ... 5b), each with four branches: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3 (I3D
  inflates GoogLeNet's 5x5 branch to 3x3x3); 3x3x3 max-pool -> 1x1x1. Branches are
  concatenated along channels;
- ``pool_4a`` 3x3x3 stride 2 after ``mixed_3c``, ``pool_5a`` 2x2x2 stride 2 after ``mixed_4f``;
- adaptive 3D average pooling to one voxel, optional dropout, one FC to one output.

Every convolution is Conv3d (no bias) + BatchNorm3d + ReLU. ReLUs are out of place: Captum's
Grad-CAM hooks module outputs, and an in-place ReLU would overwrite a hooked tensor.

**The 27 layers.** GoogLeNet is "22 layers deep when counting only layers with parameters (or
27 layers if we also count pooling)". Counted the same way along the network's longest path:
3 stem convolutions + 9 Inception modules x 2 (their deepest branch is 1x1x1 then 3x3x3) + the
FC = 22 layers with parameters, + 5 pooling layers (``pool_2a``, ``pool_3a``, ``pool_4a``,
``pool_5a`` and the final average pooling) = 27. :meth:`Covid3D.layer_count` computes this
from the modules. (The number of Conv3d modules is larger: 3 + 9 x 6 = 57.)

**Score.** ``forward`` returns the logit s (N, 1): higher is more COVID-like; seed 003's s(t)
is this value for the scan taken at time t. P(COVID+) = sigmoid(s / temperature), the
temperature coming from the model card.

**Grad-CAM layer.** ``features.mixed_5c``, the last Inception module
(1024 * width channels, about D/16 x S/32 x S/32 voxels).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import torch
from torch import nn

#: Dotted path of COVID3D's Grad-CAM layer (the last Inception module).
COVID3D_GRADCAM_LAYER: Final = "features.mixed_5c"

#: Inception-v1 (GoogLeNet) channel table, in I3D's module names: (1x1, 3x3 reduce, 3x3,
#: "5x5" reduce, "5x5" (3x3x3 in I3D), pool projection).
INCEPTION_CHANNELS: Final[dict[str, tuple[int, int, int, int, int, int]]] = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}

#: The demo configuration: what the demo COVID3D is built and trained with (2 CPU cores,
#: about 400 phantom volumes of 48 x 128 x 128 voxels at 6 x 2.8 x 2.8 mm). ``width`` is the
#: channel multiplier (the paper's network is 1.0); ``depth`` x ``size`` x ``size`` is the input
#: grid that :func:`core.ct.preprocess.prepare_volume` resamples every volume to: the phantoms'
#: 48 slices are kept, 128 px in-plane become 112 (3.2 mm), and ``mixed_5c`` (the Grad-CAM
#: layer) is 6 x 4 x 4 voxels. Measured on 2 cores (``benchmarks/bench_ct.py --candidates``):
#: a training step (forward, backward, Adam) about 0.12 s a volume in batches of 8; forward
#: about 90 ms, forward + 3D Grad-CAM about 105 ms; 0.77 M parameters. (32 x 96 x 96 would
#: halve the cost, with a 4 x 3 x 3 map.)
DEMO_COVID3D: Final[dict[str, Any]] = {"width": 0.25, "depth": 48, "size": 112}


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded, and never fewer than 4."""
    return max(4, int(round(channels * width)))


class Conv3dBlock(nn.Sequential):
    """Conv3d (no bias) + BatchNorm3d + ReLU (out of place); 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        super().__init__(
            OrderedDict(
                conv=nn.Conv3d(
                    in_channels, out_channels, k, stride=stride, padding=tuple(v // 2 for v in k), bias=False
                ),
                bn=nn.BatchNorm3d(out_channels),
                relu=nn.ReLU(inplace=False),
            )
        )


class Inception3d(nn.Module):
    """One inflated Inception module: four branches concatenated along channels."""

    #: Depth along the module's longest path, in layers with parameters (1x1x1 then 3x3x3).
    depth = 2

    def __init__(self, in_channels: int, table: tuple[int, int, int, int, int, int], width: float) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = (scaled_channels(c, width) for c in table)
        self.branch_1x1 = Conv3dBlock(in_channels, c1, 1)
        self.branch_3x3 = nn.Sequential(Conv3dBlock(in_channels, c3r, 1), Conv3dBlock(c3r, c3, 3))
        self.branch_5x5 = nn.Sequential(Conv3dBlock(in_channels, c5r, 1), Conv3dBlock(c5r, c5, 3))
        self.branch_pool = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), Conv3dBlock(in_channels, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)], dim=1)


class Covid3D(nn.Module):
    """COVID3D: inflated Inception-v1 features, 3D average pooling, one FC to one logit.

    Parameters
    ----------
    width
        Multiplier of every channel count (rounded, at least 4). 1.0 is the paper's network
        (about 12.3 M parameters); the demo uses :data:`DEMO_COVID3D` ``["width"]``.
    in_channels
        Input channels (1: a lung-windowed CT volume).
    dropout
        Dropout probability before the FC.

    Notes
    -----
    ``forward`` maps (N, in_channels, D, H, W) to the logit s (N, 1); ``embed`` to the pooled
    features (N, F), ``F = embedding_dim``. Inputs smaller than about 16 x 32 x 32 voxels are
    pooled away to a single voxel before ``mixed_5c``; the demo input is 48 x 112 x 112.

    Examples
    --------
    >>> model = Covid3D(width=0.25).eval()
    >>> model(torch.zeros(2, 1, 16, 64, 64)).shape
    torch.Size([2, 1])
    """

    gradcam_layer = COVID3D_GRADCAM_LAYER
    #: Layers whose spatial means the OOD reference models (:mod:`core.ood`), the last the penultimate.
    ood_layers = ("features.conv_2c", "features.mixed_3c", "features.mixed_4f", "features.mixed_5c")

    def __init__(self, width: float = 1.0, in_channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        self.width = float(width)
        c64, c192 = scaled_channels(64, width), scaled_channels(192, width)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv_1a=Conv3dBlock(in_channels, c64, 7, stride=2),
            pool_2a=nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            conv_2b=Conv3dBlock(c64, c64, 1),
            conv_2c=Conv3dBlock(c64, c192, 3),
            pool_3a=nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        channels = c192
        for name, table in INCEPTION_CHANNELS.items():
            if name == "mixed_4b":
                layers["pool_4a"] = nn.MaxPool3d(3, stride=2, padding=1)
            elif name == "mixed_5b":
                layers["pool_5a"] = nn.MaxPool3d(2, stride=2, ceil_mode=True)
            block = Inception3d(channels, table, width)
            layers[name] = block
            channels = block.out_channels
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, 1)
        self.embedding_dim = channels

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, F) of a batch (N, C, D, H, W)."""
        if x.ndim != 5:
            raise ValueError(f"COVID3D takes (N, C, D, H, W), got {tuple(x.shape)}")
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The COVID score s (N, 1), a logit: higher is more COVID-like."""
        return self.fc(self.dropout(self.embed(x)))

    def layer_count(self) -> int:
        """Layers along the longest path, counted as GoogLeNet counts its 27 (see the module doc).

        Convolutions and the FC count one each, an Inception module its depth (2), every pooling
        layer one; dropout, BatchNorm and ReLU are parts of a layer, not layers.
        """
        count = 0
        for module in self.features:
            if isinstance(module, Conv3dBlock | nn.MaxPool3d):
                count += 1
            elif isinstance(module, Inception3d):
                count += module.depth
        return count + 1 + 1  # the average pooling and the FC
