"""Train the CT models with patient-level k-fold cross-validation and register them.

Both trainers follow the papers' protocol on a patient-level split:

1. a stratified held-out test set of patients (``test_fraction``) is put aside first;
2. the remaining patients are cut into ``folds`` stratified folds (scikit-learn's
   ``StratifiedGroupKFold``: no patient in two folds). For each fold a model is trained on the
   other folds and validated on it every epoch; the epoch with the best validation ROC AUC is
   that fold's model (seed 003 evaluated "on the internal cross-validation set every epoch");
3. per fold, train and validation metrics (accuracy, sensitivity, specificity, precision
   per class, ROC AUC) are recorded, with their mean, as seed 002's tables report them;
4. the fold model with the highest validation AUC is kept (seed 003: "the model with the
   highest AUC over the cross-validation folds was chosen"), stored in half precision;
5. its calibration temperature is fitted on that fold's validation patients (its dev split,
   :mod:`core.evaluation.calibration`), and the model is measured on the held-out test patients
   exactly as shipped, at that temperature, as the app predicts.

COVID3D (``train_covid3d``) learns COVID-19 against every other scan from whole volumes
(binary cross-entropy on its one logit, Adam). The slice model (``train_ct_slice``) learns
COVID-19 against Normal per axial slice (seed 002); where the data say which slices show
lesions (the demo cohort's truth), only slices of COVID-19 scans whose lung is at least
:data:`VISIBLE_LESION_FRACTION` lesion are positives, as seed 002 selected slices with
visible infection, and normal scans give slices through the lungs; otherwise every slice of a
scan takes the scan's label. Its patient-level score on the held-out patients uses the same rule the app
applies (:func:`core.ct.analysis.patient_score`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from core.ct.analysis import patient_score
from core.ct.preprocess import LUNG_WINDOW, prepare_slices, prepare_volume
from core.datasets.ct_sources import VISIBLE_LESION_FRACTION, CtScan, describe_ct_source, load_ct_source, read_scans
from core.datasets.splits import patient_split
from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.binary import binary_report, positive_probability, youden_threshold
from core.labels import SLICE_CLASSES
from core.models.architectures import build_model
from core.models.covid3d import COVID3D_GRADCAM_LAYER, DEMO_COVID3D
from core.models.ct_slice import CT_SLICE_GRADCAM_LAYER, DEMO_CT_SLICE
from core.models.manifest import InputSpec
from core.training import distributed, loop
from core.training.loop import FitResult, Record, StepLoss, device_batches, predict_logits, seeded_device
from core.training.publish import DEMO_INTENDED_USE, CardDraft, DevSplit, Measured, TrainResult, publish

logger = logging.getLogger(__name__)

#: Names of the two classes in the metrics tables.
COVID3D_CLASSES = ("COVID-", "COVID+")


@dataclass(frozen=True)
class CtTrainConfig:
    """Settings of one CT training run. ``kind`` is "covid3d" or "ct-slice"."""

    kind: str = "covid3d"
    model_id: str | None = None
    folds: int | None = None  # None: seed 003's 10 for COVID3D, seed 002's 5 for the slice model
    test_fraction: float = 0.15
    epochs: int = 6
    lr: float = 1e-3
    batch_size: int = 8
    # COVID3D (None: the demo configuration, DEMO_COVID3D)
    width: float = DEMO_COVID3D["width"]
    input_depth: int | None = None
    # the slice model (DEMO_CT_SLICE)
    resnet_depth: int = DEMO_CT_SLICE["depth"]
    max_slices_per_scan: int = 6
    # both; None: the demo input size of the kind
    size: int | None = None
    dropout: float = 0.0
    augment: bool = True
    seed: int = 0
    device: str | None = None
    intended_use: str = DEMO_INTENDED_USE
    data_note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("covid3d", "ct-slice"):
            raise InvalidInputError(f"Unknown CT model kind '{self.kind}' (covid3d or ct-slice).")
        demo = DEMO_COVID3D if self.kind == "covid3d" else DEMO_CT_SLICE
        if self.size is None:
            object.__setattr__(self, "size", int(demo["size"]))
        if self.folds is None:
            object.__setattr__(self, "folds", 10 if self.kind == "covid3d" else 5)
        if self.input_depth is None:
            object.__setattr__(self, "input_depth", int(DEMO_COVID3D["depth"]))
        if self.resnet_depth not in (18, 50, 152):
            raise InvalidInputError("The slice model's ResNet depth must be 18, 50 or 152.")
        if self.folds < 2:
            raise InvalidInputError("k-fold cross-validation needs at least 2 folds.")
        if not 0.0 < self.test_fraction < 0.5:
            raise InvalidInputError("The held-out test fraction must be between 0 and 0.5.")
        assert self.size is not None and self.input_depth is not None and self.folds is not None
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1 or self.size < 32 or self.input_depth < 8:
            raise InvalidInputError("lr, batch size and epochs must be positive; size >= 32 and depth >= 8.")
        if self.width <= 0:
            raise InvalidInputError("The COVID3D width must be positive.")

    @property
    def id(self) -> str:
        if self.model_id:
            return self.model_id
        return "covid3d" if self.kind == "covid3d" else f"ct-slice-resnet{self.resnet_depth}"

    @property
    def architecture(self) -> str:
        return "covid3d" if self.kind == "covid3d" else "ct-resnet"

    def input_spec(self) -> InputSpec:
        if self.kind == "covid3d":
            return InputSpec(
                self.size,
                1,
                (0.5,),
                (0.25,),
                "one channel: the lung-windowed volume resampled to depth x size x size",
                depth=self.input_depth,
                window=LUNG_WINDOW,
            )
        return InputSpec(
            self.size, 1, (0.5,), (0.25,), "one channel: each axial slice in the lung window", window=LUNG_WINDOW
        )

    def architecture_kwargs(self) -> dict[str, Any]:
        if self.kind == "covid3d":
            return {"width": self.width, "in_channels": 1, "dropout": self.dropout}
        return {"depth": self.resnet_depth, "in_channels": 1, "num_classes": 2, "dropout": self.dropout}


@dataclass
class CtTrainResult(TrainResult):
    """:class:`core.training.publish.TrainResult` (``history``: every fold's curves) with each fold's record."""

    folds: list[dict[str, Any]]


# ----------------------------------------------------------------------------- the split


# ----------------------------------------------------------------------------- data


@dataclass
class _Data:
    """Prepared inputs (float16) with labels and the patient of each."""

    x: torch.Tensor
    y: torch.Tensor
    patients: list[str]

    def subset(self, keep: set[str]) -> _Data:
        idx = [i for i, p in enumerate(self.patients) if p in keep]
        return _Data(self.x[idx], self.y[idx], [self.patients[i] for i in idx])


def _prepare_volumes(scans: list[CtScan], spec: InputSpec, progress: bool) -> tuple[_Data, list[CtScan]]:
    xs, ys, pids, kept = [], [], [], []
    for scan, hu, _ in read_scans(scans, progress):
        xs.append(prepare_volume(hu, spec)[0].to(torch.float16))
        ys.append(1.0 if scan.label == "COVID-19" else 0.0)
        pids.append(scan.patient_id)
        kept.append(scan)
    if not xs:
        raise InsufficientDataError("None of the CT scans could be read.")
    return _Data(torch.stack(xs), torch.tensor(ys), pids), kept


def _prepare_slices(
    scans: list[CtScan], spec: InputSpec, max_per_scan: int, test_patients: set[str], seed: int, progress: bool
) -> tuple[_Data, dict[str, tuple[torch.Tensor, int, str]]]:
    """Training slices (COVID-19 vs Normal), and every slice of each held-out test scan."""
    rng = np.random.default_rng(seed)
    xs, ys, pids = [], [], []
    whole_test_scans: dict[str, tuple[torch.Tensor, int, str]] = {}
    wanted = [s for s in scans if s.label in SLICE_CLASSES]
    for scan, hu, lesions in read_scans(wanted, progress):
        slices = prepare_slices(hu, spec).to(torch.float16)
        target = SLICE_CLASSES.index(scan.label)
        if scan.patient_id in test_patients:
            whole_test_scans[scan.name] = (slices, target, scan.patient_id)
        if lesions is None:
            candidates = np.arange(slices.shape[0])
        elif target == 1:
            candidates = np.flatnonzero(np.nan_to_num(lesions) >= VISIBLE_LESION_FRACTION)
        else:
            candidates = np.flatnonzero(~np.isnan(lesions))  # normal slices through the lungs
        if candidates.size == 0:
            continue
        if candidates.size > max_per_scan:
            candidates = np.sort(rng.choice(candidates, size=max_per_scan, replace=False))
        xs.append(slices[torch.as_tensor(candidates)])
        ys.extend([target] * int(candidates.size))
        pids.extend([scan.patient_id] * int(candidates.size))
    if not xs:
        raise InsufficientDataError("No COVID-19 or Normal CT slices could be read.")
    return _Data(torch.cat(xs), torch.tensor(ys, dtype=torch.long), pids), whole_test_scans


# ----------------------------------------------------------------------------- fitting


def _augment(x: torch.Tensor, gen: torch.Generator, flips: bool) -> torch.Tensor:
    """Small random shifts (in-plane, and along z for volumes), intensity gain and bias; left-right
    flips only for slices (seed 002 used flips; a flipped volume keeps its anatomy wrong)."""
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        shifts = torch.randint(-4, 5, (2,), generator=gen).tolist()
        dims = (-2, -1)
        item = torch.roll(x[i], shifts=shifts, dims=dims)
        if x.dim() == 5:
            item = torch.roll(item, shifts=int(torch.randint(-2, 3, (1,), generator=gen)), dims=-3)
        if flips and torch.rand((), generator=gen) < 0.5:
            item = torch.flip(item, dims=(-1,))
        gain = 1.0 + 0.1 * (torch.rand((), generator=gen) * 2 - 1)
        bias = 0.1 * (torch.rand((), generator=gen) * 2 - 1)
        out[i] = item * gain + bias
    return out


def predict_positive(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 16, temperature: float = 1.0
) -> np.ndarray:
    """(N,) P(positive class) of prepared inputs ``x``, at ``temperature`` (1.0: as the network gives it)."""
    return positive_probability(predict_logits(model, device_batches(x, batch, device)), temperature)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 16) -> None:
    """Reset BatchNorm running statistics and recompute them as exact averages over ``x``
    (torch.optim.swa_utils.update_bn)."""
    if x.shape[0] < 2:
        return  # one sample gives no variance to average
    # Near-equal chunks of at most ``batch``: never a last batch of one, which BatchNorm refuses
    # in training mode when the feature maps are 1 x 1.
    chunks = torch.tensor_split(x, -(-x.shape[0] // batch))
    update_bn((c.to(device, torch.float32) for c in chunks), model)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    # sklearn.metrics costs about 1 s of the CLI's start-up (measured): imported where used.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")


def scan_threshold(
    model: nn.Module, scans: list[CtScan], spec: InputSpec, device: torch.device, temperature: float
) -> float:
    """The slice model's operating threshold on its scan score (:func:`core.ct.analysis.patient_score`
    of the calibrated slice probabilities) at Youden's J on ``scans``, its dev patients' scans of
    the two classes. The slice threshold does not carry over: a summary of a scan's top slices
    sits higher than one slice's probability."""
    y, score = [], []
    for scan, hu, _ in read_scans([s for s in scans if s.label in SLICE_CLASSES], progress=False):
        score.append(patient_score(predict_positive(model, prepare_slices(hu, spec), device, temperature=temperature)))
        y.append(int(scan.label == "COVID-19"))
    return youden_threshold(y, score)


