"""``python -m core train-survival``: the CNN-LSTM of seed 000 on patients' X-ray series.

The target is survival (discharged alive = 1, died = 0); patients still in hospital have no
known outcome and are kept out of training, but stay in the held-out Kaplan-Meier analysis
as censored. Patients are split 70/10/20 (train/dev/test) stratified by outcome, with a
seed. The loss is plain BCE (``balanced`` weights the classes equally, at the price of
probabilities that carry a 50% prior), the epoch with the lowest dev loss is kept, the
calibration temperature is fitted on the dev split, and the operating threshold on P(death)
is the dev split's Youden point (deaths are rare: 0.5 would call almost nobody high risk).

The CNN starts from a registered DenseNet-121 (``--cnn-init``, default the cxr-findings
model: seed 000 started from a pre-trained DenseNet-121; ImageNet weights cannot be
downloaded here) and is frozen by default, so its pooled features are computed once and only
the FC-1024 and the LSTM train: minutes on a CPU. ``--finetune-cnn`` trains it end to end
(a GPU job).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn
from tqdm import tqdm

from core.datasets.splits import split_patients
from core.errors import InsufficientDataError
from core.evaluation.binary import binary_metrics, youden_threshold
from core.models.manifest import InputSpec
from core.models.registry import ModelRegistry
from core.models.survival import CnnLstmSurvival
from core.preprocess import normalise, to_unit_square
from core.survival.analysis import risk_groups_km
from core.survival.cohort import OutcomePatient
from core.training import distributed
from core.training.loop import Batch, balanced_weights, fit_binary, predict_logits, seeded_device
from core.training.publish import DEMO_INTENDED_USE, CardDraft, DevSplit, Measured, TrainResult, publish

SURVIVAL_LABELS = ("Survival",)
SPLIT = (0.7, 0.1, 0.2)
DEFAULT_INPUT = InputSpec(
    128, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "grayscale copied to the three channels"
)


@dataclass
class SurvivalTrainConfig:
    id: str = "survival-cnn-lstm"
    cnn_init: str | None = "cxr-findings"
    init_weights_dir: str | None = None  # where ``cnn_init`` is registered (default: the output folder)
    freeze_cnn: bool = True
    size: int = 128
    fc_features: int = 1024
    hidden: int = 64
    dropout: float = 0.2
    lr: float = 1e-3  # seed 000 used 0.01; on frozen DenseNet features that stalls at chance (README)
    batch_size: int = 16
    max_epochs: int = 60
    patience: int = 8
    labels: tuple[str, ...] = ("COVID-19",)
    max_xrays: int = 8  # the first 8 X-rays of a long stay
    balanced: bool = False  # weight the classes equally (then probabilities carry the balanced prior)
    seed: int = 0
    device: str | None = None
    data_note: str = ""
    intended_use: str = DEMO_INTENDED_USE

    def architecture_kwargs(self) -> dict[str, Any]:
        return {"in_channels": 3, "fc_features": self.fc_features, "hidden": self.hidden, "dropout": self.dropout}


def series_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    """A patient's X-rays ([0, 1] (H, W) each, in time order) as uint8 (T, 1, S, S)."""
    return torch.stack([(to_unit_square(im, size)[0] * 255).round().to(torch.uint8) for im in images])


def series_input(series: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 (T, 1, S, S) -> the normalised model input (T, C, S, S)."""
    return normalise(series.float() / 255.0, spec)


def pad_batch(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, ...) tensors into (N, T_max, ...) with zeros after each one's end, and lengths."""
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long)
    out = items[0].new_zeros(len(items), int(lengths.max()), *items[0].shape[1:])
    for i, t in enumerate(items):
        out[i, : t.shape[0]] = t
    return out, lengths


