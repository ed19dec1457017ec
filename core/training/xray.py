"""Train a 2D image classifier (chest X-ray, or CT slice images) and register it in the manifest.

The classes are those of the data (:func:`core.datasets.sources.label_set`): the demo phantoms
give the demo's Normal / Viral pneumonia / COVID-19, the real adult X-rays Normal / Pneumonia
(non-COVID) / COVID-19, the Soares CT slices Non-COVID / COVID-19 (``kind="ct-slice"``: the CT
slice ResNet on 8-bit slice images already in a lung window, the window the CT page applies to
HU slices).

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

from core.datasets.sources import Sample, label_set, load_source, split_by_patient
from core.errors import DashboardError, InsufficientDataError, InvalidInputError
from core.evaluation.calibration import fit_calibration
from core.evaluation.metrics import apply_temperature
from core.evaluation.ood import LOOKALIKE, lookalike_features
from core.evaluation.reports import classification_report
from core.io.images import read_xray
from core.models.architectures import build_model
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import load_state_dict, select_device, sha256_of
from core.ood import fit_reference, layer_features, write_reference
from core.preprocess import normalise, to_unit_square

logger = logging.getLogger(__name__)

DEMO_INTENDED_USE = "Demo weights trained on synthetic phantoms; not for clinical use."
#: Marker file a synthetic dataset carries (``python -m core demo xray-dataset`` writes it).
SYNTHETIC_MARKER = "dataset.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_REPLICATED = (
    "grayscale replicated to 3 channels: keeps torchvision's 3-channel stem, so ImageNet "
    "weights can initialise it (--init imagenet), as seed 000 fed RGB copies of the X-rays"
)
_SLICE_GRAYSCALE = (
    "one channel: each axial slice in the lung window (8-bit slice images are taken as already windowed); "
    "on a CT series each slice is cropped to its lungs and only slices through the lungs are read, "
    "as the slice images were exported"
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
    intended_use: str | None = None  # None: from the data's domain (demo or real)
    data_note: str = ""
    #: "xray", or "ct-slice" (the CT slice ResNet on slice images; architecture "ct-resnet").
    kind: str = "xray"
    #: Input channels of resnet18 / densenet121 (3: ImageNet-shaped; 1 when trained from scratch).
    channels: int = 3
    weight_decay: float = 0.0
    schedule: str = "constant"  # or "cosine": one warm-up epoch, then cosine decay to 0
    #: Stronger augmentation for training from scratch on real films: larger affine, blur or
    #: down-and-up resampling (texture shortcuts), blanked borders (markers), gamma.
    strong_augment: bool = False
    #: Split group of images without patient ids: blocks of this many neighbouring file
    #: numbers (1: each image alone, as before).
    block: int = 1
    domain: str | None = None  # "demo" or "real"; None: demo when the data carry the marker
    licences: str = ""
    caveats: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("xray", "ct-slice"):
            raise InvalidInputError(f"Unknown image kind '{self.kind}' (xray or ct-slice).")
        allowed = ("ct-resnet",) if self.kind == "ct-slice" else ("resnet18", "densenet121", "custom")
        if self.architecture not in allowed:
            raise InvalidInputError(f"Unknown architecture '{self.architecture}' ({' or '.join(allowed)}).")
        if self.schedule not in ("constant", "cosine"):
            raise InvalidInputError("--schedule must be constant or cosine.")
        if self.domain not in (None, "demo", "real"):
            raise InvalidInputError("--domain must be demo or real.")
        if self.channels not in (1, 3) or self.block < 1 or self.weight_decay < 0:
            raise InvalidInputError("channels must be 1 or 3, block at least 1, weight decay not negative.")
        if self.init not in ("scratch", "imagenet"):
            raise InvalidInputError("--init must be scratch or imagenet.")
        if self.init == "imagenet" and self.architecture in ("custom", "ct-resnet"):
            raise InvalidInputError("The custom CNN has no ImageNet weights; use --init scratch.")
        if self.lr <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.size < 32:
            raise InvalidInputError("lr, batch size, epochs and size must be positive (size at least 32).")

    @property
    def id(self) -> str:
        if self.model_id:
            return self.model_id
        return "ct-slice-resnet18" if self.kind == "ct-slice" else f"cxr-{self.architecture}"

    def input_spec(self) -> InputSpec:
        if self.kind == "ct-slice":
            from core.ct.preprocess import LUNG_WINDOW

            return InputSpec(
                self.size,
                1,
                (0.5,),
                (0.25,),
                _SLICE_GRAYSCALE,
                window=LUNG_WINDOW,
                crop="lungs",
            )
        if self.architecture == "custom" or self.channels == 1:
            return InputSpec(self.size, 1, (0.5,), (0.25,), _ONE_CHANNEL)
        return InputSpec(self.size, 3, IMAGENET_MEAN, IMAGENET_STD, _REPLICATED)

    def architecture_kwargs(self, num_classes: int) -> dict[str, Any]:
        spec = self.input_spec()
        kwargs: dict[str, Any] = {
            "num_classes": num_classes,
            "in_channels": spec.channels,
            "dropout": self.dropout,
        }
        if self.kind == "ct-slice":
            kwargs["depth"] = 18
        if self.architecture == "densenet121":
            kwargs["freeze_features"] = self.freeze_features
        if self.architecture == "custom":
            kwargs.update(blocks=self.blocks, width=self.width)
        return kwargs


def data_domain(source: str | Path, requested: str | None = None) -> str:
    """ "demo" when the data are synthetic (their folder carries :data:`SYNTHETIC_MARKER` saying so),
    else "real"; ``requested`` overrides."""
    if requested is not None:
        return requested
    root = Path(source)
    base = root if root.is_dir() else root.parent
    marker = base / SYNTHETIC_MARKER
    if marker.is_file():
        import json

        try:
            return "demo" if json.loads(marker.read_text(encoding="utf-8")).get("synthetic") else "real"
        except (OSError, ValueError, AttributeError):
            return "real"
    return "real"


def intended_use_for(domain: str, kind: str, n_images: int, source: str | Path) -> str:
    """The card's intended use, from what the model was trained on."""
    if domain == "demo":
        return DEMO_INTENDED_USE
    what = "chest X-rays" if kind == "xray" else "chest CT slice images"
    return (
        f"Research use only; not a medical device and not for clinical use. Trained on {n_images} real {what} "
        f"({source}); expect it to do worse on images from other hospitals and scanners."
    )


