"""``python -m core train-prognosis --scans 1|2``: COVID3D fine-tuned for prognosis (seed 003).

Training items: with one scan, every CT of a COVID-19 patient whose remaining stay from that
scan is known to be >= 7 days (high risk) or < 7 days (low risk); with two, every pair of
consecutive CTs (prior, follow-up), labelled by the remaining stay from the follow-up.

Fine-tuning: the network starts from a registered COVID3D (``--init``, default ``covid3d``);
its layers up to ``mixed_5a`` stay frozen (their outputs are computed once per scan), the
last two Inception blocks and the new head train, BatchNorm keeping COVID3D's statistics.
seed 003 fine-tuned COVID3D without saying which layers; freezing the early ones is what a
CPU and a few hundred patients allow.

Patients are split 70/10/20 stratified by outcome (the same patients for the 1- and 2-scan
runs with the same seed), plain BCE (``balanced`` weights the classes equally), the epoch with
the lowest dev loss kept, the temperature and the operating threshold (Youden) fitted on dev. Held out: the classification numbers over all test items, and the Kaplan-Meier
stratification of the test patients with at least two CTs, timed from their second CT: the
model's groups (at the dev split's Youden threshold), and a clinical-factors baseline (logistic
regression on age and sex fitted on the training patients, high risk above the training
patients' average risk) on the same patients, as seed 003 compares them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from torch import nn
from tqdm import tqdm

from core.ct.preprocess import prepare_volume
from core.datasets.splits import split_patients
from core.errors import InsufficientDataError
from core.evaluation.binary import binary_metrics, youden_threshold
from core.models.manifest import InputSpec
from core.models.prognosis import HIGH_RISK_DAYS, Covid3DPrognosis
from core.models.registry import ModelRegistry
from core.survival.analysis import risk_groups_km
from core.survival.cohort import OutcomePatient, Scan, clinical_design
from core.training import distributed
from core.training.loop import Batch, balanced_weights, fit_binary, predict_logits, seeded_device
from core.training.publish import DEMO_INTENDED_USE, CardDraft, DevSplit, Measured, TrainResult, publish

PROGNOSIS_LABELS = ("High risk",)
SPLIT = (0.7, 0.1, 0.2)
#: The first layer that trains; everything before it keeps COVID3D's weights.
TRAINABLE_FROM = "mixed_5b"


@dataclass
class PrognosisTrainConfig:
    scans: int = 2
    init: str = "covid3d"
    init_weights_dir: str | None = None
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 16
    max_epochs: int = 40
    patience: int = 6
    labels: tuple[str, ...] = ("COVID-19",)
    balanced: bool = False  # weight the classes equally (then probabilities carry the balanced prior)
    seed: int = 0
    device: str | None = None
    data_note: str = ""
    intended_use: str = DEMO_INTENDED_USE

    @property
    def id(self) -> str:
        return f"covid3d-prognosis-{self.scans}scan"


@dataclass(frozen=True)
class Item:
    """One training example: the patient, the scans in time order, the day the risk is judged."""

    patient_id: str
    scans: tuple[Scan, ...]
    day: float


def items_of(patient: OutcomePatient, scans: int) -> list[Item]:
    """Every scan (1) or consecutive pair (2) of a patient's CTs, with the last scan's day."""
    cts = patient.cts()
    return [Item(patient.patient_id, tuple(cts[i - scans + 1 : i + 1]), cts[i].day) for i in range(scans - 1, len(cts))]


def km_item(patient: OutcomePatient, scans: int) -> Item | None:
    """The item a patient is stratified by: the second CT (and the first, for two scans)."""
    cts = patient.cts()
    if len(cts) < 2:
        return None
    return Item(patient.patient_id, tuple(cts[2 - scans : 2]), cts[1].day)


def trunk_index(model: Covid3DPrognosis, name: str = TRAINABLE_FROM) -> int:
    names = [n for n, _ in model.backbone.features.named_children()]
    return names.index(name)


class _Tail(nn.Module):
    """The trainable part over cached trunk outputs: the last blocks, pooling and the head.
    BatchNorm stays in eval mode (COVID3D's running statistics) even while training."""

    def __init__(self, model: Covid3DPrognosis, start: int) -> None:
        super().__init__()
        self.model = model
        self.blocks = model.backbone.features[start:]
        for p in model.backbone.features[:start].parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> _Tail:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, S, C', d, h, w) cached trunk outputs -> high-risk logit (N, 1)."""
        n, s = z.shape[:2]
        feats = torch.flatten(self.model.backbone.pool(self.blocks(z.reshape(n * s, *z.shape[2:]).float())), 1)
        return self.model.head(self.model.dropout(self.model.combine(feats.reshape(n, s, -1))))


@torch.inference_mode()
def _trunk_outputs(
    model: Covid3DPrognosis, items: list[Item], start: int, spec: InputSpec, device: torch.device, progress: bool
) -> dict[str, torch.Tensor]:
    model.eval()
    trunk = model.backbone.features[:start]
    scans = {s.ref: s for it in items for s in it.scans}
    out: dict[str, torch.Tensor] = {}
    for ref, scan in tqdm(scans.items(), desc="reading CTs through COVID3D", unit="scan", disable=not progress):
        try:
            x = prepare_volume(scan.load(), spec)
        except Exception:  # noqa: BLE001 - an unreadable scan drops its items; counted in the card
            continue
        out[ref] = trunk(x.to(device)).to(torch.float16).cpu()[0]
    return out


def _batches(
    items: list[Item],
    cache: dict[str, torch.Tensor],
    y: np.ndarray,
    w: np.ndarray,
    batch_size: int,
    device: torch.device,
    seed: int | None,
) -> Iterator[Batch]:
    order = np.arange(len(items))
    if seed is not None:
        np.random.default_rng(seed).shuffle(order)
        order = distributed.shard(order)  # under torchrun, this process's share of the epoch
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        z = torch.stack([torch.stack([cache[s.ref] for s in items[j].scans]) for j in idx])
        yield (
            (z.to(device),),
            torch.as_tensor(y[idx], dtype=torch.float32, device=device),
            torch.as_tensor(w[idx], dtype=torch.float32, device=device),
        )


def _logits(tail: _Tail, items: list[Item], cache: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    """(N,) high-risk logits of ``items``, in batches of 32."""
    zeros = np.zeros(len(items))
    batches = (x for x, _, _ in _batches(items, cache, zeros, zeros + 1, 32, device, None))
    return predict_logits(tail, batches).reshape(-1) if items else np.zeros(0)


def train_prognosis(
    patients: list[OutcomePatient],
    out_dir: str | Path,
    config: PrognosisTrainConfig,
    *,
    source: str,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune COVID3D for prognosis on ``patients`` (see the module docstring)."""
    device = seeded_device(config.seed, config.device)
    out_dir = Path(out_dir)
    registry = ModelRegistry(config.init_weights_dir or out_dir, device=torch.device("cpu"))
    base = registry.card(config.init)
    if base.architecture != "covid3d":
        raise InsufficientDataError(f"--init must name a COVID3D model; {config.init} is a {base.architecture}.")
    width = float(base.architecture_kwargs.get("width", 1.0))
    model = Covid3DPrognosis(width=width, scans=config.scans, dropout=config.dropout)
    backbone_state = {
        k: v for k, v in registry.load(config.init).module.state_dict().items() if not k.startswith("fc.")
    }
    model.backbone.load_state_dict(backbone_state, strict=True)
    model.to(device)
    start = trunk_index(model)

    eligible = [p for p in patients if p.label in config.labels and p.cts() and p.discharge_endpoint(0.0) is not None]
    parts = split_patients({p.patient_id: str(p.outcome) for p in eligible}, config.seed, SPLIT)
    by_id = {p.patient_id: p for p in eligible}
    items = {
        name: [
            it
            for pid in sorted(ids)
            for it in items_of(by_id[pid], config.scans)
            if by_id[pid].high_risk(it.day) is not None
        ]
        for name, ids in parts.items()
    }
    test_patients = [by_id[pid] for pid in sorted(parts["test"])]
    km_items = [it for p in test_patients if (it := km_item(p, config.scans)) is not None]
    if min(len(items["train"]), len(items["dev"])) < 4:
        raise InsufficientDataError(
            f"Only {len(items['train'])} training and {len(items['dev'])} dev {config.scans}-scan items of patients "
            "with a known remaining stay; prognosis needs more CT follow-ups."
        )
    cache = _trunk_outputs(
        model, [it for v in items.values() for it in v] + km_items, start, base.input, device, progress
    )
    items = {k: [it for it in v if all(s.ref in cache for s in it.scans)] for k, v in items.items()}
    km_items = [it for it in km_items if all(s.ref in cache for s in it.scans)]
    y = {k: np.array([1.0 if by_id[it.patient_id].high_risk(it.day) else 0.0 for it in v]) for k, v in items.items()}
    w = {k: balanced_weights(v) if config.balanced else np.ones(len(v)) for k, v in y.items()}

    tail = _Tail(model, start).to(device)
    fit = fit_binary(
        tail,
        tail,
        lambda epoch: _batches(
            items["train"], cache, y["train"], w["train"], config.batch_size, device, config.seed * 1000 + epoch
        ),
        lambda: _batches(items["dev"], cache, y["dev"], w["dev"], 64, device, None),
        lr=config.lr,
        max_epochs=config.max_epochs,
        patience=config.patience,
        progress=progress,
        desc=f"fine-tuning COVID3D ({config.scans} scan{'s' if config.scans == 2 else ''}): ",
    )
    tail.load_state_dict(fit.state)
    unit = "CT pair" if config.scans == 2 else "CT scan"

    def measure(shipped: nn.Module, temperature: float, dev_logits: np.ndarray) -> Measured:
        threshold = youden_threshold(y["dev"], expit(dev_logits / temperature))  # the dev split's operating point
        p_test = expit(_logits(tail, items["test"], cache, device) / temperature)
        held_out = binary_metrics(y["test"], p_test, threshold, ("Low risk", "High risk"))
        held_out["unit"] = unit
        km_p = expit(_logits(tail, km_items, cache, device) / temperature)
        days = {it.patient_id: it.day for it in km_items}
        high = {it.patient_id: bool(p >= threshold) for it, p in zip(km_items, km_p, strict=True)}
        held_out["km"] = risk_groups_km(test_patients, high, "discharge", days)
        clinical = _clinical_km(items["train"], y["train"], km_items, by_id, days)
        if clinical is not None:
            held_out["km_clinical"] = clinical
        return Measured({"held_out": held_out}, thresholds={"high risk": threshold})

    training = {
        "data": {
            "source": source,
            "note": config.data_note,
            "patients": dict(Counter(str(p.outcome) for p in eligible)),
            "items": {k: {"n": len(v), "high_risk": int(y[k].sum())} for k, v in items.items()},
            "split": f"patient-level {int(SPLIT[0] * 100)}/{int(SPLIT[1] * 100)}/{int(SPLIT[2] * 100)}, "
            f"stratified by outcome, seed {config.seed}",
            "high_risk": f"remaining hospital stay from the (last) scan >= {HIGH_RISK_DAYS:g} days",
            "held_out_patients": sorted(parts["test"]),
        },
        "fine_tuned_from": f"{base.id} {base.version}; layers before {TRAINABLE_FROM} frozen",
        "config": asdict(config) | {"device": str(device)},
        **fit.to_record(),
    }
    draft = CardDraft(
        id=config.id,
        architecture="covid3d-prognosis",
        architecture_kwargs={"width": width, "scans": config.scans, "dropout": config.dropout},
        input_kind="ct-volume-series",
        input=base.input,
        labels=PROGNOSIS_LABELS,
        gradcam_layer=Covid3DPrognosis.gradcam_layer,
        intended_use=config.intended_use,
        extra={
            "task": "prognosis",
            "scans": config.scans,
            "outputs": "one logit: P(high risk) = sigmoid(logit / temperature); high risk = remaining stay >= 7 days",
        },
    )
    dev = DevSplit(
        lambda shipped: _logits(tail, items["dev"], cache, device),
        y["dev"],
        "sigmoid",
        f"dev split ({len(items['dev'])} {unit}s)",
    )
    # The whole network is saved and loaded back into itself; ``tail`` reads the cached trunk
    # outputs through its last blocks and head.
    published = publish(model.state_dict(), lambda: model, device, out_dir, draft, dev, measure, training)
    return TrainResult(published.card, published.weights_path, fit.history)


def _clinical_km(
    train_items: list[Item],
    y_train: np.ndarray,
    km_items: list[Item],
    by_id: dict[str, OutcomePatient],
    days: dict[str, float],
) -> dict[str, Any] | None:
    """Clinical factors only (seed 003's baseline): a logistic regression on age and sex fitted on
    the training items' patients, high risk above the training items' average risk; the KM
    stratification of the held-out patients by it (None without both classes or a patient)."""
    km_patients = [by_id[it.patient_id] for it in km_items]
    if len(set(y_train.tolist())) < 2 or not km_patients:
        return None
    train_rows = [by_id[it.patient_id] for it in train_items]
    clinical = LogisticRegression().fit(clinical_design(train_rows), y_train)
    p_clin = clinical.predict_proba(clinical_design(km_patients))[:, 1]
    base_rate = float(y_train.mean())  # high risk when the predicted risk is above the average
    high = {p.patient_id: bool(q >= base_rate) for p, q in zip(km_patients, p_clin, strict=True)}
    return risk_groups_km(km_patients, high, "discharge", days)
