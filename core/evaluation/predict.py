"""Run a registered model over evaluation cases and keep its raw outputs (logits).

Logits, not probabilities, are kept so the evaluation can show the model both before and after
temperature scaling. The CT slice model keeps one row per axial slice with the slice's truth
where the source knows it (the demo phantoms), and the scan each slice belongs to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.special import softmax

from core.ct.analysis import patient_score
from core.ct.preprocess import prepare_slices, prepare_volume
from core.datasets.ct_sources import VISIBLE_LESION_FRACTION
from core.errors import DashboardError, InsufficientDataError
from core.evaluation.data import EvalCase, EvalData, model_kind
from core.models.registry import LoadedModel
from core.ood import pooled
from core.preprocess import normalise, to_unit_square
from core.types import Progress

logger = logging.getLogger(__name__)

#: Inputs per forward pass: X-rays, CT volumes, CT slices.
BATCH = {"xray": 32, "ct-volume": 4, "ct-slice": 64}


@dataclass(frozen=True)
class Predictions:
    """One model's raw outputs on evaluation cases, in case order.

    ``logits`` is (N, K) for the X-ray models and the findings model, (N, 1) for COVID3D. For the
    CT slice model ``logits`` is per slice (M, 2), ``slice_case`` the case index of each slice
    and ``slice_truth`` 1 for a slice showing a lesion, 0 for a lung slice of a normal scan,
    NaN where unknown (the source has no per-slice truth, or a COVID-19 slice without visible
    lesion).
    """

    model_id: str
    version: str
    cases: tuple[EvalCase, ...]
    logits: np.ndarray
    skipped: tuple[str, ...] = ()
    slice_case: np.ndarray | None = None
    slice_truth: np.ndarray | None = None
    #: With ``predict(features=...)``: the width of each layer's block of columns in ``logits``.
    feature_widths: tuple[int, ...] = ()

    def layer_features(self) -> list[np.ndarray]:
        """The per-layer feature arrays of a ``predict(features=...)`` run."""
        edges = np.cumsum((0, *self.feature_widths))
        return [self.logits[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def slice_probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """The slice model's P(COVID-19) of every slice, (M,), at ``temperature``."""
        return softmax(self.logits / temperature, axis=1)[:, 1]

    def scan_scores(self, temperature: float = 1.0) -> np.ndarray:
        """The slice model's score of every case (scan), (N,):
        :func:`core.ct.analysis.patient_score` of its slices' P(COVID-19) at ``temperature``."""
        if self.slice_case is None:
            raise InsufficientDataError(f"{self.model_id} has no per-slice outputs to summarise per scan.")
        s = self.slice_probabilities(temperature)
        return np.array([patient_score(s[self.slice_case == i]) for i in range(len(self.cases))])


