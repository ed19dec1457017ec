"""Pieces shared by the torchvision-based architectures (X-ray and CT slice ResNets)."""

from __future__ import annotations

import torch
from torch import nn


def make_relus_out_of_place(module: nn.Module) -> None:
    """Captum hooks module outputs; an in-place ReLU would overwrite a hooked tensor."""
    for sub in module.modules():
        if isinstance(sub, nn.ReLU):
            sub.inplace = False


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` itself when it already takes ``in_channels``, else a fresh one of the same shape."""
    if in_channels == conv.in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )


def resnet_embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision ResNet's pooled features, the input of its FC: (N, C, H, W) -> (N, F)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)