def _higher_val_auc(record: Record, best: Record | None) -> bool:
    """An epoch is better with a higher validation AUC (an undefined AUC counts as -1), then a lower validation loss."""

    def key(r: Record) -> tuple[float, float]:
        return (r["val_auc"] if not math.isnan(r["val_auc"]) else -1.0, -r["val_loss"])

    return best is None or key(record) > key(best)


def _fit(config: CtTrainConfig, train: _Data, val: _Data, device: torch.device, fold: int, progress: bool) -> FitResult:
    """Train one fold's model; keep the state of the epoch with the best validation AUC."""
    torch.manual_seed(config.seed + fold)
    gen = torch.Generator().manual_seed(config.seed + fold)
    model = build_model(config.architecture, **config.architecture_kwargs()).to(device)
    covid3d = config.kind == "covid3d"
    # Classes weighted by inverse frequency in this fold's training set: the demo cohort, like
    # the hospital data it stands for, holds far more COVID-19 scans than others.
    counts = torch.bincount(train.y.long(), minlength=2).clamp(min=1).float()
    loss_fn: nn.Module = (
        nn.BCEWithLogitsLoss(pos_weight=(counts[0] / counts[1]).to(device))
        if covid3d
        else nn.CrossEntropyLoss(weight=(counts.sum() / (2 * counts)).to(device))
    )
    y_val = val.y.numpy()

    trained = distributed.wrap(model)  # the model itself for one process

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Under torchrun every process draws the same permutation and takes its share: equal
        # shares draw equally from ``gen``, which so stays the same on every process.
        order = distributed.shard(torch.randperm(train.x.shape[0], generator=gen))
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2 <= len(order):
                continue  # BatchNorm cannot train on a batch of one; the sample is seen next epoch
            x = train.x[idx].float()
            if config.augment:
                x = _augment(x, gen, flips=not covid3d)
            yield x.to(device), train.y[idx].to(device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        x, y = batch
        logits = trained(x)
        return StepLoss(loss_fn(logits[:, 0], y.float()) if covid3d else loss_fn(logits, y), len(y))

    def validate() -> Record:
        # BatchNorm's running statistics, averaged with momentum over small augmented batches
        # of fast-moving weights, lag the weights: in eval mode the logits drift (a first demo
        # run kept a good ranking, AUC 0.95, but put most COVID- scans above 0.5). Recompute
        # them over the un-augmented training set with the epoch's final weights.
        recalibrate_batchnorm(model, train.x, device)
        p_val = predict_positive(model, val.x, device)
        eps = 1e-7
        val_loss = float(-np.mean(y_val * np.log(p_val + eps) + (1 - y_val) * np.log(1 - p_val + eps)))
        return {"val_loss": val_loss, "val_auc": _auc(y_val, p_val)}

    fit = loop.fit(
        model,
        torch.optim.Adam(model.parameters(), lr=config.lr),
        batches,
        step,
        validate,
        max_epochs=config.epochs,
        improved=_higher_val_auc,
        progress=progress,
        desc=f"fold {fold} ",
    )
    fit.history = [{"fold": fold} | record for record in fit.history]
    return fit


def _summary(reports: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("accuracy", "roc_auc_ovr")
    return {k: float(np.nanmean([r[k] for r in reports])) for k in keys}


# ----------------------------------------------------------------------------- entry point


def train_ct(source: str | Path, out_dir: str | Path, config: CtTrainConfig, progress: bool = True) -> CtTrainResult:
    """Train COVID3D or the slice model on ``source`` (see :mod:`core.datasets.ct_sources`) with
    patient-level k-fold cross-validation; write the kept fold's weights and manifest entry."""
    device = seeded_device(config.seed, config.device)
    spec = config.input_spec()
    scans = load_ct_source(source, seed=config.seed)
    covid3d = config.kind == "covid3d"
    if covid3d:
        labelled = scans
        classes = COVID3D_CLASSES
        patient_label = {s.patient_id: int(s.label == "COVID-19") for s in labelled}
    else:
        labelled = [s for s in scans if s.label in SLICE_CLASSES]
        classes = SLICE_CLASSES
        patient_label = {s.patient_id: SLICE_CLASSES.index(s.label) for s in labelled}
    if len(set(patient_label.values())) < 2:
        raise InsufficientDataError(f"Training needs patients of both classes ({' and '.join(classes)}).")
    patients = sorted(patient_label)
    test_patients, fold_patients = patient_split(
        patients, [patient_label[p] for p in patients], config.folds, config.test_fraction, config.seed
    )

    whole_test: dict[str, tuple[torch.Tensor, int, str]] = {}
    if covid3d:
        data, _ = _prepare_volumes(labelled, spec, progress)
    else:
        data, whole_test = _prepare_slices(
            labelled, spec, config.max_slices_per_scan, test_patients, config.seed, progress
        )
    test = data.subset(test_patients)
    pool_patients = set(patients) - test_patients

    folds: list[dict[str, Any]] = []
    states: list[dict[str, torch.Tensor]] = []
    curves: list[dict[str, float]] = []
    for k, val_patients in enumerate(fold_patients, start=1):
        train, val = data.subset(pool_patients - val_patients), data.subset(val_patients)
        fit = _fit(config, train, val, device, k, progress)
        model = _network(config, fit.state).to(device).eval()
        folds.append(
            {
                "fold": k,
                "best_epoch": fit.best_epoch,
                "patients": {"train": len(pool_patients - val_patients), "validation": len(val_patients)},
                "train": binary_report(train.y.numpy(), predict_positive(model, train.x, device), classes),
                "validation": binary_report(val.y.numpy(), predict_positive(model, val.x, device), classes),
            }
        )
        states.append(fit.state)
        curves.extend(fit.history)
    best_fold = int(np.nanargmax([f["validation"]["roc_auc_ovr"] for f in folds]))

    # The kept fold's validation patients are its dev split: the temperature is fitted there.
    dev = data.subset(fold_patients[best_fold])
    unit = "scan" if covid3d else "slice"

    def measure(shipped: nn.Module, temperature: float, _: np.ndarray) -> Measured:
        held_out = binary_report(
            test.y.numpy(), predict_positive(shipped, test.x, device, temperature=temperature), classes
        )
        metrics: dict[str, Any] = {"held_out": held_out}
        thresholds = {"covid": 0.5}
        if not covid3d:
            dev_scans = [s for s in labelled if s.patient_id in fold_patients[best_fold]]
            thresholds["scan"] = scan_threshold(shipped, dev_scans, spec, device, temperature)
        if not covid3d and whole_test:
            y_scan = np.array([t for _, t, _ in whole_test.values()])
            s_scan = np.array(
                [
                    patient_score(predict_positive(shipped, x, device, temperature=temperature))
                    for x, _, _ in whole_test.values()
                ]
            )
            metrics["held_out_per_scan"] = binary_report(y_scan, s_scan, classes, thresholds["scan"])
            metrics["held_out"]["unit"] = "slice"
            metrics["held_out_per_scan"]["unit"] = "scan (patient-level score over all its slices)"
        return Measured(metrics, thresholds=thresholds)

    counts = {
        part: dict(Counter(classes[int(v)] for v in d.y.tolist()))
        for part, d in (("cross-validation", data.subset(pool_patients)), ("test", test))
    }
    training = {
        "data": {
            "source": str(source),
            "note": config.data_note or describe_ct_source(scans, source, config.seed),
            "unit": unit,
            "counts": counts,
            "patients": {"cross-validation": len(pool_patients), "test": len(test_patients)},
            "split": (
                f"patient-level: {len(test_patients)} held-out test patients (stratified, {config.test_fraction:.0%}), "
                f"{config.folds}-fold stratified cross-validation on the rest, seed {config.seed}"
            ),
            "test_patients": sorted(test_patients),
        },
        "folds": folds,
        "folds_mean": {
            "train": _summary([f["train"] for f in folds]),
            "validation": _summary([f["validation"] for f in folds]),
        },
        "kept_fold": best_fold + 1,
        "kept_because": "highest validation ROC AUC across the folds (seed 003)",
        "config": asdict(config) | {"device": str(device)},
        "learning_curves": curves,
    }
    draft = CardDraft(
        id=config.id,
        architecture=config.architecture,
        architecture_kwargs=config.architecture_kwargs(),
        input_kind="ct-volume" if covid3d else "ct-slice",
        input=spec,
        labels=("COVID-19",) if covid3d else SLICE_CLASSES,
        gradcam_layer=COVID3D_GRADCAM_LAYER if covid3d else CT_SLICE_GRADCAM_LAYER,
        intended_use=config.intended_use,
    )
    dev_split = DevSplit(
        lambda shipped: predict_logits(shipped, device_batches(dev.x, 16, device)),
        dev.y.numpy(),
        "sigmoid" if covid3d else "softmax",
        f"validation patients of the kept fold ({dev.x.shape[0]} {unit}s)",
    )
    published = publish(
        states[best_fold], partial(_network, config), device, out_dir, draft, dev_split, measure, training
    )
    return CtTrainResult(published.card, published.weights_path, curves, folds)


def _network(config: CtTrainConfig, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A network of ``config``'s architecture, with ``state`` loaded when given."""
    model = build_model(config.architecture, **config.architecture_kwargs())
    if state is not None:
        model.load_state_dict(state)
    return model