def _batches(items: Sequence[EvalCase], size: int) -> Iterator[Sequence[EvalCase]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_all(cases: Sequence[EvalCase]) -> Iterator[tuple[EvalCase, object]]:
    for case in cases:
        try:
            yield case, case.load()
        except (DashboardError, OSError, ValueError) as e:
            logger.warning("skipping an evaluation case that cannot be read: %s", e)
            yield case, None


@torch.inference_mode()
def predict(
    model: LoadedModel,
    data: EvalData,
    progress: Progress | None = None,
    window: tuple[float, float] | None = None,
    volumes: Sequence[np.ndarray] | None = None,
    features: Sequence[str] | None = None,
) -> Predictions:
    """The model's logits on every case of ``data`` that can be read (with ``features``, layer
    names: the spatial means of those layers' outputs instead, side by side in the ``logits``
    field, see :meth:`Predictions.layer_features`).

    Parameters
    ----------
    model
        A loaded model (from :class:`core.models.registry.ModelRegistry`).
    data
        The cases (:func:`core.evaluation.data.evaluation_data`).
    progress
        Called as ``progress(done, total)`` after each case.
    window
        CT only: (center, width) in HU instead of the card's training window.
    volumes
        CT only: the cases' HU volumes already read (the window-robustness loop reads them once).

    Raises
    ------
    InsufficientDataError
        No case could be read.
    """
    kind = model_kind(model.card)
    spec = model.card.input
    if window is not None:
        spec = replace(spec, window=(float(window[0]), float(window[1])))
    with model.lock:
        module, device = model.module.eval(), model.device
    widths: list[int] = []
    if features:

        def run(x: torch.Tensor) -> torch.Tensor:
            outputs: dict[str, np.ndarray] = {}
            handles = [
                module.get_submodule(name).register_forward_hook(
                    lambda _m, _i, out, name=name: outputs.__setitem__(name, pooled(out, with_std=name != features[-1]))
                )
                for name in features
            ]
            try:
                module(x)
            finally:
                for h in handles:
                    h.remove()
            if not widths:
                widths.extend(outputs[name].shape[1] for name in features)
            return torch.from_numpy(np.concatenate([outputs[name] for name in features], axis=1))
    else:
        run = module

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Batch by batch under the model's lock: the module is the one the pages share, and a
        # page waits for one batch, not for the whole evaluation.
        with model.lock:
            return run(x)

    done, total = 0, len(data.cases)
    rows: list[np.ndarray] = []
    kept: list[EvalCase] = []
    skipped: list[str] = []
    slice_case: list[np.ndarray] = []
    slice_truth: list[np.ndarray] = []

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def loaded() -> Iterator[tuple[EvalCase, object]]:
        if volumes is not None:
            yield from zip(data.cases, ((v, None) for v in volumes), strict=True)
        else:
            yield from _load_all(data.cases)

    if kind in ("xray", "findings", "slice-images"):
        pending: list[torch.Tensor] = []

        def flush() -> None:
            if pending:
                x = normalise(torch.cat(pending), spec).to(device)
                rows.append(forward(x).float().cpu().numpy())
                pending.clear()

        for case, unit in loaded():
            tick()
            if unit is None:
                skipped.append(case.case_id)
                continue
            pending.append(to_unit_square(np.asarray(unit), spec.size))
            kept.append(case)
            if len(pending) >= BATCH["xray"]:
                flush()
        flush()
    elif kind == "ct-volume":
        pending = []
        for case, item in loaded():
            tick()
            if item is None:
                skipped.append(case.case_id)
                continue
            pending.append(prepare_volume(item[0], spec))
            kept.append(case)
            if len(pending) >= BATCH["ct-volume"]:
                rows.append(forward(torch.cat(pending).to(device)).float().cpu().numpy())
                pending = []
        if pending:
            rows.append(forward(torch.cat(pending).to(device)).float().cpu().numpy())
    elif kind == "ct-slice":
        for case, item in loaded():
            tick()
            if item is None:
                skipped.append(case.case_id)
                continue
            hu, fraction = item
            x = prepare_slices(hu, spec)
            logits = np.concatenate(
                [
                    forward(x[i : i + BATCH["ct-slice"]].to(device)).float().cpu().numpy()
                    for i in range(0, x.shape[0], 64)
                ]
            )
            rows.append(logits)
            slice_case.append(np.full(logits.shape[0], len(kept)))
            slice_truth.append(_slice_truth(case.label, fraction, logits.shape[0], VISIBLE_LESION_FRACTION))
            kept.append(case)
    else:
        raise InsufficientDataError(f"{model.id} ({kind}) cannot be run case by case here.")
    if not kept:
        raise InsufficientDataError(f"None of the {total} evaluation cases could be read.")
    return Predictions(
        model_id=model.id,
        version=model.card.version,
        cases=tuple(kept),
        logits=np.concatenate(rows).astype(np.float64),
        skipped=tuple(skipped),
        slice_case=np.concatenate(slice_case) if slice_case else None,
        slice_truth=np.concatenate(slice_truth) if slice_truth else None,
        feature_widths=tuple(widths),
    )


def _slice_truth(label: str, fraction: np.ndarray | None, n: int, visible: float) -> np.ndarray:
    """Per-slice truth as the slice model was trained (seed 002): COVID-19 slices with a visible
    lesion are positive, a normal scan's lung slices negative; the rest unknown (NaN)."""
    truth = np.full(n, np.nan)
    if fraction is None or len(fraction) != n:
        return truth
    f = np.asarray(fraction, dtype=np.float64)
    if label == "COVID-19":
        truth[np.nan_to_num(f) >= visible] = 1.0
    elif label == "Normal":
        truth[~np.isnan(f)] = 0.0
    return truth


def read_volumes(data: EvalData, progress: Progress | None = None) -> tuple[EvalData, list[np.ndarray]]:
    """Read every CT case once (int16 HU, to keep 100 windows' worth of passes in memory);
    returns the readable cases and their volumes."""
    kept, volumes = [], []
    for i, (case, item) in enumerate(_load_all(data.cases), start=1):
        if progress is not None:
            progress(i, len(data.cases))
        if item is None:
            continue
        kept.append(case)
        volumes.append(np.clip(np.asarray(item[0]), -32768, 32767).astype(np.int16))
    return replace(data, cases=tuple(kept)), volumes
