"""Network architectures of the chest X-ray classifiers (seed 000): ResNet-18, DenseNet-121 and
a small custom CNN.

Each returns an ``nn.Module`` whose ``forward`` maps a batch (N, C, S, S) to logits
(N, num_classes), and whose ``embed`` returns the input of the last fully connected layer
(the feature vector used for similar-case search). Every ReLU is out-of-place: Captum's guided
backpropagation and Grad-CAM hook module outputs, and an in-place ReLU (torchvision's DenseNet
uses them) would overwrite a hooked tensor.
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.parts import adapt_first_conv, make_relus_out_of_place, resnet_embed
from core.torchvision_compat import ensure_torchvision


class XrayResNet18(nn.Module):
    """torchvision ResNet-18 with a new classifier: optional dropout, then FC to the classes.

    Submodule names under ``net`` are torchvision's, so an ImageNet state dict loads into it.
    Grad-CAM layer: ``net.layer4`` (512 x S/32 x S/32). Embedding: 512-d.
    """

    gradcam_layer = "net.layer4"
    embedding_dim = 512
    #: Layers whose spatial means the OOD reference models (:mod:`core.ood`), the last the penultimate.
    ood_layers = ("net.layer1", "net.layer2", "net.layer3", "net.layer4")

    def __init__(self, num_classes: int = 3, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        tv = ensure_torchvision()
        net = tv.models.resnet18(weights=None)
        net.conv1 = adapt_first_conv(net.conv1, in_channels)
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))
        self.net = net
        make_relus_out_of_place(self)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return resnet_embed(self.net, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.embed(x))


class XrayDenseNet121(nn.Module):
    """torchvision DenseNet-121 features, an explicit out-of-place ReLU, pooling and FC.

    torchvision applies ``F.relu(..., inplace=True)`` after ``features`` inside ``forward``;
    here that ReLU is a module of its own (``relu``) and is the Grad-CAM layer
    (1024 x S/32 x S/32). ``freeze_features`` trains the classifier only (seed 000, App. C).
    """

    gradcam_layer = "relu"
    embedding_dim = 1024
    ood_layers = ("features.denseblock1", "features.denseblock2", "relu")

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        dropout: float = 0.0,
        freeze_features: bool = False,
    ) -> None:
        super().__init__()
        tv = ensure_torchvision()
        dense = tv.models.densenet121(weights=None)
        dense.features.conv0 = adapt_first_conv(dense.features.conv0, in_channels)
        self.features = dense.features
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1024, num_classes))
        make_relus_out_of_place(self)
        if freeze_features:
            for p in self.features.parameters():
                p.requires_grad_(False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.relu(self.features(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class _ConvBlock(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, pool: bool) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class XrayCustomCNN(nn.Module):
    """The small custom CNN (Pasa et al. 2019 style, as seed 000 used it).

    ``blocks`` simple blocks of two 3x3 conv + ReLU (seed 000 found 6 blocks better than the
    original 5), 2x2 max pooling after each block but the last, global average pooling, one
    FC. BatchNorm after each conv is our addition: it trains reliably from scratch at the
    seed's small learning rate. One input channel: it never uses ImageNet weights, and three
    copies of a grayscale image carry no more information than one.
    Grad-CAM layer: ``blocks.<last>`` (width[-1] x S/2^(blocks-1)).
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 1,
        blocks: int = 6,
        width: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError("the custom CNN needs at least one block")
        channels = [width * (i + 1) for i in range(blocks)]
        mods: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            mods.append(_ConvBlock(prev, ch, pool=i < blocks - 1))
            prev = ch
        self.blocks = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(prev, num_classes))
        self.gradcam_layer = f"blocks.{blocks - 1}"
        self.embedding_dim = prev
        self.ood_layers = tuple(dict.fromkeys(f"blocks.{i}" for i in (0, blocks // 2, blocks - 1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.blocks(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
