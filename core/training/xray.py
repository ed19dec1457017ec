"""Train a 3-class chest X-ray classifier and register it in the manifest.

Seed 000's defaults: Adam, lr 3e-5, batch 24, cross-entropy, up to 20 epochs with early
stopping on the dev loss (the best dev-loss weights are kept), optional balanced sampler
(appendix D), augmentation, and a seeded patient-level 80/10/10 split. The held-out test
metrics are measured on the weights exactly as shipped (after the half-precision round trip),
with the calibration temperature fitted on the dev split (:mod:`core.evaluation.calibration`)
that the card stores and every prediction applies.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from core.errors import DashboardError, InsufficientDataError, InvalidInputError
from core.evaluation.calibration import fit_calibration
from core.evaluation.metrics import apply_temperature
from core.evaluation.reports import classification_report
from core.io.images import read_xray
from core.models.architectures import build_model
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import load_state_dict, select_device, sha256_of
from core.preprocess import normalise, to_unit_square
from core.training.sources import Sample, load_source, split_by_patient
from core.types import XRAY_LABELS

logger = logging.getLogger(__name__)

DEMO_INTENDED_USE = "Demo weights trained on synthetic phantoms; not for clinical use."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_REPLICATED = (
    "grayscale replicated to 3 channels: keeps torchvision's 3-channel stem, so ImageNet "
    "weights can initialise it (--init imagenet), as seed 000 fed RGB copies of the X-rays"
)
_ONE_CHANNEL = "one channel: trained from scratch, three copies of a grayscale image add nothing"
#: torchvision's ImageNet checkpoint file names, looked up in the local torch hub cache only.
IMAGENET_FILES = {"resnet18": "resnet18-f37072fd.pth", "densenet121": "densenet121-a639ec97.pth"}


@dataclass(frozen=True)
class XrayTrainConfig:
    """Settings of one training run (seed 000's defaults)."""

    architecture: str = "resnet18"
    model_id: str | None = None
    lr: float = 3e-5
    batch_size: int = 24
    max_epochs: int = 20
    patience: int = 3
    balanced: bool = False
    augment: bool = True
    size: int = 224
    dropout: float = 0.0
    freeze_features: bool = False
    init: str = "scratch"
    blocks: int = 6
    width: int = 16
    seed: int = 0
    device: str | None = None
    intended_use: str = DEMO_INTENDED_USE
    data_note: str = ""

    def __post_init__(self) -> None:
        if self.architecture not in ("resnet18", "densenet121", "custom"):
            raise InvalidInputError(f"Unknown architecture '{self.architecture}' (resnet18, densenet121 or custom).")
        if self.init not in ("scratch", "imagenet"):
            raise InvalidInputError("--init must be scratch or imagenet.")
        if self.init == "imagenet" and self.architecture == "custom":
            raise InvalidInputError("The custom CNN has no ImageNet weights; use --init scratch.")
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.size < 32:
            raise InvalidInputError("lr, batch size, epochs and size must be positive (size at least 32).")

    @property
    def id(self) -> str:
        return self.model_id or f"cxr-{self.architecture}"

    def input_spec(self) -> InputSpec:
        if self.architecture == "custom":
            return InputSpec(self.size, 1, (0.5,), (0.25,), _ONE_CHANNEL)
        return InputSpec(self.size, 3, IMAGENET_MEAN, IMAGENET_STD, _REPLICATED)

    def architecture_kwargs(self) -> dict[str, Any]:
        spec = self.input_spec()
        kwargs: dict[str, Any] = {
            "num_classes": len(XRAY_LABELS),
            "in_channels": spec.channels,
            "dropout": self.dropout,
        }
        if self.architecture == "densenet121":
            kwargs["freeze_features"] = self.freeze_features
        if self.architecture == "custom":
            kwargs.update(blocks=self.blocks, width=self.width)
        return kwargs


@dataclass
class TrainResult:
    card: ModelCard
    weights_path: Path
    curves_path: Path
    history: list[dict[str, float]] = field(default_factory=list)


class _ImageSet(Dataset):
    """Preprocessed images (N, 1, S, S) uint8 in memory, with labels and optional augmentation."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, spec: InputSpec, augment: bool) -> None:
        self.images, self.targets, self.spec = images, targets, spec
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        if augment:
            from core.torchvision_compat import ensure_torchvision

            ensure_torchvision()
            from torchvision.transforms import v2

            # No horizontal flips: the heart is on the left, and a flipped chest is not a chest.
            self.transform = v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.92, 1.08))

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].float() / 255.0
        if self.transform is not None:
            x = self.transform(x)
            gain = 1.0 + 0.15 * (torch.rand(()) * 2 - 1)
            bias = 0.05 * (torch.rand(()) * 2 - 1)
            x = ((x - 0.5) * gain + 0.5 + bias).clamp(0.0, 1.0)
        return normalise(x[None], self.spec)[0], self.targets[i]


def _load_images(
    samples: list[Sample], size: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor, list[Sample], int]:
    from tqdm import tqdm

    images, targets, kept, skipped = [], [], [], 0
    for s in tqdm(samples, desc="reading images", unit="img", disable=not progress):
        try:
            image = read_xray(s.path.read_bytes(), s.path.name)
        except (DashboardError, OSError) as e:
            skipped += 1
            logger.warning("skipping an unreadable training image: %s", e)
            continue
        unit = to_unit_square(image.windowed(), size)[0]
        images.append((unit * 255).round().to(torch.uint8))
        targets.append(XRAY_LABELS.index(s.label))
        kept.append(s)
    if not images:
        raise InsufficientDataError("None of the training images could be read.")
    return torch.stack(images), torch.tensor(targets, dtype=torch.long), kept, skipped


def _imagenet_state(architecture: str) -> dict[str, torch.Tensor]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILES[architecture]
    if not path.is_file():
        raise DashboardError(
            f"ImageNet weights for {architecture} are not in the local torch cache ({path}); nothing is "
            "downloaded. Place the file there or train with --init scratch."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _init_from_imagenet(model: nn.Module, architecture: str, state: dict[str, torch.Tensor]) -> None:
    if architecture == "resnet18":
        state = {f"net.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    else:
        # torchvision's densenet checkpoints use old key names ("norm.1" for "norm1", ...).
        pattern = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")
        state = {pattern.sub(r"\1\2.", k): v for k, v in state.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    logger.info("ImageNet init: %d missing (the new head), %d unexpected keys", len(missing), len(unexpected))


@torch.inference_mode()
def _predict_logits(model: nn.Module, images: torch.Tensor, spec: InputSpec, device: torch.device) -> np.ndarray:
    """float32 (N, K) logits of uint8 images (N, 1, S, S), in batches of 64."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], 64):
        x = normalise(images[start : start + 64].float() / 255.0, spec).to(device)
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def _epoch_loss(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: torch.device) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    return total / n, correct / n


def save_half(state: dict[str, torch.Tensor], path: Path) -> None:
    """Save a state dict with floating tensors in half precision (storage only)."""
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, path)


