"""Temperature scaling fitted on a dev split, with the numbers that show what it did.

Every trainer fits the temperature T of its shipped model on the dev split's logits with
:func:`fit_calibration`, stores T in the model card (predictions divide logits by it
everywhere) and stores :meth:`Calibration.to_record` next to it, so a card says which cases T
came from and how it changed their negative log-likelihood (NLL) and expected calibration
error (ECE, :func:`core.evaluation.metrics.expected_calibration_error`).

The model's outputs decide the fit:

- ``"softmax"``: logits (N, K), targets (N,) class indices; P = softmax(logits / T); NLL of the
  true class, top-label ECE.
- ``"sigmoid"``: one logit per case, (N,) or (N, 1), targets (N,) 0/1; P = sigmoid(logit / T);
  binary cross-entropy, ECE of P(positive).
- ``"multilabel"``: logits (N, L), targets (N, L) 0/1, one sigmoid per label sharing one T.
  Only labels with both classes among the N cases count: T minimises the mean unweighted
  binary cross-entropy over their (case, label) pairs, and NLL and ECE are measured on those
  pairs as binary P(positive). A label present in no case (or in all) says nothing about
  calibration and would only pull T towards making its logits more extreme.

Every kind is fitted by one search (:func:`fit_temperature`): T minimising the NLL, on log T
within the kind's bounds (:data:`TEMPERATURE_BOUNDS`).

T = 1 leaves the probabilities as the network gives them; a split with one class (or no usable
label) leaves T at 1. Temperature scaling never changes which class scores highest, nor the
order of the cases, so ROC AUCs and rankings are the same before and after.

Examples
--------
>>> cal = fit_calibration(dev_logits, dev_targets, "softmax", fitted_on="dev split (120 images)")
>>> cal.temperature, cal.ece_before, cal.ece_after
>>> card_training["calibration"] = cal.to_record()
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

from core.errors import InvalidInputError
from core.evaluation.metrics import TEMPERATURE_BOUNDS as SOFTMAX_BOUNDS
from core.evaluation.metrics import apply_temperature, expected_calibration_error

logger = logging.getLogger(__name__)

#: The kinds of model output :func:`fit_calibration` takes.
OUTPUTS: tuple[str, ...] = ("softmax", "sigmoid", "multilabel")
#: How the temperature is fitted, as the model card records it.
METHOD = "temperature scaling (Guo et al. 2017): T minimising the negative log-likelihood"
#: The range T is searched in, per kind of output. The softmax range is the evaluation's
#: (:data:`core.evaluation.metrics.TEMPERATURE_BOUNDS`); the sigmoid range, narrower, is the one
#: the survival and prognosis cards were fitted in from the start.
TEMPERATURE_BOUNDS: dict[str, tuple[float, float]] = {
    "softmax": SOFTMAX_BOUNDS,
    "sigmoid": (0.2, 10.0),
    "multilabel": (0.2, 10.0),
}


@dataclass(frozen=True)
class Calibration:
    """A temperature fitted on one split, with that split's NLL and ECE at T = 1 and at T.

    ``n`` counts cases (rows of the logits). The NLL is a mean in nats per case (per
    (case, label) pair for a multi-label model); the ECE lies in [0, 1]. Both are NaN when the
    split held nothing to measure them on.
    """

    temperature: float
    fitted_on: str
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def to_record(self) -> dict[str, Any]:
        """The model card's ``training["calibration"]``: plain JSON (NaN written as null)."""
        return {
            "method": METHOD,
            "temperature": _json_float(self.temperature),
            "fitted_on": self.fitted_on,
            "n": int(self.n),
            "nll_before": _json_float(self.nll_before),
            "nll_after": _json_float(self.nll_after),
            "ece_before": _json_float(self.ece_before),
            "ece_after": _json_float(self.ece_after),
        }


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# Inputs of each kind of output
# --------------------------------------------------------------------------------------------


def _finite(z: np.ndarray) -> np.ndarray:
    if not np.isfinite(z).all():
        raise InvalidInputError("The logits hold missing or infinite values.")
    return z


def _zero_one(y: np.ndarray) -> np.ndarray:
    if y.size and not np.isin(y, (0, 1)).all():
        raise InvalidInputError("Targets of a sigmoid output must hold 0 (negative) and 1 (positive) only.")
    return y.astype(np.float64)


def _softmax_inputs(logits: npt.ArrayLike, targets: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if z.ndim != 2 or y.ndim != 1 or z.shape[0] != y.shape[0]:
        raise InvalidInputError(
            "A softmax output needs logits of shape (cases, classes) and one class index per case; "
            f"got logits {z.shape} and targets {y.shape}."
        )
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= z.shape[1]):
        raise InvalidInputError(f"Targets of a softmax output must be class indices 0..{z.shape[1] - 1}.")
    return _finite(z), y.astype(np.int64)


