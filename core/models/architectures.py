"""Network architectures of the chest X-ray classifiers, and the registry of all architectures.

Each builder returns an ``nn.Module`` whose ``forward`` maps a batch (N, C, S, S) to logits
(N, num_classes), and whose ``embed`` returns the input of the last fully connected layer
(the feature vector used for similar-case search). Every ReLU is out-of-place: Captum's guided
backpropagation and Grad-CAM hook module outputs, and an in-place ReLU (torchvision's DenseNet
uses them) would overwrite a hooked tensor.

The CT networks live in their own modules (:mod:`core.models.covid3d`,
:mod:`core.models.ct_slice`) and are registered here under "covid3d" and "ct-resnet".

Architectures are described in the manifest by name and keyword arguments, so that
``build_model(card.architecture, **card.architecture_kwargs)`` rebuilds the exact network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.models.covid3d import Covid3D
from core.models.ct_slice import CtSliceResNet
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


def _cnn_lstm(**kwargs: Any) -> nn.Module:
    from core.models.survival import CnnLstmSurvival  # imports this module: built late

    return CnnLstmSurvival(**kwargs)


def _covid3d_prognosis(**kwargs: Any) -> nn.Module:
    from core.models.prognosis import Covid3DPrognosis

    return Covid3DPrognosis(**kwargs)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": XrayResNet18,
    "densenet121": XrayDenseNet121,
    "custom": XrayCustomCNN,
    # CT: COVID3D on whole volumes (seed 003) and the ResNet slice model (seed 002).
    "covid3d": Covid3D,
    "ct-resnet": CtSliceResNet,
    # Survival from an X-ray series (seed 000) and prognosis from CT (seed 003).
    "cnn-lstm": _cnn_lstm,
    "covid3d-prognosis": _covid3d_prognosis,
}


def build_model(architecture: str, **kwargs: Any) -> nn.Module:
    """Build an untrained network by manifest architecture name and keyword arguments."""
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None
    return builder(**kwargs)


def gradcam_layer_of(model: nn.Module, layer_name: str) -> nn.Module:
    """Return the submodule named ``layer_name`` (a dotted path, never evaluated as code)."""
    try:
        return model.get_submodule(layer_name)
    except AttributeError as e:
        raise ValueError(f"model has no layer named {layer_name!r}") from e
