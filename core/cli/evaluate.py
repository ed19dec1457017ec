"""``python -m core evaluate`` and ``python -m core calibrate``: how good each model is.

``evaluate --model ID [--model ID2 ...] [--data SRC] --json [--html OUT]``: each model on its
held-out split as recorded at training time (or on a dataset), with the confusion matrix,
per-class table, ROC / PR with AUC and bootstrap CI, calibration and the operating point; CT
models' AUC across perturbed windows (``--windows``); with two or more comparable models,
their AUCs on the same cases with DeLong's test and a paired bootstrap.

``calibrate --model ID``: fit the model's temperature on its recorded dev split and write it
to the manifest (for weights trained before the training commands fitted it themselves).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from core.cli.common import device_arg, registry_of, weights_arg
from core.cli.progress import LazyBar
from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.data import evaluation_data
from core.evaluation.html import performance_report_bytes
from core.evaluation.results import Comparison, Evaluation


def add_commands(sub: argparse._SubParsersAction) -> None:

    e = sub.add_parser("evaluate", help="a model's performance on its held-out split or a dataset (page 7)")
    e.add_argument("--model", action="append", required=True, help="model id; repeat to compare models")
    e.add_argument(
        "--data",
        default=None,
        help="evaluate on this dataset instead (X-ray: class folders or CSV manifest; findings: CheXpert-style "
        "CSV; CT: demo, a folder with metadata.csv or a CSV manifest of series); default: the held-out split",
    )
    e.add_argument("--split", choices=("test", "dev"), default="test", help="the recorded split (default test)")
    e.add_argument(
        "--windows",
        type=int,
        default=20,
        help="CT models: AUC over this many perturbed windows (seed 003 used 100; 0 skips; default 20)",
    )
    e.add_argument(
        "--window-sd",
        default=None,
        help="one SD of the window as CENTER,WIDTH in HU (default 50,150)",
    )
    e.add_argument(
        "--positive",
        default="COVID-19",
        help="the class compared between 3-class X-ray models, against the rest (default COVID-19)",
    )
    e.add_argument("--boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print everything as one JSON object")
    e.add_argument("--html", type=Path, default=None, help="write a self-contained HTML report here")
    weights_arg(e)
    device_arg(e)
    e.add_argument("--threads", type=int, help="CPU threads for torch")
    e.set_defaults(func=run_evaluate)

    c = sub.add_parser("calibrate", help="fit a model's temperature on its recorded dev split (writes the manifest)")
    c.add_argument("--model", action="append", required=True, help="model id; repeat for several")
    weights_arg(c)
    device_arg(c)
    c.add_argument("--threads", type=int, help="CPU threads for torch")
    c.set_defaults(func=run_calibrate)


def _registry(args: argparse.Namespace):  # noqa: ANN202 - a ModelRegistry, imported late
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return registry_of(args)


def _window_sd(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--window-sd wants CENTER,WIDTH in HU, e.g. 50,150 (got {text!r}).") from None
    if not (center >= 0 and width >= 0 and math.isfinite(center + width)):
        raise InvalidInputError("--window-sd values must be non-negative numbers.")
    return center, width


def _clean(value: Any) -> Any:
    """JSON without NaN or infinity (null instead), as strict JSON readers need."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def run_evaluate(args: argparse.Namespace) -> int:
    # Imported here: scikit-learn, under them, adds about 3 s to every `python -m core` start (measured).
    from core.evaluation.compare import comparable, compare
    from core.evaluation.evaluate import evaluate

    if args.windows < 0 or args.boot < 100:
        raise InvalidInputError("--windows must be 0 or more and --boot at least 100.")
    if args.html is not None and not args.html.parent.is_dir():
        raise InvalidInputError(f"The folder {args.html.parent} does not exist.")
    sd = _window_sd(args.window_sd)
    registry = _registry(args)
    ids = list(dict.fromkeys(args.model))
    cards = [registry.card(i) for i in ids]  # unknown ids fail here, before any work
    models = [registry.load(i) for i in ids]
    evaluations: list[Evaluation] = []
    for model in models:
        data = None
        if args.data is not None or args.split != "test":
            data = evaluation_data(model.card, args.data, args.split)
        with LazyBar(f"evaluating {model.id}", "case") as bar:
            evaluations.append(
                evaluate(
                    model, data, progress=bar, n_boot=args.boot, windows=args.windows, window_sd=sd, seed=args.seed
                )
            )
    comparison, comparison_note = None, None
    if len(models) >= 2 and not comparable(cards):
        comparison_note = "not compared: side by side takes 3-class X-ray models, or CT models, only"
    elif len(models) >= 2 and args.data is None and args.split != "test":
        comparison_note = "not compared: models are compared on the held-out test cases, or on --data"
    elif len(models) >= 2:
        try:
            with LazyBar("comparing", "case") as bar:
                data = evaluation_data(cards[0], args.data, args.split)
                comparison = compare(models, data, bar, n_boot=args.boot, seed=args.seed, positive=args.positive)
        except InsufficientDataError as e:  # the evaluations above still stand
            comparison_note = f"not compared: {e}"
    if args.html is not None:
        args.html.write_bytes(performance_report_bytes(evaluations, comparison, created=dt.date.today().isoformat()))
    if args.json:
        result = {
            "evaluations": [e.to_json() for e in evaluations],
            "comparison": None if comparison is None else comparison.to_json(),
            "comparison_note": comparison_note,
        }
        print(json.dumps(_clean(result)))
    else:
        _print_summary(evaluations, comparison, comparison_note)
        if args.html is not None:
            print(f"report written to {args.html}")
    return 0


