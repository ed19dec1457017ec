"""COVID3D fine-tuned for prognosis (seed 003, task 2): high risk (a remaining hospital stay of
at least 7 days, the paper's median) vs low risk, from one scan or from two (prior + follow-up).

The network is COVID3D's feature extractor (the same 27 layers, started from the diagnosis
weights) with a new head. With one scan the head reads the scan's pooled features, exactly
COVID3D with a new FC. With two, the same extractor reads both scans (shared weights) and the
head reads the follow-up's features and their change since the prior, ``[f2, f2 - f1]``:
seed 003 expects a fast rise of the COVID features between two scans to mean a long stay,
a fall a short one, which a difference exposes directly.

Input (N, S, D, H, W): S = 1 or 2 lung-windowed volumes in time order (prior first), each
resampled to the manifest's depth x size x size, as COVID3D takes them. Output: one logit,
P(high risk) = sigmoid(logit / T).
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.covid3d import COVID3D_GRADCAM_LAYER, Covid3D

#: Remaining hospital stay (days) from the scan at or above which a patient is high risk.
HIGH_RISK_DAYS: float = 7.0


class Covid3DPrognosis(nn.Module):
    """COVID3D's extractor (``backbone``) and a prognosis head over 1 or 2 scans.

    Grad-CAM layer: ``backbone.features.mixed_5c`` (one map per scan: Captum sees the
    extractor's output for the N * S volumes).

    Examples
    --------
    >>> m = Covid3DPrognosis(width=0.25, scans=2).eval()
    >>> m(torch.zeros(1, 2, 16, 32, 32)).shape
    torch.Size([1, 1])
    """

    gradcam_layer = "backbone." + COVID3D_GRADCAM_LAYER

    def __init__(self, width: float = 1.0, scans: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if scans not in (1, 2):
            raise ValueError(f"the prognosis model reads 1 or 2 scans, got {scans}")
        self.scans = int(scans)
        self.backbone = Covid3D(width=width, in_channels=1)
        self.backbone.fc = nn.Identity()  # replaced by the prognosis head
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.embedding_dim * self.scans, 1)

    def combine(self, features: torch.Tensor) -> torch.Tensor:
        """The head's input from per-scan pooled features (N, S, F)."""
        if self.scans == 1:
            return features[:, 0]
        return torch.cat([features[:, 1], features[:, 1] - features[:, 0]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """High-risk logit (N, 1) of a batch (N, S, D, H, W)."""
        if x.ndim != 5 or x.shape[1] != self.scans:
            raise ValueError(f"this prognosis model takes (N, {self.scans}, D, H, W), got {tuple(x.shape)}")
        n, s = x.shape[:2]
        feats = self.backbone.embed(x.reshape(n * s, 1, *x.shape[2:])).reshape(n, s, -1)
        return self.head(self.dropout(self.combine(feats)))
