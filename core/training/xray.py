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
that the card stores and every prediction applies: the loop is :func:`core.training.loop.fit`,
saving, measuring and registering :func:`core.training.publish.publish`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.ct.preprocess import LUNG_WINDOW
from core.datasets.sources import Sample, label_set, load_source, split_by_patient
from core.errors import DashboardError, InsufficientDataError, InvalidInputError
from core.evaluation.metrics import apply_temperature
from core.evaluation.ood import LOOKALIKE, lookalike_features
from core.evaluation.reports import classification_report
from core.io.images import read_xray
from core.models.architectures import build_model
from core.models.manifest import InputSpec
from core.ood import fit_reference, layer_features, write_reference
from core.preprocess import normalise, to_unit_square
from core.torchvision_compat import ensure_torchvision
from core.training import distributed, loop
from core.training.loop import Record, StepLoss, evaluate, predict_logits, seeded_device
from core.training.publish import DEMO_INTENDED_USE, CardDraft, DevSplit, Measured, TrainResult, publish

logger = logging.getLogger(__name__)

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
class XrayTrainResult(TrainResult):
    """:class:`core.training.publish.TrainResult` with the learning curves' CSV file."""

    curves_path: Path


class _ImageSet(Dataset):
    """Preprocessed images (N, 1, S, S) uint8 in memory, with labels and optional augmentation."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, spec: InputSpec, augment: bool, strong: bool = False
    ) -> None:
        self.images, self.targets, self.spec, self.strong = images, targets, spec, strong and augment
        self.transform: Callable[[torch.Tensor], torch.Tensor] | None = None
        if augment:
            ensure_torchvision()
            from torchvision.transforms import v2  # only after ensure_torchvision (core.torchvision_compat)

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


def _normalised_batches(images: torch.Tensor, spec: InputSpec, size: int = 64) -> Iterator[torch.Tensor]:
    """Model inputs of uint8 images (N, 1, S, S), in batches."""
    for start in range(0, images.shape[0], size):
        yield normalise(images[start : start + size].float() / 255.0, spec)


def image_logits(model: nn.Module, images: torch.Tensor, spec: InputSpec, device: torch.device) -> np.ndarray:
    """float32 (N, outputs) logits of uint8 images (N, 1, S, S), in batches of 64."""
    return predict_logits(model, ((x.to(device),) for x in _normalised_batches(images, spec)))


def _cosine_schedule(
    optimiser: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """One warm-up epoch, then cosine decay to 0 over the remaining steps."""
    total_steps = max(1, max_epochs * steps_per_epoch)
    warmup = min(steps_per_epoch, total_steps // 2)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _split(samples: list[Sample], config: XrayTrainConfig) -> tuple[dict[str, list[Sample]], int]:
    """The patient-level split, and the block size it used: image by image (block 1) when the
    data are too few for blocks of ``config.block`` (a small dataset), with a warning."""
    try:
        return split_by_patient(samples, seed=config.seed, block=config.block), config.block
    except InsufficientDataError:
        if config.block == 1:
            raise
        logger.warning("too few images for split blocks of %d; splitting image by image", config.block)
        return split_by_patient(samples, seed=config.seed, block=1), 1


def _split_words(samples: list[Sample], seed: int, block: int) -> str:
    anonymous = sum(s.anonymous for s in samples)
    words = f"patient-level 80/10/10, stratified by label, seed {seed}"
    if anonymous and block > 1:
        words += (
            f"; the {anonymous} images without a patient id are kept together in blocks of {block} "
            "neighbouring file numbers (neighbours are often one patient or one scan), so a patient can still "
            "straddle two blocks"
        )
    elif anonymous:
        words += f"; the {anonymous} images without a patient id are split image by image"
    return words


def _write_curves(path: Path, history: list[Record]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train_xray(
    source: str | Path,
    out_dir: str | Path,
    config: XrayTrainConfig,
    progress: bool = True,
) -> XrayTrainResult:
    """Train on ``source`` (class folders or CSV manifest), write weights + manifest entry in ``out_dir``."""
    device = seeded_device(config.seed, config.device)
    spec = config.input_spec()
    # Fail before reading a whole dataset when the ImageNet checkpoint is not on disk.
    imagenet = _imagenet_state(config.architecture) if config.init == "imagenet" else None
    samples = load_source(source)
    labels = label_set(samples)
    if len(labels) < 2:
        raise InsufficientDataError(f"The data hold one class only ({', '.join(labels)}); training needs two.")
    domain = data_domain(source, config.domain)
    parts, block = _split(samples, config)
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
    weights = (
        torch.tensor([1.0 / counts[int(t)] for t in train_targets], dtype=torch.double) if config.balanced else None
    )
    # Under torchrun, this process's shard of the training split (core.training.distributed).
    train_loader = distributed.training_loader(sets["train"], config.batch_size, config.seed, weights)
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
    scheduler = (
        _cosine_schedule(optimiser, config.max_epochs, len(train_loader)) if config.schedule == "cosine" else None
    )
    loss_fn = nn.CrossEntropyLoss()
    trained = distributed.wrap(model)  # the model itself for one process

    def step(
        batch: tuple[torch.Tensor, torch.Tensor],
        layout: torch.memory_format = torch.channels_last,
        network: nn.Module = trained,
    ) -> StepLoss:
        x, y = batch[0].to(device, memory_format=layout), batch[1].to(device)
        logits = network(x)
        return StepLoss(loss_fn(logits, y), len(y), int((logits.argmax(1) == y).sum()))

    fit = loop.fit(
        model,
        optimiser,
        lambda epoch: distributed.for_epoch(train_loader, epoch),
        step,
        lambda: evaluate(model, dev_loader, partial(step, layout=torch.preserve_format, network=model)),
        max_epochs=config.max_epochs,
        patience=config.patience,
        scheduler=scheduler,
        progress=progress,
    )

    def measure(shipped: nn.Module, temperature: float, dev_logits: np.ndarray) -> Measured:
        logits = {"test": image_logits(shipped, loaded["test"][0], spec, device), "dev": dev_logits}
        metrics = {
            part: classification_report(loaded[part][1].tolist(), apply_temperature(z, temperature), labels)
            for part, z in logits.items()
        }
        return Measured(
            {"held_out": metrics["test"], "dev": metrics["dev"]},
            thresholds={"covid": 0.5} if config.kind == "ct-slice" else {},
            extra={"ood": _fit_ood(shipped, loaded, spec, device, domain == "real", config, out_dir)},
        )

    root = Path(source)
    base = root if root.is_dir() else root.parent

    def rel(s: Sample) -> str:
        try:
            return str(s.path.resolve().relative_to(base.resolve()))
        except ValueError:
            return str(s.path)

    training = {
        "data": {
            "source": str(source),
            "note": config.data_note,
            "domain": domain,
            "licences": config.licences,
            "images": {p: dict(Counter(s.label for s in loaded[p][2])) for p in ("train", "dev", "test")},
            "skipped_unreadable": sum(v[3] for v in loaded.values()),
            "split": _split_words(samples, config.seed, block),
            "test_files": sorted(rel(s) for s in loaded["test"][2]),
            "dev_files": sorted(rel(s) for s in loaded["dev"][2]),
        },
        "config": asdict(config) | {"device": str(device), "block": block},
        **fit.to_record(),
    }
    draft = CardDraft(
        id=config.id,
        architecture=config.architecture,
        architecture_kwargs=arch_kwargs,
        input_kind=config.kind,
        input=spec,
        labels=labels,
        gradcam_layer=str(model.gradcam_layer),
        intended_use=config.intended_use or intended_use_for(domain, config.kind, len(samples), source),
        extra={"domain": domain} | ({"caveats": config.caveats} if config.caveats else {}),
    )
    n_dev = len(loaded["dev"][1])
    dev = DevSplit(
        lambda shipped: image_logits(shipped, loaded["dev"][0], spec, device),
        loaded["dev"][1].numpy(),
        "softmax",
        f"dev split ({n_dev} images)",
    )
    network = partial(build_model, config.architecture, **arch_kwargs)
    published = publish(fit.state, network, device, out_dir, draft, dev, measure, training)
    curves_path = Path(out_dir) / f"{config.id}.learning-curves.csv"
    if distributed.is_main():
        _write_curves(curves_path, fit.history)
    return XrayTrainResult(published.card, published.weights_path, fit.history, curves_path)


def _fit_ood(
    shipped: nn.Module,
    loaded: dict[str, tuple[torch.Tensor, torch.Tensor, list[Sample], int]],
    spec: InputSpec,
    device: torch.device,
    real: bool,
    config: XrayTrainConfig,
    out_dir: str | Path,
) -> dict[str, Any]:
    """The OOD reference (core.ood): the shipped model's features of the training images (not
    augmented), the threshold accepting 95% of the dev images; a real-data model must also refuse
    its look-alike, the demo's phantoms. Written beside the weights; returns the card's record."""
    layers = list(shipped.ood_layers)
    feats = {
        part: layer_features(shipped, _normalised_batches(loaded[part][0], spec), device, layers)
        for part in ("train", "dev")
    }
    n_train, n_dev = len(loaded["train"][1]), len(loaded["dev"][1])
    reference = fit_reference(feats["train"], loaded["train"][1].numpy(), feats["dev"], layers)
    if real:
        look = lookalike_features(shipped, spec, config.kind == "ct-slice", device, layers)
        reference = reference.with_lookalike(LOOKALIKE, look[-1], feats["dev"][-1])
    return write_reference(
        out_dir,
        config.id,
        reference,
        f"training split ({n_train} images), threshold on the dev split ({n_dev} images)",
        n_train,
        n_dev,
    )