def _sigmoid_inputs(logits: npt.ArrayLike, targets: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim != 1 or y.ndim != 1 or z.shape[0] != y.shape[0]:
        raise InvalidInputError(
            "A sigmoid output needs one logit per case, shape (cases,) or (cases, 1), and one 0/1 target "
            f"per case; got logits {np.shape(logits)} and targets {y.shape}."
        )
    return _finite(z), _zero_one(y)


def _multilabel_inputs(logits: npt.ArrayLike, targets: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """The (case, label) pairs of the labels with both classes, flattened; and the number of cases."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if z.ndim != 2 or z.shape != y.shape:
        raise InvalidInputError(
            "A multi-label output needs logits and 0/1 targets of the same shape (cases, labels); "
            f"got logits {z.shape} and targets {y.shape}."
        )
    z, y = _finite(z), _zero_one(y)
    positives = y.sum(axis=0)
    mixed = (positives > 0) & (positives < y.shape[0])
    if not mixed.all():
        logger.info("Calibration leaves out %d label(s) with one class only.", int((~mixed).sum()))
    return z[:, mixed].reshape(-1), y[:, mixed].reshape(-1), int(z.shape[0])


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _binary_nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(z / T) against 0/1 ``y``, in nats."""
    s = z / temperature
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


def _softmax_nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-probability of the true class under softmax(z / T), in nats."""
    return float(-log_softmax(z / temperature, axis=1)[np.arange(y.size), y].mean())


def fit_calibration(logits: npt.ArrayLike, targets: npt.ArrayLike, output: str, fitted_on: str) -> Calibration:
    """Fit the temperature of a model's outputs on one split (its dev split).

    Parameters
    ----------
    logits : (N, K), (N,) / (N, 1) or (N, L)
        The shipped model's pre-activation outputs on the split, as ``output`` says.
    targets : (N,) class indices, (N,) 0/1 or (N, L) 0/1
        The truth of the same cases.
    output : {"softmax", "sigmoid", "multilabel"}
        How the model turns logits into probabilities (see the module docstring).
    fitted_on : str
        Which cases these are, in words for the model card, e.g. ``"dev split (120 images)"``.

    Returns
    -------
    Calibration
        T (1.0 when the split holds one class only), with the split's NLL and ECE at T = 1 and at T.

    Raises
    ------
    InvalidInputError
        Shapes that do not fit ``output``, targets outside its classes, non-finite logits, or an
        unknown ``output``.
    """
    nll: Callable[[float], float]
    probs: Callable[[float], np.ndarray]
    if output == "softmax":
        z, y = _softmax_inputs(logits, targets)
        n = int(y.size)

        def nll(t: float) -> float:
            return _softmax_nll(z, y, t)

        def probs(t: float) -> np.ndarray:
            return apply_temperature(z, t)
    elif output in ("sigmoid", "multilabel"):
        if output == "sigmoid":
            z, y = _sigmoid_inputs(logits, targets)
            n = int(y.size)
        else:
            z, y, n = _multilabel_inputs(logits, targets)

        def nll(t: float) -> float:
            return _binary_nll(z, y, t)

        def probs(t: float) -> np.ndarray:
            return expit(z / t)
    else:
        raise InvalidInputError(f"Unknown kind of model output '{output}' ({', '.join(OUTPUTS)}).")

    if y.size == 0:
        logger.info("Temperature left at 1.0: %s holds nothing to calibrate on.", fitted_on)
        nan = float("nan")
        return Calibration(1.0, fitted_on, n, nan, nan, nan, nan)
    temperature = _minimise(nll, TEMPERATURE_BOUNDS[output]) if np.unique(y).size > 1 else 1.0
    return Calibration(
        temperature=float(temperature),
        fitted_on=fitted_on,
        n=n,
        nll_before=nll(1.0),
        nll_after=nll(temperature),
        ece_before=expected_calibration_error(y, probs(1.0)),
        ece_after=expected_calibration_error(y, probs(temperature)),
    )


def _minimise(nll: Callable[[float], float], bounds: tuple[float, float]) -> float:
    """The T within ``bounds`` minimising ``nll(T)``, searched on log T (bounded Brent)."""
    low, high = bounds
    res = minimize_scalar(lambda log_t: nll(math.exp(log_t)), bounds=(math.log(low), math.log(high)), method="bounded")
    return float(math.exp(res.x))


def fit_temperature(logits: npt.ArrayLike, targets: npt.ArrayLike, output: str = "sigmoid") -> float:
    """The temperature alone of :func:`fit_calibration` (1.0 when the split holds one class
    only); by default of one logit per case, T in [0.2, 10] minimising the BCE of sigmoid(logit / T)."""
    return fit_calibration(logits, targets, output, fitted_on="").temperature
