"""The model manifest (``weights/manifest.json``): one entry per model, read and written here.

An entry is a JSON object; :class:`ModelCard` is its typed, read-only view. Unknown keys are
kept in ``extra`` so later features can add fields without breaking older readers. The results
recorded at training time stay the JSON a trainer wrote (``metrics``), read through
:attr:`ModelCard.recorded_metrics`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import MissingModelError
from core.models.card_metrics import CardMetrics

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class InputSpec:
    """How an image or a CT volume becomes a model input, normalised per channel.

    Image models (input kinds "xray", "ct-slice") take (N, channels, size, size); volume models
    ("ct-volume") take (N, channels, depth, size, size), ``depth`` being voxels along z.
    ``window`` is (center, width) in HU for CT models: the window that maps HU to [0, 1]
    before normalisation. ``depth`` and ``window`` are absent from older (X-ray) entries and
    are written only when set, so those entries read and write back unchanged.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    grayscale: str = ""  # how a grayscale image fills the channels, and why
    depth: int | None = None
    window: tuple[float, float] | None = None
    #: "body": CT slices are cropped to the body's bounding box before resizing; "lungs": each
    #: slice to its own lungs, and only slices through the lungs are read, as the slice images
    #: a model was trained on were exported (the Soares set); None: the whole slice.
    crop: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        depth = d.get("depth")
        window = d.get("window")
        if window is not None:
            center, width = (float(v) for v in window)
            window = (center, width)
        return cls(
            size=int(d["size"]),
            channels=int(d["channels"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            grayscale=str(d.get("grayscale", "")),
            depth=None if depth is None else int(depth),
            window=window,
            crop=None if d.get("crop") is None else str(d["crop"]),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "size": self.size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "grayscale": self.grayscale,
        }
        if self.depth is not None:
            out["depth"] = self.depth
        if self.window is not None:
            out["window"] = list(self.window)
        if self.crop is not None:
            out["crop"] = self.crop
        return out


@dataclass(frozen=True)
class ModelCard:
    """What the manifest says about one model."""

    id: str
    version: str
    architecture: str
    architecture_kwargs: dict[str, Any]
    weights_file: str
    sha256: str
    input_kind: str
    input: InputSpec
    labels: tuple[str, ...]
    gradcam_layer: str
    intended_use: str
    temperature: float = 1.0
    thresholds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = (
        "id version architecture architecture_kwargs weights_file sha256 input_kind input "
        "labels gradcam_layer intended_use temperature thresholds training metrics"
    ).split()

    @property
    def recorded_metrics(self) -> CardMetrics:
        """The results recorded at training time (:attr:`metrics`), typed."""
        return CardMetrics.from_json(self.metrics)

    @property
    def domain(self) -> str:
        """ "real" (trained on real images) or "demo" (on synthetic phantoms)."""
        recorded = self.extra.get("domain")
        if recorded in ("real", "demo"):
            return str(recorded)
        return "demo" if "synthetic" in self.intended_use.lower() else "real"

    @property
    def domain_words(self) -> str:
        """How every place that shows this model's output names its domain."""
        if self.domain == "demo":
            return "demo: trained on synthetic phantoms"
        what = {"xray": "chest X-rays", "ct-slice": "chest CT slices", "ct-volume": "chest CT scans"}
        return f"trained on real {what.get(self.input_kind, 'images')}"

    @property
    def ood(self) -> dict[str, Any] | None:
        """The card's OOD reference entry (:mod:`core.ood`), or None."""
        record = self.extra.get("ood")
        return record if isinstance(record, dict) else None

    @property
    def multi_label(self) -> bool:
        """One sigmoid per label (the findings model), not a softmax over classes."""
        return self.extra.get("task") == "multi-label"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """The card of one manifest entry.

        Raises
        ------
        MissingModelError
            The entry is not a JSON object, lacks a required key, or holds a value of the wrong
            kind (the message names the key).
        """
        if not isinstance(d, dict):
            raise MissingModelError("A manifest entry is not a JSON object; each model must be one.")

        def value(key: str, convert: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
            if key not in d:
                if default is _REQUIRED:
                    raise MissingModelError(f"The manifest entry for model {_ident(d)} is incomplete (no '{key}').")
                return default
            try:
                return convert(d[key])
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
                raise MissingModelError(
                    f"The manifest entry for model {_ident(d)} has the wrong kind of value for '{key}'."
                ) from e

        return cls(
            id=value("id", _line),
            version=value("version", _version),
            architecture=value("architecture", _line),
            architecture_kwargs=value("architecture_kwargs", _object, {}),
            weights_file=value("weights_file", _line),
            sha256=value("sha256", _line),
            input_kind=value("input_kind", _line),
            input=value("input", InputSpec.from_dict),
            labels=value("labels", lambda v: tuple(_line(x) for x in _list(v))),
            gradcam_layer=value("gradcam_layer", _optional_line),
            intended_use=value("intended_use", _text, ""),
            temperature=value("temperature", _positive, 1.0),
            thresholds=value("thresholds", lambda v: {_line(k): _finite(x) for k, x in _object(v).items()}, {}),
            training=value("training", _object, {}),
            metrics=value("metrics", _object, {}),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "architecture": self.architecture,
            "architecture_kwargs": self.architecture_kwargs,
            "weights_file": self.weights_file,
            "sha256": self.sha256,
            "input_kind": self.input_kind,
            "input": self.input.to_dict(),
            "labels": list(self.labels),
            "gradcam_layer": self.gradcam_layer,
            "intended_use": self.intended_use,
            "temperature": self.temperature,
            "thresholds": self.thresholds,
            "training": self.training,
            "metrics": self.metrics,
        }
        out.update(self.extra)
        return out


_REQUIRED = object()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _line(value: Any) -> str:
    """Non-empty text on one line (ids, file names, layer names, labels)."""
    if not (_text(value) and value.isprintable()):
        raise ValueError("not one line of text")
    return value


def _optional_line(value: Any) -> str:
    """Text on one line, possibly empty (a model without a Grad-CAM layer names none)."""
    if not _text(value).isprintable():
        raise ValueError("not one line of text")
    return value


def _version(value: Any) -> str:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _line(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a JSON list")
    return value


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not math.isfinite(number := float(value)):
        raise ValueError("not a finite number")
    return number


def _positive(value: Any) -> float:
    if (number := _finite(value)) <= 0:
        raise ValueError("not positive")
    return number


def _ident(entry: Any) -> str:
    """How messages name a manifest entry: its id when that is one line of text, else "?"."""
    ident = entry.get("id") if isinstance(entry, dict) else None
    return ident if isinstance(ident, str) and ident.isprintable() and ident else "?"


def read_manifest(weights_dir: str | Path) -> list[ModelCard]:
    """Read every entry of ``weights_dir/manifest.json``; an absent manifest means no models."""
    path = Path(weights_dir) / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise MissingModelError(f"The model manifest {path} cannot be read ({e}).") from e
    except (UnicodeDecodeError, RecursionError) as e:  # not UTF-8; nested deeper than Python recurses
        raise MissingModelError(f"The model manifest {path} cannot be read: it is not JSON text.") from e
    entries = doc.get("models", []) if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise MissingModelError(f"The model manifest {path} does not hold a list of models.")
    return [ModelCard.from_dict(entry) for entry in entries]


def write_manifest_entry(weights_dir: str | Path, card: ModelCard) -> Path:
    """Add or replace (by id) one entry, writing the manifest atomically."""
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / MANIFEST_NAME
    entries: list[dict[str, Any]] = []
    if path.exists():
        entries = json.loads(path.read_text(encoding="utf-8")).get("models", [])
    entries = [e for e in entries if e.get("id") != card.id] + [card.to_dict()]
    entries.sort(key=lambda e: str(e.get("id")))
    doc = {"schema_version": SCHEMA_VERSION, "models": entries}
    fd, tmp = tempfile.mkstemp(dir=weights_dir, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; the manifest is meant to be shared and committed
    os.replace(tmp, path)
    return path
