"""Train cxr-findings (seed 004): a DenseNet-121 with one sigmoid output per finding.

Data:
- a CSV as CheXpert ships it: a ``Path`` (or ``path``) column, one column per finding with
  1 (present), 0 (absent), -1 (uncertain) or blank (not mentioned). Uncertain and blank become
  0 ("U-zeros", seed 004). Patients: a ``patient_id`` column, else the ``patientNNNNN`` part of
  the path (CheXpert's layout), else each file is its own patient. Paths are relative to the
  CSV's folder (or its parent, as CheXpert's ``CheXpert-v1.0/train/...`` paths are);
- ``demo``: the X-rays of a simulated demo cohort (:func:`core.demo.cohort.simulate_cohort`,
  drawn with a seed other than the app's library, so the library's patients are unseen), plus
  normal-control phantoms (the admitted cohort has few clear chests), with the finding labels
  that follow from what each phantom shows.

Loss: BCE with logits, each finding's positives weighted by negatives / positives in the
training split (clipped to [1, 50]; weighted BCE, seed 004). Adam (lr 1e-4, batch 16 in the
paper). Patient-level 80/10/10 split; the epoch with the best dev loss is kept. On the dev
split the shipped model's one temperature (shared by all findings,
:mod:`core.evaluation.calibration`) and each finding's operating threshold (Youden's J on the
calibrated P(present)) are fitted and stored in the model card (``thresholds``, by finding name);
per-finding ROC AUC, and sensitivity and specificity at those thresholds, on the held-out test
split go in it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.datasets.findings import (
    DEMO_COHORT_SEED,
    PATIENTS_PER_NORMAL_CONTROL,
    csv_samples,
    demo_xrays,
    draw_demo_xray,
)
from core.datasets.sources import Sample, split_by_patient
from core.demo.xray_phantom import FINDINGS
from core.errors import DashboardError, InsufficientDataError, InvalidInputError
from core.evaluation.binary import DEFAULT_THRESHOLD, finding_metrics, operating_thresholds
from core.io.images import read_xray
from core.models.architectures import build_model
from core.models.manifest import InputSpec
from core.preprocess import to_unit_square
from core.training import distributed, loop
from core.training.loop import StepLoss, evaluate, seeded_device
from core.training.publish import DEMO_INTENDED_USE, CardDraft, DevSplit, Measured, TrainResult, publish
from core.training.xray import IMAGENET_MEAN, IMAGENET_STD, _ImageSet, image_logits

#: The manifest marks multi-label models so pages never read them as 3-class classifiers.
MULTI_LABEL_TASK = "multi-label"
MAX_POS_WEIGHT = 50.0


@dataclass(frozen=True)
class FindingsTrainConfig:
    model_id: str = "cxr-findings"
    lr: float = 1e-4
    batch_size: int = 16
    max_epochs: int = 8
    patience: int = 3
    size: int = 320
    augment: bool = True
    demo_patients: int = 600
    seed: int = 0
    device: str | None = None
    intended_use: str = DEMO_INTENDED_USE
    data_note: str = ""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.size < 32 or self.demo_patients < 10:
            raise InvalidInputError(
                "lr, batch size and epochs must be positive, size at least 32, demo patients at least 10."
            )

    def input_spec(self) -> InputSpec:
        return InputSpec(self.size, 3, IMAGENET_MEAN, IMAGENET_STD, "grayscale copied to the three channels")

    def architecture_kwargs(self) -> dict[str, Any]:
        return {"num_classes": len(FINDINGS), "in_channels": 3, "dropout": 0.0}


def _load(samples: list[Sample], size: int, progress: bool) -> tuple[torch.Tensor, list[int]]:
    images, kept = [], []
    for i, s in enumerate(tqdm(samples, desc="reading images", unit="img", disable=not progress)):
        try:
            image = read_xray(s.path.read_bytes(), s.path.name)
        except (DashboardError, OSError):
            continue
        images.append((to_unit_square(image.windowed(), size)[0] * 255).round().to(torch.uint8))
        kept.append(i)
    if not images:
        raise InsufficientDataError("None of the training images could be read.")
    return torch.stack(images), kept


def demo_images(n_patients: int, size: int, seed: int, progress: bool) -> tuple[list[Sample], torch.Tensor, np.ndarray]:
    """The X-rays of a simulated cohort, drawn in memory: samples, (N, 1, S, S) uint8, targets."""
    xrays = demo_xrays(n_patients, seed)
    images, targets = [], []
    for xray in tqdm(xrays, desc="drawing demo X-rays", unit="img", disable=not progress):
        pixels, findings = draw_demo_xray(xray)
        images.append((to_unit_square(pixels, size)[0] * 255).round().to(torch.uint8))
        targets.append(findings)
    return [x.sample for x in xrays], torch.stack(images), np.asarray(targets, dtype=np.float32)


def positive_weights(targets: np.ndarray) -> torch.Tensor:
    """Per finding: negatives / positives in ``targets``, clipped to [1, MAX_POS_WEIGHT]; 1 when
    a finding has no positive (nothing to weight)."""
    pos = targets.sum(axis=0)
    neg = targets.shape[0] - pos
    w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(w, 1.0, MAX_POS_WEIGHT), dtype=torch.float32)


def train_findings(
    source: str | Path,
    out_dir: str | Path,
    config: FindingsTrainConfig,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on ``source`` (a CheXpert-style CSV, or ``"demo"``); write weights and the manifest entry.
    ``log`` takes the per-epoch lines (default: printed above the progress bar when ``progress``)."""
    device = seeded_device(config.seed, config.device)
    spec = config.input_spec()
    problems: list[str] = []
    if str(source) == "demo":
        samples, images, targets = demo_images(config.demo_patients, config.size, DEMO_COHORT_SEED, progress)
        data_desc = (
            f"demo cohort: {config.demo_patients} simulated patients (cohort seed {DEMO_COHORT_SEED}) and "
            f"{config.demo_patients // PATIENTS_PER_NORMAL_CONTROL} normal-control phantoms"
        )
    else:
        if not Path(source).is_file():
            raise InvalidInputError(f"There is no CSV file at {source}.")
        samples, targets, problems = csv_samples(source)
        images, kept = _load(samples, config.size, progress)
        samples, targets = [samples[i] for i in kept], targets[kept]
        data_desc = f"CSV {source}"
    index = {id(s): i for i, s in enumerate(samples)}
    parts = split_by_patient(samples, seed=config.seed)
    rows = {name: [index[id(s)] for s in items] for name, items in parts.items()}
    train_t = targets[rows["train"]]
    pos_weight = positive_weights(train_t)
    sets = {
        name: _ImageSet(images[idx], torch.from_numpy(targets[idx]), spec, augment=config.augment and name == "train")
        for name, idx in rows.items()
    }
    # Under torchrun, this process's shard of the training split (core.training.distributed).
    train_loader = distributed.training_loader(sets["train"], config.batch_size, config.seed)
    dev_loader = DataLoader(sets["dev"], batch_size=64)

    model = build_model("densenet121", **config.architecture_kwargs()).to(device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    trained = distributed.wrap(model)  # the model itself for one process

    def step(batch: tuple[torch.Tensor, torch.Tensor], network: nn.Module = trained) -> StepLoss:
        x, y = batch[0].to(device), batch[1].to(device)
        return StepLoss(loss_fn(network(x), y), len(y))

    fit = loop.fit(
        model,
        torch.optim.Adam(model.parameters(), lr=config.lr),
        lambda epoch: distributed.for_epoch(train_loader, epoch),
        step,
        lambda: evaluate(model, dev_loader, partial(step, network=model)),
        max_epochs=config.max_epochs,
        patience=config.patience,
        progress=progress,
        say=log,
    )

    def measure(shipped: nn.Module, temperature: float, dev_logits: np.ndarray) -> Measured:
        logits = {"test": image_logits(shipped, images[rows["test"]], spec, device), "dev": dev_logits}
        probs = {part: expit(z / temperature) for part, z in logits.items()}
        thresholds = operating_thresholds(targets[rows["dev"]], probs["dev"])
        metrics = {part: finding_metrics(targets[rows[part]], probs[part], thresholds) for part in ("test", "dev")}
        return Measured({"held_out": metrics["test"], "dev": metrics["dev"]}, thresholds=thresholds)

    untrainable = [f for f, w in zip(FINDINGS, train_t.sum(axis=0), strict=True) if w == 0]
    note = (
        config.data_note.strip().rstrip(".") + "." if config.data_note.strip() else "",
        f"No positive training example for: {', '.join(untrainable)}." if untrainable else "",
    )
    training = {
        "data": {
            "source": data_desc,
            "note": " ".join(part for part in note if part),
            "images": {p: len(idx) for p, idx in rows.items()},
            "positives_in_train": {f: int(v) for f, v in zip(FINDINGS, train_t.sum(axis=0), strict=True)},
            "skipped_rows": len(problems),
            "split": f"patient-level 80/10/10, seed {config.seed}",
            "uncertain_labels": "U-zeros: uncertain (-1) and blank are negative",
        },
        "loss": "BCE with logits, positives weighted by negatives / positives per finding (clipped to [1, 50])",
        "pos_weight": [float(v) for v in pos_weight],
        "config": asdict(config) | {"device": str(device)},
        **fit.to_record(),
        "operating_thresholds": (
            "per finding with both classes in the dev split: Youden's J on its calibrated P(present); "
            f"{DEFAULT_THRESHOLD} for the others"
        ),
    }
    draft = CardDraft(
        id=config.model_id,
        architecture="densenet121",
        architecture_kwargs=config.architecture_kwargs(),
        input_kind="xray",
        input=spec,
        labels=FINDINGS,
        gradcam_layer=str(model.gradcam_layer),
        intended_use=config.intended_use,
        extra={"task": MULTI_LABEL_TASK, "outputs": "sigmoid per finding"},
    )
    dev = DevSplit(
        lambda shipped: image_logits(shipped, images[rows["dev"]], spec, device),
        targets[rows["dev"]],
        "multilabel",
        f"dev split ({len(rows['dev'])} images)",
    )
    network = partial(build_model, "densenet121", **draft.architecture_kwargs)
    published = publish(fit.state, network, device, out_dir, draft, dev, measure, training)
    return TrainResult(published.card, published.weights_path, fit.history)