@dataclass
class TrainResult:
    card: ModelCard
    weights_path: Path
    curves_path: Path
    history: list[dict[str, float]] = field(default_factory=list)


class _ImageSet(Dataset):
    """Preprocessed images (N, 1, S, S) uint8 in memory, with labels and optional augmentation."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, spec: InputSpec, augment: bool, strong: bool = False
    ) -> None:
        self.images, self.targets, self.spec, self.strong = images, targets, spec, strong and augment
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        if augment:
            from core.torchvision_compat import ensure_torchvision

            ensure_torchvision()
            from torchvision.transforms import v2

            # No horizontal flips: the heart is on the left, and a flipped chest is not a chest.
            if self.strong:
                self.transform = v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.85, 1.15), shear=5)
            else:
                self.transform = v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.92, 1.08))

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].float() / 255.0
        if self.transform is not None:
            x = self.transform(x)
            if self.strong:
                x = _strong_augment(x)
            gain = 1.0 + 0.15 * (torch.rand(()) * 2 - 1)
            bias = 0.05 * (torch.rand(()) * 2 - 1)
            x = ((x - 0.5) * gain + 0.5 + bias).clamp(0.0, 1.0)
        return normalise(x[None], self.spec)[0], self.targets[i]


def _strong_augment(x: torch.Tensor) -> torch.Tensor:
    """(1, S, S) in [0, 1]: against the shortcuts of the public sets (see ../shared/data's pitfalls):
    resampling texture (a blur, or a down-and-up resample, each half the time), burned-in markers
    and black frames at the edges (each border blanked, a third of the time, by up to 15%), and
    processing (a gamma in [0.7, 1.4])."""
    import torch.nn.functional as F

    size = x.shape[-1]
    r = torch.rand(4)
    if r[0] < 0.25:
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :] / 16.0)[None, None]
        x = F.conv2d(F.pad(x[None], (1, 1, 1, 1), mode="replicate"), kernel)[0]
    elif r[0] < 0.5:
        small = int(size * float(0.5 + 0.4 * torch.rand(())))
        x = F.interpolate(x[None], size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]
    if r[1] < 1 / 3:
        x = x.clone()
        top, bottom, left, right = (int(v) for v in (torch.rand(4) * 0.15 * size))
        fill = 0.0 if torch.rand(()) < 0.7 else float(x.mean())
        if top:
            x[..., :top, :] = fill
        if bottom:
            x[..., size - bottom :, :] = fill
        if left:
            x[..., :, :left] = fill
        if right:
            x[..., :, size - right :] = fill
    gamma = float(torch.exp(torch.empty(()).uniform_(math.log(0.7), math.log(1.4))))
    return x.clamp(0.0, 1.0) ** gamma


def _load_images(
    samples: list[Sample], size: int, progress: bool, labels: tuple[str, ...]
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
        targets.append(labels.index(s.label))
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


def _normalised_batches(images: torch.Tensor, spec: InputSpec, size: int = 64):
    """Model inputs of uint8 images (N, 1, S, S), in batches."""
    for start in range(0, images.shape[0], size):
        yield normalise(images[start : start + size].float() / 255.0, spec)


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
    labels = label_set(samples)
    if len(labels) < 2:
        raise InsufficientDataError(f"The data hold one class only ({', '.join(labels)}); training needs two.")
    domain = data_domain(source, config.domain)
    block = config.block
    try:
        parts = split_by_patient(samples, seed=config.seed, block=block)
    except InsufficientDataError:
        if block == 1:
            raise
        # Too few images for blocks of this size (a small dataset): split image by image, and say so.
        logger.warning("too few images for split blocks of %d; splitting image by image", block)
        block = 1
        parts = split_by_patient(samples, seed=config.seed, block=block)
    loaded = {name: _load_images(items, spec.size, progress, labels) for name, items in parts.items()}
    sets = {
        name: _ImageSet(imgs, tgts, spec, augment=config.augment and name == "train", strong=config.strong_augment)
        for name, (imgs, tgts, _, _) in loaded.items()
    }
    arch_kwargs = config.architecture_kwargs(len(labels))
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

    model = build_model(config.architecture, **arch_kwargs)
    if imagenet is not None:
        _init_from_imagenet(model, config.architecture, imagenet)
    # channels_last: the same numbers, about a quarter faster on the CPU (benchmarks/bench_ct.py).
    model.to(device, memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = (
        torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        if config.weight_decay
        else torch.optim.Adam(trainable, lr=config.lr)
    )
    steps_per_epoch = len(train_loader)
    scheduler = None
    if config.schedule == "cosine":
        total_steps = max(1, config.max_epochs * steps_per_epoch)
        warmup = min(steps_per_epoch, total_steps // 2)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict[str, float]] = []
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        total, correct, n = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{config.max_epochs}", unit="batch", disable=not progress)
        for x, y in bar:
            x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
            optimiser.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
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
    shipped = build_model(config.architecture, **arch_kwargs)
    shipped.load_state_dict(load_state_dict(weights_path))
    shipped.to(device)
    logits = {part: _predict_logits(shipped, loaded[part][0], spec, device) for part in ("test", "dev")}
    calibration = fit_calibration(
        logits["dev"], loaded["dev"][1].numpy(), "softmax", fitted_on=f"dev split ({len(loaded['dev'][1])} images)"
    )
    metrics = {
        part: classification_report(
            loaded[part][1].tolist(), apply_temperature(logits[part], calibration.temperature), labels
        )
        for part in ("test", "dev")
    }

    # The OOD reference (core.ood): the shipped model's features of the training images (not
    # augmented), the threshold accepting 95% of the dev images.
    layers = list(shipped.ood_layers)
    feats = {
        part: layer_features(shipped, _normalised_batches(loaded[part][0], spec), device, layers)
        for part in ("train", "dev")
    }
    n_train, n_dev = len(loaded["train"][1]), len(loaded["dev"][1])
    reference = fit_reference(feats["train"], loaded["train"][1].numpy(), feats["dev"], layers)
    if domain == "real":  # the demo's phantoms are the look-alike a real-data model must refuse
        look = lookalike_features(shipped, spec, config.kind == "ct-slice", device, layers)
        reference = reference.with_lookalike(LOOKALIKE, look[-1], feats["dev"][-1])
    ood = write_reference(
        out_dir,
        config.id,
        reference,
        f"training split ({n_train} images), threshold on the dev split ({n_dev} images)",
        n_train,
        n_dev,
    )

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
            return str(s.path.resolve().relative_to(base.resolve()))
        except ValueError:
            return str(s.path)

    anonymous = sum(s.anonymous for s in samples)
    split_words = f"patient-level 80/10/10, stratified by label, seed {config.seed}"
    if anonymous and block > 1:
        split_words += (
            f"; the {anonymous} images without a patient id are kept together in blocks of {block} "
            "neighbouring file numbers (neighbours are often one patient or one scan), so a patient can still "
            "straddle two blocks"
        )
    elif anonymous:
        split_words += f"; the {anonymous} images without a patient id are split image by image"
    training = {
        "data": {
            "source": str(source),
            "note": config.data_note,
            "domain": domain,
            "licences": config.licences,
            "images": {p: dict(Counter(s.label for s in loaded[p][2])) for p in ("train", "dev", "test")},
            "skipped_unreadable": sum(v[3] for v in loaded.values()),
            "split": split_words,
            "test_files": sorted(rel(s) for s in loaded["test"][2]),
            "dev_files": sorted(rel(s) for s in loaded["dev"][2]),
        },
        "config": asdict(config) | {"device": str(device), "block": block},
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
        architecture_kwargs=arch_kwargs,
        weights_file=weights_path.name,
        sha256=digest,
        input_kind=config.kind,
        input=spec,
        labels=labels,
        gradcam_layer=str(shipped.gradcam_layer),
        intended_use=config.intended_use or intended_use_for(domain, config.kind, len(samples), source),
        temperature=calibration.temperature,
        thresholds={"covid": 0.5} if config.kind == "ct-slice" else {},
        training=training,
        metrics={"held_out": metrics["test"], "dev": metrics["dev"]},
        extra={"domain": domain, "ood": ood} | ({"caveats": config.caveats} if config.caveats else {}),
    )
    write_manifest_entry(out_dir, card)
    return TrainResult(card=card, weights_path=weights_path, curves_path=curves_path, history=history)