def _read_series(
    patients: list[OutcomePatient], config: SurvivalTrainConfig, progress: bool
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for p in tqdm(patients, desc="reading X-ray series", unit="patient", disable=not progress):
        images = []
        for scan in p.xrays()[: config.max_xrays]:
            try:
                images.append(scan.load())
            except Exception:  # noqa: BLE001 - an unreadable image shortens the series; reported in the card
                continue
        if images:
            out[p.patient_id] = series_tensor(images, config.size)
    return out


@torch.inference_mode()
def cnn_features(model: CnnLstmSurvival, series: torch.Tensor, spec: InputSpec, device: torch.device) -> torch.Tensor:
    """Pooled DenseNet features (T, 1024) of one uint8 series."""
    model.eval()
    return model.cnn.embed(series_input(series, spec).to(device)).float().cpu()


def init_cnn(model: CnnLstmSurvival, registry: ModelRegistry, model_id: str) -> InputSpec:
    """Copy a registered DenseNet-121's feature extractor into the CNN; returns its input spec."""
    card = registry.card(model_id)
    if card.architecture != "densenet121":
        raise InsufficientDataError(f"--cnn-init must name a DenseNet-121 model; {model_id} is a {card.architecture}.")
    state = registry.load(model_id).module.state_dict()
    features = {k: v for k, v in state.items() if k.startswith(("features.", "relu."))}
    model.cnn.load_state_dict(features, strict=False)
    return card.input


def _batches(
    ids: list[str],
    inputs: dict[str, torch.Tensor],
    y: dict[str, float],
    w: dict[str, float],
    batch_size: int,
    device: torch.device,
    shuffle_seed: int | None,
) -> Iterator[Batch]:
    order = list(ids)
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
        order = distributed.shard(order)  # under torchrun, this process's share of the epoch
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        x, lengths = pad_batch([inputs[p] for p in chunk])
        yield (
            (x.to(device), lengths),
            torch.tensor([y[p] for p in chunk], dtype=torch.float32, device=device),
            torch.tensor([w[p] for p in chunk], dtype=torch.float32, device=device),
        )


def _logits(
    forward: Callable[..., torch.Tensor],
    module: nn.Module,
    ids: list[str],
    inputs: dict[str, torch.Tensor],
    device: torch.device,
) -> np.ndarray:
    """(N,) survival logits of the patients ``ids``, in batches of 32."""
    batches = (
        (x.to(device), lengths)
        for x, lengths in (pad_batch([inputs[p] for p in ids[i : i + 32]]) for i in range(0, len(ids), 32))
    )
    return predict_logits(module, batches, forward).reshape(-1) if ids else np.zeros(0)


def train_survival(
    patients: list[OutcomePatient],
    out_dir: str | Path,
    config: SurvivalTrainConfig,
    *,
    source: str,
    progress: bool = True,
) -> TrainResult:
    """Train the CNN-LSTM on ``patients`` (see the module docstring); write weights and the manifest entry."""
    device = seeded_device(config.seed, config.device)
    out_dir = Path(out_dir)
    eligible = [p for p in patients if (p.label in config.labels) and p.xrays() and p.death_endpoint() is not None]
    strata = {p.patient_id: str(p.outcome) for p in eligible}
    if sum(1 for p in eligible if p.outcome == "died") < 3 or sum(1 for p in eligible if p.outcome == "discharged") < 3:
        raise InsufficientDataError(
            f"{len(eligible)} patients with {', '.join(config.labels)}, X-rays and a known end of stay, "
            "but a survival model needs at least 3 deaths and 3 discharges."
        )
    parts = split_patients(strata, config.seed, SPLIT)

    model = CnnLstmSurvival(**config.architecture_kwargs(), freeze_cnn=config.freeze_cnn)
    spec = DEFAULT_INPUT
    init_note = "random initialisation"
    if config.cnn_init:
        registry = ModelRegistry(config.init_weights_dir or out_dir, device=torch.device("cpu"))
        spec = init_cnn(model, registry, config.cnn_init)
        init_note = f"DenseNet-121 features of {config.cnn_init} {registry.card(config.cnn_init).version}"
    spec = InputSpec(config.size, spec.channels, spec.mean, spec.std, spec.grayscale)
    model.to(device)

    series = _read_series(eligible, config, progress)
    if config.freeze_cnn:
        inputs = {
            pid: cnn_features(model, s, spec, device)
            for pid, s in tqdm(series.items(), desc="DenseNet features", unit="patient", disable=not progress)
        }

        def forward(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return model.head(x, lengths)
    else:
        inputs = {pid: series_input(s, spec) for pid, s in series.items()}

        def forward(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return model(x, lengths)

    by_id = {p.patient_id: p for p in eligible if p.patient_id in inputs}
    known = {pid: p for pid, p in by_id.items() if p.survival_known}
    train = sorted(pid for pid in parts["train"] if pid in known)
    dev = sorted(pid for pid in parts["dev"] if pid in known)
    y = {pid: 1.0 if p.survived else 0.0 for pid, p in known.items()}
    weigh = balanced_weights if config.balanced else (lambda v: np.ones(len(v)))
    w = dict(zip(train, weigh([y[p] for p in train]), strict=True))
    w |= dict(zip(dev, weigh([y[p] for p in dev]), strict=True))

    fit = fit_binary(
        model,
        forward,
        lambda epoch: _batches(train, inputs, y, w, config.batch_size, device, config.seed * 1000 + epoch),
        lambda: _batches(dev, inputs, y, w, 64, device, None),
        lr=config.lr,
        max_epochs=config.max_epochs,
        patience=config.patience,
        progress=progress,
        desc="training the FC and LSTM: " if config.freeze_cnn else "training the CNN-LSTM: ",
    )

    def measure(shipped: nn.Module, temperature: float, dev_logits: np.ndarray) -> Measured:
        # The operating point: Youden's J on the dev split's calibrated P(death).
        threshold = youden_threshold([1 - y[p] for p in dev], 1.0 - expit(dev_logits / temperature))
        test_all = sorted(pid for pid in parts["test"] if pid in by_id)
        test_known = [pid for pid in test_all if pid in known]
        logits = dict(zip(test_all, _logits(forward, shipped, test_all, inputs, device), strict=False))
        p_death = {pid: 1.0 - float(expit(logits[pid] / temperature)) for pid in test_all}
        held_out = binary_metrics(
            np.array([1 - y[p] for p in test_known]),
            np.array([p_death[p] for p in test_known]),
            threshold,
            ("Survived", "Died"),
        )
        held_out["unit"] = "patient"
        held_out["km"] = risk_groups_km(
            [by_id[p] for p in test_all], {pid: p_death[pid] >= threshold for pid in test_all}, "death"
        )
        return Measured({"held_out": held_out}, thresholds={"death": threshold})

    count = Counter(str(by_id[p].outcome) for p in by_id)
    training = {
        "data": {
            "source": source,
            "note": config.data_note,
            "patients": dict(count),
            "xrays": int(sum(s.shape[0] for s in series.values())),
            "split": f"patient-level {int(SPLIT[0] * 100)}/{int(SPLIT[1] * 100)}/{int(SPLIT[2] * 100)}, "
            f"stratified by outcome, seed {config.seed}; patients still in hospital only in the test split's KM",
            "held_out_patients": sorted(pid for pid in parts["test"] if pid in by_id),
        },
        "cnn_init": init_note,
        "config": asdict(config) | {"device": str(device)},
        **fit.to_record(),
    }
    draft = CardDraft(
        id=config.id,
        architecture="cnn-lstm",
        architecture_kwargs=config.architecture_kwargs(),
        input_kind="xray-series",
        input=spec,
        labels=SURVIVAL_LABELS,
        gradcam_layer=CnnLstmSurvival.gradcam_layer,
        intended_use=config.intended_use,
        extra={
            "task": "survival",
            "outputs": "one logit: P(survival) = sigmoid(logit / temperature); high risk when P(death) >= the death threshold",
        },
    )
    dev_split = DevSplit(
        lambda shipped: _logits(forward, shipped, dev, inputs, device),
        np.array([y[p] for p in dev]),
        "sigmoid",
        f"dev split ({len(dev)} patients)",
    )
    # The network trained is the one the file is loaded back into: the frozen CNN's features
    # were read once, before training, and ``forward`` reads them through this network's head.
    published = publish(fit.state, lambda: model, device, out_dir, draft, dev_split, measure, training)
    return TrainResult(published.card, published.weights_path, fit.history)
