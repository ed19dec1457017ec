"""The model registry: every model the app uses is loaded here, from ``weights/manifest.json``.

Loading checks the weights file's sha256 against the manifest, reads it with
``torch.load(weights_only=True)`` (no pickled code runs), rebuilds the architecture named in
the manifest, and moves it to the selected device in eval mode. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core.errors import MissingModelError, WeightsIntegrityError
from core.models.architectures import build_model
from core.models.manifest import ModelCard, read_manifest
from core.ood import OodReference, OodVerdict, batched, layer_features, load_reference, verdict

logger = logging.getLogger(__name__)

#: The repository's own weights folder (the embedded default).
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def select_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or when asked for and present), CPU otherwise."""
    if prefer == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if prefer and prefer.startswith("cuda"):
        logger.warning("CUDA was asked for but is not available; using the CPU")
    return torch.device("cpu")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LoadedModel:
    """A network ready for inference, with its card and a lock.

    Hold ``lock`` around any call that attaches hooks or otherwise mutates the module
    (Captum attributions): the same instance is shared by every browser session.
    """

    card: ModelCard
    module: nn.Module
    device: torch.device
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    #: The reference of its training features (:mod:`core.ood`); None when none was fitted.
    ood: OodReference | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.card.id

    def ood_verdict(self, x: torch.Tensor, unit: str = "image") -> OodVerdict | None:
        """Whether prepared inputs are like this model's training data (:mod:`core.ood`): one image
        or volume (1, ...), or every slice of a scan (Z, ...) with ``unit="scan"``. None when no
        reference was fitted."""
        if self.ood is None:
            return None
        with self.lock:
            features = layer_features(self.module, batched(x), self.device, [r.name for r in self.ood.layers])
        return verdict(self.id, self.ood, features, unit)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file saved by this project (half or full precision) as float32."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsIntegrityError(f"{Path(path).name} does not hold a state dict.")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


class ModelRegistry:
    """The models described by one manifest.

    Parameters
    ----------
    weights_dir
        Folder holding ``manifest.json`` and the weights files.
    device
        Where loaded models run; default :func:`select_device`.

    Examples
    --------
    >>> registry = ModelRegistry()                     # doctest: +SKIP
    >>> model = registry.load("cxr-resnet18")          # doctest: +SKIP
    """

    def __init__(self, weights_dir: str | Path = DEFAULT_WEIGHTS_DIR, device: torch.device | None = None):
        self.weights_dir = Path(weights_dir)
        self.device = device if device is not None else select_device()
        self._cards = {card.id: card for card in read_manifest(self.weights_dir)}

    def cards(self, input_kind: str | None = None) -> list[ModelCard]:
        cards = sorted(self._cards.values(), key=lambda c: c.id)
        return [c for c in cards if input_kind is None or c.input_kind == input_kind]

    def ids(self, input_kind: str | None = None) -> list[str]:
        return [c.id for c in self.cards(input_kind)]

    def classifier_ids(self, input_kind: str) -> list[str]:
        """Single-label classifiers (softmax over classes) of an input kind: not the findings model."""
        return [c.id for c in self.cards(input_kind) if not c.multi_label]

    def multi_label_ids(self, input_kind: str) -> list[str]:
        """Multi-label models (one sigmoid per label) of an input kind, e.g. cxr-findings."""
        return [c.id for c in self.cards(input_kind) if c.multi_label]

    def card(self, model_id: str) -> ModelCard:
        try:
            return self._cards[model_id]
        except KeyError:
            known = ", ".join(sorted(self._cards)) or "none"
            raise MissingModelError(
                f"No model '{model_id}' in {self.weights_dir / 'manifest.json'} (registered: {known})."
            ) from None

    def load(self, model_id: str, with_ood: bool = True) -> LoadedModel:
        """Check, load and return one model (a new instance on every call; cache it above);
        ``with_ood=False`` leaves its OOD reference out (to fit a new one)."""
        card = self.card(model_id)
        path = self.weights_dir / card.weights_file
        try:
            present = path.is_file()
        except OSError:  # e.g. a name too long for the file system
            present = False
        if not present:
            raise MissingModelError(f"The weights file {card.weights_file} for model {model_id} is missing.")
        digest = sha256_of(path)
        if digest != card.sha256:
            raise WeightsIntegrityError(
                f"The weights of model {model_id} do not match the manifest (sha256 {digest[:12]}... "
                f"instead of {card.sha256[:12]}...); the file was changed or corrupted."
            )
        try:
            state = load_state_dict(path)
            module = build_model(card.architecture, **card.architecture_kwargs)
            module.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError) as e:
            raise WeightsIntegrityError(f"The weights of model {model_id} do not load ({e}).") from e
        module.eval().to(self.device)
        ood = None
        record = card.extra.get("ood")
        if with_ood and isinstance(record, dict) and record.get("file"):
            ood = load_reference(self.weights_dir / str(record["file"]), str(record.get("sha256", "")))
        logger.info("loaded %s %s on %s", card.id, card.version, self.device)
        return LoadedModel(card=card, module=module, device=self.device, ood=ood)
