"""The CNN-LSTM survival model of seed 000 (section 3.2.2): a patient's X-ray series in, the
probability of survival out.

One DenseNet-121 is applied at every time point (time-distributed: the same weights for
each X-ray), its last feature map is average-pooled (adaptive, 1 x 1) to 1024 numbers, an
FC-1024 layer maps them to the LSTM's input, an LSTM with 64 hidden units reads the series
in time order, and one logit on its last hidden state gives P(survival) = sigmoid(logit).

Series of different lengths share a batch through ``torch.nn.utils.rnn.pack_padded_sequence``:
the LSTM stops at each series' own last X-ray, so padding is never read as a time step, and
the CNN runs only on the real X-rays (padding frames are not even computed). A padded batch
therefore gives each series the same output as running it alone (tested).

``forward(x, lengths)`` takes x (N, T, C, S, S) with the X-rays of each patient in time order
(the caller sorts by offset days, never by file order) and lengths (N,). ``head(features,
lengths)`` takes the CNN's pooled features (N, T, 1024) instead: with the CNN frozen, training
precomputes them once and trains only the FC and the LSTM.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from core.models.xray import XrayDenseNet121

#: Seed 000's sizes.
CNN_FEATURES = 1024
FC_FEATURES = 1024
LSTM_HIDDEN = 64


def full_lengths(x: torch.Tensor) -> torch.Tensor:
    """Lengths (N,) of a batch whose series all fill the time axis."""
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.long)


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(N, T) True where a time step holds a real X-ray."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class CnnLstmSurvival(nn.Module):
    """Time-distributed DenseNet-121 -> adaptive average pooling -> FC-1024 -> LSTM(64) -> logit.

    Grad-CAM layer: ``cnn.relu``, the DenseNet's last feature map of every X-ray (Captum
    returns one map per time point). ``freeze_cnn`` trains the FC and the LSTM only.

    Examples
    --------
    >>> m = CnnLstmSurvival().eval()
    >>> m(torch.zeros(2, 3, 3, 64, 64), torch.tensor([3, 1])).shape
    torch.Size([2, 1])
    """

    gradcam_layer = "cnn.relu"

    def __init__(
        self,
        in_channels: int = 3,
        fc_features: int = FC_FEATURES,
        hidden: int = LSTM_HIDDEN,
        dropout: float = 0.0,
        freeze_cnn: bool = False,
    ) -> None:
        super().__init__()
        if fc_features < 1 or hidden < 1:
            raise ValueError(f"fc_features and hidden must be positive, got {fc_features} and {hidden}")
        self.cnn = XrayDenseNet121(num_classes=1, in_channels=in_channels, freeze_features=freeze_cnn)
        self.cnn.classifier = nn.Identity()  # the CNN's own classifier is not part of this model
        self.fc = nn.Sequential(nn.Linear(CNN_FEATURES, fc_features), nn.ReLU(), nn.Dropout(dropout))
        self.lstm = nn.LSTM(fc_features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def cnn_features(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The CNN's pooled features (N, T, 1024) of the real X-rays; zeros at padding."""
        if x.ndim != 5:
            raise ValueError(f"the CNN-LSTM takes (N, T, C, S, S), got {tuple(x.shape)}")
        mask = valid_mask(lengths.to(x.device), x.shape[1])
        feats = x.new_zeros(x.shape[0], x.shape[1], CNN_FEATURES)
        feats[mask] = self.cnn.embed(x[mask])
        return feats

    def head(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Survival logit (N, 1) from pooled CNN features (N, T, 1024) and lengths (N,)."""
        lengths = lengths.to("cpu", torch.long)
        if lengths.numel() != features.shape[0] or int(lengths.min()) < 1 or int(lengths.max()) > features.shape[1]:
            raise ValueError(f"lengths {lengths.tolist()} do not fit a batch of shape {tuple(features.shape)}")
        packed = pack_padded_sequence(self.fc(features), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.out(h_n[-1])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Survival logit (N, 1): P(survival) = sigmoid(logit)."""
        if lengths is None:
            lengths = full_lengths(x)
        return self.head(self.cnn_features(x, lengths), lengths)