def _fmt(v: float | None, percent: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{100 * v:.1f}%" if percent else f"{v:.3f}"


def _print_summary(evaluations: list[Evaluation], comparison: Comparison | None, comparison_note: str | None) -> None:
    for ev in evaluations:
        model, data = ev.model, ev.data
        cal = f"T = {model.temperature:.3f}" if model.temperature_fitted else "uncalibrated"
        print(f"{model.id} {model.version} ({cal}) on {data.description}")
        for level in ev.levels:
            print(
                f"  {level.unit}: n {level.n}, patients {level.n_patients or 'not recorded'}, accuracy "
                f"{_fmt(level.accuracy, True)}, macro AUC {_fmt(level.macro_auc)}"
            )
            for name, stats in level.per_class.items():
                interval = f" ({stats.auc_ci[0]:.3f}-{stats.auc_ci[1]:.3f})" if stats.auc_ci else ""
                print(
                    f"    {name:28s} precision {_fmt(stats.precision, True):>6s}  recall "
                    f"{_fmt(stats.recall, True):>6s}  specificity {_fmt(stats.specificity, True):>6s}  "
                    f"F1 {_fmt(stats.f1)}  AUC {_fmt(stats.auc)}{interval}"
                )
            calibration = level.calibration
            if calibration:
                after = calibration.calibrated
                print(
                    f"    ECE {calibration.uncalibrated.ece:.3f} uncalibrated"
                    + (f", {after.ece:.3f} at T = {calibration.temperature:.3f}" if after else "")
                )
            op = level.operating_point
            if op:
                print(
                    f"    threshold {op.threshold:.3f} on P({op.label}): sensitivity "
                    f"{_fmt(op.sensitivity, True)}, specificity {_fmt(op.specificity, True)}"
                )
        rob = ev.robustness
        if rob:
            print(
                f"  window robustness: AUC {rob.auc_mean:.3f} +- {rob.auc_sd:.3f} over {rob.n_windows} windows "
                f"(range {rob.auc_min:.3f}-{rob.auc_max:.3f}; training window {rob.auc_training_window:.3f})"
            )
        for note in ev.notes:
            print(f"  note: {note}")
    if comparison_note:
        print(comparison_note)
    if comparison:
        print(f"comparison on {comparison.n} {comparison.unit}s ({comparison.n_patients} patients):")
        for m in comparison.models:
            print(f"  {m.id:20s} AUC {m.auc:.3f} ({m.auc_ci[0]:.3f}-{m.auc_ci[1]:.3f})")
        for p in comparison.pairs:
            print(
                f"  {p.a} - {p.b}: {p.difference:+.3f}, DeLong p {p.delong_p:.3g}, "
                f"paired bootstrap 95% CI {p.bootstrap_ci[0]:+.3f} to {p.bootstrap_ci[1]:+.3f}"
            )


def run_calibrate(args: argparse.Namespace) -> int:
    # Imported here, as in run_evaluate: scikit-learn adds about 3 s to every start (measured).
    from core.evaluation.recalibrate import recalibrate

    registry = _registry(args)
    for model_id in dict.fromkeys(args.model):
        registry.card(model_id)
        with LazyBar(f"calibrating {model_id}", "case") as bar:
            result = recalibrate(model_id, args.weights, bar, registry=registry)
        cal = result.calibration
        print(
            f"{model_id}: T = {cal.temperature:.3f} fitted on the {cal.fitted_on}; ECE {cal.ece_before:.3f} -> "
            f"{cal.ece_after:.3f}, NLL {cal.nll_before:.3f} -> {cal.nll_after:.3f}"
            + (
                "; operating thresholds: " + ", ".join(f"{k} {v:.3f}" for k, v in result.card.thresholds.items())
                if result.thresholds_changed
                else ""
            )
        )
    return 0