def provenance() -> dict[str, str]:
    """When and with what a model was trained, for the model card's ``training`` record."""
    return {
        "trained_on": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "stored_as": "float16 (loaded as float32)",
    }


def card_version(digest: str) -> str:
    """A model version: the training date and the start of the weights' sha256."""
    return f"{dt.date.today():%Y%m%d}-{digest[:8]}"


def train_xray(
    source: str | Path,
    out_dir: str | Path,
    config: XrayTrainConfig,
    progress: bool = True,
) -> TrainResult:
    """Train on ``source`` (class folders or CSV manifest), write weights + manifest entry in ``out_dir``."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    device = select_device(config.device)
    spec = config.input_spec()
    # Fail before reading a whole dataset when the ImageNet checkpoint is not on disk.
    imagenet = _imagenet_state(config.architecture) if config.init == "imagenet" else None
    samples = load_source(source)
    parts = split_by_patient(samples, seed=config.seed)
    loaded = {name: _load_images(items, spec.size, progress) for name, items in parts.items()}
    sets = {
        name: _ImageSet(imgs, tgts, spec, augment=config.augment and name == "train")
        for name, (imgs, tgts, _, _) in loaded.items()
    }
    train_targets = loaded["train"][1]
    counts = Counter(train_targets.tolist())
    if len(counts) < 2:
        raise InsufficientDataError("The training split has fewer than two classes.")
    gen = torch.Generator().manual_seed(config.seed)
    if config.balanced:
        weights = torch.tensor([1.0 / counts[int(t)] for t in train_targets], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=gen)
        train_loader = DataLoader(sets["train"], batch_size=config.batch_size, sampler=sampler)
    else:
        train_loader = DataLoader(sets["train"], batch_size=config.batch_size, shuffle=True, generator=gen)
    dev_loader = DataLoader(sets["dev"], batch_size=64)

    model = build_model(config.architecture, **config.architecture_kwargs())
    if imagenet is not None:
        _init_from_imagenet(model, config.architecture, imagenet)
    model.to(device)
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict[str, float]] = []
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total, correct, n = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{config.max_epochs}", unit="batch", disable=not progress)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            optimiser.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
            bar.set_postfix(loss=f"{total / n:.4f}")
        dev_loss, dev_acc = _epoch_loss(model, dev_loader, loss_fn, device)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / n,
                "train_accuracy": correct / n,
                "dev_loss": dev_loss,
                "dev_accuracy": dev_acc,
            }
        )
        if progress:
            tqdm.write(
                f"epoch {epoch}: train loss {total / n:.4f} acc {correct / n:.3f} | dev loss {dev_loss:.4f} acc {dev_acc:.3f}"
            )
        if dev_loss < best_loss - 1e-4:
            best_loss, best_state, best_epoch, stale = dev_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                if progress:
                    tqdm.write(f"early stopping: dev loss has not improved for {config.patience} epochs")
                break

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / f"{config.id}.pt"
    assert best_state is not None
    save_half(best_state, weights_path)

    # Measure what ships: rebuild from the saved half-precision file.
    shipped = build_model(config.architecture, **config.architecture_kwargs())
    shipped.load_state_dict(load_state_dict(weights_path))
    shipped.to(device)
    logits = {part: _predict_logits(shipped, loaded[part][0], spec, device) for part in ("test", "dev")}
    calibration = fit_calibration(
        logits["dev"], loaded["dev"][1].numpy(), "softmax", fitted_on=f"dev split ({len(loaded['dev'][1])} images)"
    )
    metrics = {
        part: classification_report(
            loaded[part][1].tolist(), apply_temperature(logits[part], calibration.temperature), XRAY_LABELS
        )
        for part in ("test", "dev")
    }

    curves_path = out_dir / f"{config.id}.learning-curves.csv"
    with curves_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

    digest = sha256_of(weights_path)
    root = Path(source)
    base = root if root.is_dir() else root.parent

    def rel(s: Sample) -> str:
        try:
            return str(s.path.relative_to(base.resolve()))
        except ValueError:
            return str(s.path)

    training = {
        "data": {
            "source": str(source),
            "note": config.data_note,
            "images": {p: dict(Counter(s.label for s in loaded[p][2])) for p in ("train", "dev", "test")},
            "skipped_unreadable": sum(v[3] for v in loaded.values()),
            "split": f"patient-level 80/10/10, stratified by label, seed {config.seed}",
            "test_files": sorted(rel(s) for s in loaded["test"][2]),
            "dev_files": sorted(rel(s) for s in loaded["dev"][2]),
        },
        "config": asdict(config) | {"device": str(device)},
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "learning_curves": history,
        "calibration": calibration.to_record(),
        **provenance(),
    }
    card = ModelCard(
        id=config.id,
        version=card_version(digest),
        architecture=config.architecture,
        architecture_kwargs=config.architecture_kwargs(),
        weights_file=weights_path.name,
        sha256=digest,
        input_kind="xray",
        input=spec,
        labels=XRAY_LABELS,
        gradcam_layer=str(shipped.gradcam_layer),
        intended_use=config.intended_use,
        temperature=calibration.temperature,
        thresholds={},
        training=training,
        metrics={"held_out": metrics["test"], "dev": metrics["dev"]},
    )
    write_manifest_entry(out_dir, card)
    return TrainResult(card=card, weights_path=weights_path, curves_path=curves_path, history=history)
