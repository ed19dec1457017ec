"""``python -m core train-findings``: the multi-label findings model (seed 004)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.cli.common import device_arg, library_arg, open_existing, registry_of, weights_arg
from core.cli.progress import LazyBar
from core.errors import DashboardError, InvalidInputError
from core.findings import check_findings_model
from core.models.registry import DEFAULT_WEIGHTS_DIR
from core.trajectory.findings_change import (
    CATEGORIES,
    CHANGE_RULE,
    change_statistics,
    predict_worse_vs_improved,
    score_findings,
    xray_pairs,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train-findings")
    t.add_argument(
        "--data", required=True, help="a CSV with a Path column and finding columns (1/0/-1/blank), or 'demo'"
    )
    t.add_argument("--out", default=str(DEFAULT_WEIGHTS_DIR), help="weights folder (default: weights/)")
    t.add_argument("--model-id", default="cxr-findings")
    t.add_argument("--size", type=int, default=320, help="input size in px (320 in seed 004)")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--patience", type=int, default=3)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--demo-patients", type=int, default=600, help="--data demo: simulated patients")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    device_arg(t)
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.add_argument("--note", default="", help="a line about the data for the model card")
    t.set_defaults(func=run_train)

    c = sub.add_parser("findings-change")
    c.add_argument("--model", default="cxr-findings", help="the findings model (default cxr-findings)")
    weights_arg(c)
    device_arg(c)
    c.add_argument("--k", type=int, default=5, help="features kept by the chi-square selection (5 in seed 004)")
    c.add_argument("--json", action="store_true")
    library_arg(c)
    c.set_defaults(func=run_change)


def run_train(args: argparse.Namespace) -> int:
    # Here, not at the top: it costs 1.3-1.5 s of import (python -X importtime) that findings-change need not pay.
    from core.training import distributed
    from core.training.findings import FindingsTrainConfig, train_findings

    if args.data != "demo" and not Path(args.data).is_file():
        raise InvalidInputError(f"There is no CSV file at {args.data} (or use --data demo).")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = FindingsTrainConfig(
        model_id=args.model_id,
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        size=args.size,
        augment=not args.no_augment,
        demo_patients=args.demo_patients,
        seed=args.seed,
        device=args.device,
        data_note=args.note,
    )
    # Under torchrun the other processes train quietly; rank 0 shows progress and writes.
    result = train_findings(args.data, args.out, config, progress=distributed.is_main())
    if not distributed.is_main():
        return 0
    m = result.card.metrics["held_out"]
    aucs = ", ".join(f"{name} {v['auc']:.3f}" for name, v in m["per_finding"].items() if v["auc"] is not None)
    mean = "-" if m["mean_auc"] is None else f"{m['mean_auc']:.3f}"
    print(f"wrote {result.weights_path} ({result.card.id} {result.card.version}); held-out mean AUC {mean}: {aucs}")
    return 0


def _ci(m: dict) -> str:
    if m["value"] is None:
        return "-"
    if m["low"] is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def run_change(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise InvalidInputError("--k must be at least 1.")
    library = open_existing(args)
    registry = registry_of(args)
    model = registry.load(args.model)
    check_findings_model(model)
    with LazyBar(f"findings ({model.id} on {model.device.type})", "X-ray") as bar:
        score_findings(library, model, progress=bar)
    pairs = xray_pairs(library, model)
    table = change_statistics(pairs, model.card.labels)
    predictors = {}
    for name, reverse in (("first_xray", False), ("reversed_order_control", True)):
        try:
            predictors[name] = predict_worse_vs_improved(
                library, model, pairs, k=args.k, reversed_order=reverse
            ).as_dict()
        except DashboardError as e:
            predictors[name] = {"error": str(e)}
    counts = {c: sum(p.category == c for p in pairs) for c in CATEGORIES}
    from_notes = sum(p.category_from == "note" for p in pairs)
    if args.json:
        print(
            json.dumps(
                {
                    "model_id": model.id,
                    "n_pairs": len(pairs),
                    "categories": counts,
                    "categories_from_notes": from_notes,
                    "rule_without_a_note": CHANGE_RULE,
                    "table": table,
                    "predictor": predictors,
                }
            )
        )
        return 0
    print(
        f"{len(pairs)} pairs of sequential X-rays: "
        + ", ".join(f"{c} {n}" for c, n in counts.items())
        + f" ({from_notes} categorised from the notes, the rest by: {CHANGE_RULE})"
    )
    print(f"{'finding':28s} {'comparison':20s} {'n':>9s} {'p (Mann-Whitney)':>17s} {'Cohen d':>8s}")
    for r in table:
        p = "-" if r["mann_whitney_p"] is None else f"{r['mann_whitney_p']:.2g}"
        d = "-" if r["cohens_d"] is None else f"{r['cohens_d']:.2f}"
        print(f"{r['finding']:28s} {r['comparison']:20s} {r['n_first']:>4d}/{r['n_second']:<4d} {p:>17s} {d:>8s}")
    for name, res in predictors.items():
        if "error" in res:
            print(f"predictor ({name}): {res['error']}")
            continue
        m = res["metrics"]
        print(
            f"predictor from the {res['order']} ({res['n_pairs']} pairs, {res['n_patients']} patients, "
            f"leave-one-patient-out, {res['k_features']} chi-square features):"
        )
        print("  " + "; ".join(f"{k} {_ci(v)}" for k, v in m.items()))
    return 0
