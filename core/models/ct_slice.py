"""The 2D CT slice classifier: a torchvision ResNet, COVID-19 vs Normal per axial slice (seed 002).

Seed 002 compared ImageNet CNNs on single axial slices of COVID-CTset (COVID-19 vs normal) and
kept ResNet152 as its champion; the product offers ResNet-18, -50 and -152. Here the network is
built untrained (``weights=None``: nothing is downloaded), its first convolution takes
``in_channels`` channels (1: one lung-windowed slice; 3: three copies, for ImageNet-shaped
inputs), and a new classifier (dropout, FC) gives the logits of :data:`CT_SLICE_LABELS`.

Grad-CAM layer: ``backbone.layer4`` (512 or 2048 x S/32 x S/32). Embedding: the input of the
FC (512-d for ResNet-18, 2048-d for ResNet-50 and -152).
"""

from __future__ import annotations

from typing import Any, Final

import torch
from torch import nn

from core.models.parts import adapt_first_conv, make_relus_out_of_place, resnet_embed
from core.torchvision_compat import ensure_torchvision

#: Output order of the slice model: seed 002's two classes.
CT_SLICE_LABELS: Final[tuple[str, ...]] = ("Normal", "COVID-19")

#: Dotted path of the slice model's Grad-CAM layer.
CT_SLICE_GRADCAM_LAYER: Final = "backbone.layer4"

#: ResNet depths on offer and their feature widths.
RESNET_FEATURES: Final[dict[int, int]] = {18: 512, 50: 2048, 152: 2048}

#: The demo configuration: ResNet-18 on one-channel 96 px lung-windowed slices. Measured on 2
#: cores (``benchmarks/bench_ct.py --candidates``): a training step (forward, backward, Adam)
#: about 15 ms a slice in batches of 16 (128 px: 23 ms), inference about 4 ms a slice
#: (128 px: 6.5 ms), so a 300-slice scan takes about 1 s.
DEMO_CT_SLICE: Final[dict[str, Any]] = {"depth": 18, "size": 96, "channels": 1}


class CtSliceResNet(nn.Module):
    """torchvision ResNet-18/50/152 for one axial CT slice (N, C, S, S) -> logits (N, num_classes).

    Parameters
    ----------
    depth
        18, 50 or 152.
    in_channels
        Channels of the input (1 or 3); the first convolution is replaced when not 3.
    num_classes
        Outputs; 2 for :data:`CT_SLICE_LABELS`.
    dropout
        Dropout probability before the FC.

    Submodule names under ``backbone`` are torchvision's, so an ImageNet state dict of the
    same depth loads into it (except ``conv1`` when ``in_channels != 3`` and ``fc``).
    """

    gradcam_layer = CT_SLICE_GRADCAM_LAYER
    #: Layers whose spatial means the OOD reference models (:mod:`core.ood`), the last the penultimate.
    ood_layers = ("backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4")

    def __init__(self, depth: int = 18, in_channels: int = 1, num_classes: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if depth not in RESNET_FEATURES:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_FEATURES)}, got {depth}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError("in_channels and num_classes must be positive")
        tv = ensure_torchvision()
        net = getattr(tv.models, f"resnet{depth}")(weights=None)
        net.conv1 = adapt_first_conv(net.conv1, in_channels)
        features = RESNET_FEATURES[depth]
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))
        make_relus_out_of_place(net)
        self.backbone = net
        self.depth = depth
        self.embedding_dim = features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The FC's input (N, F) for a batch of slices (N, C, S, S)."""
        return resnet_embed(self.backbone, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.fc(self.embed(x))
