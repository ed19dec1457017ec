"""Process-wide cached resources: the model registry and loaded models.

``st.cache_resource`` makes one instance per process, shared by every browser session; the
:class:`~core.models.registry.LoadedModel` carries a lock that inference and Captum take, so
two sessions can use one model at once. The weights folder is the repository's ``weights/``
unless ``DASHBOARD_WEIGHTS_DIR`` names another (tests point it at small models).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.models.registry import DEFAULT_WEIGHTS_DIR, LoadedModel, ModelRegistry


def weights_dir() -> Path:
    return Path(os.environ.get("DASHBOARD_WEIGHTS_DIR", str(DEFAULT_WEIGHTS_DIR)))


@st.cache_resource(show_spinner=False)
def _registry(path: str, manifest_mtime: float) -> ModelRegistry:
    return ModelRegistry(path)


def registry() -> ModelRegistry:
    """The registry of the current weights folder (re-read when the manifest changes)."""
    path = weights_dir()
    manifest = path / "manifest.json"
    mtime = manifest.stat().st_mtime if manifest.exists() else 0.0
    return _registry(str(path), mtime)


@st.cache_resource(show_spinner="Loading model...", max_entries=16)
def _loaded(path: str, model_id: str, sha256: str) -> LoadedModel:
    return ModelRegistry(path).load(model_id)


def model(model_id: str) -> LoadedModel:
    """A loaded model, once per process per weights version."""
    card = registry().card(model_id)
    return _loaded(str(weights_dir()), model_id, card.sha256)
