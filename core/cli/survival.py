"""``python -m core train-survival``, ``train-prognosis`` and ``km``: survival from X-ray series
(seed 000), prognosis from CT (seed 003) and Kaplan-Meier curves of groups."""

from __future__ import annotations

import argparse
import json

import torch

from core.cli.common import device_arg, library_arg, open_existing, registry_of, weights_arg
from core.cli.progress import LazyBar
from core.errors import MissingModelError
from core.models.registry import DEFAULT_WEIGHTS_DIR
from core.survival.analysis import ENDPOINTS, GROUPINGS, S_FEATURES, model_role_ids, role_of, stratify
from core.survival.cohort import library_patients, load_outcome_source

DATA_HELP = "'demo', 'demo:N' (a simulated cohort, seed 1) or the folder of a case library"


def _common_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--out", default=str(DEFAULT_WEIGHTS_DIR), help="weights folder (default: weights/)")
    p.add_argument(
        "--init-weights", default=None, help="folder where the starting model is registered (default: --out)"
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--patience", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--note", default="", help="a line about the data for the model card")


def add_commands(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train-survival")
    _common_train(s)
    s.add_argument(
        "--cnn-init",
        default="cxr-findings",
        help="a registered DenseNet-121 whose features start the CNN ('none': random)",
    )
    s.add_argument("--finetune-cnn", action="store_true", help="train the DenseNet too (slow; a GPU job)")
    s.set_defaults(func=run_train_survival)

    p = sub.add_parser("train-prognosis")
    _common_train(p)
    p.add_argument("--scans", type=int, choices=(1, 2), default=2, help="1 scan, or 2 (prior + follow-up)")
    p.add_argument("--init", default="covid3d", help="the COVID3D model to start from (default covid3d)")
    p.set_defaults(func=run_train_prognosis)

    k = sub.add_parser("km")
    k.add_argument(
        "--endpoint",
        choices=ENDPOINTS,
        default="discharge",
        help="discharge: time from the second CT to discharge (prognosis); death: from admission (survival)",
    )
    k.add_argument(
        "--group-by",
        choices=GROUPINGS,
        default="model",
        help="model (2-scan prognosis or the CNN-LSTM), model-1scan, clinical (age + sex), age, sex, s (COVID3D s(t))",
    )
    k.add_argument("--age-cut", type=float, default=60.0, help="--group-by age: the cut in years")
    k.add_argument(
        "--s-feature",
        choices=S_FEATURES,
        default="last",
        help="--group-by s: s at the second CT, or its change since the first",
    )
    k.add_argument("--s-threshold", type=float, default=0.0, help="--group-by s: the threshold on s")
    k.add_argument("--json", action="store_true")
    k.add_argument("--model", default=None, help="the grouping's model (default: the registered one for the role)")
    weights_arg(k)
    device_arg(k)
    library_arg(k)
    k.set_defaults(func=run_km)


def _overrides(args: argparse.Namespace) -> dict:
    names = {"lr": "lr", "epochs": "max_epochs", "patience": "patience", "batch_size": "batch_size"}
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def _training_patients(args: argparse.Namespace) -> tuple[list, str]:
    """``--threads`` applied, then the patients of ``--data`` and a description of them."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_outcome_source(args.data)


def _km_line(km: dict) -> str:
    if "message" in km:
        return km["message"]
    p = km.get("logrank_p")
    return "log-rank p " + ("-" if p is None else f"{p:.2g}")


def run_train_survival(args: argparse.Namespace) -> int:
    # Here, not at the top: it costs 1.3-1.5 s of import (python -X importtime) that km need not pay.
    from core.training import distributed
    from core.training.survival import SurvivalTrainConfig, train_survival

    patients, source = _training_patients(args)
    config = SurvivalTrainConfig(
        cnn_init=None if args.cnn_init == "none" else args.cnn_init,
        init_weights_dir=args.init_weights,
        freeze_cnn=not args.finetune_cnn,
        seed=args.seed,
        device=args.device,
        data_note=args.note,
        **_overrides(args),
    )
    # Under torchrun the other processes train quietly; rank 0 shows progress and writes.
    result = train_survival(patients, args.out, config, source=source, progress=distributed.is_main())
    if not distributed.is_main():
        return 0
    m = result.card.metrics["held_out"]
    auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    print(
        f"wrote {result.weights_path} ({result.card.id} {result.card.version}); held-out death AUC {auc}, "
        f"accuracy {m['accuracy']:.3f} on {m['n']} patients; KM of the predicted groups: {_km_line(m['km'])}"
    )
    return 0


def run_train_prognosis(args: argparse.Namespace) -> int:
    # Here, not at the top: it costs 1.3-1.5 s of import (python -X importtime) that km need not pay.
    from core.training import distributed
    from core.training.prognosis import PrognosisTrainConfig, train_prognosis

    patients, source = _training_patients(args)
    config = PrognosisTrainConfig(
        scans=args.scans,
        init=args.init,
        init_weights_dir=args.init_weights,
        seed=args.seed,
        device=args.device,
        data_note=args.note,
        **_overrides(args),
    )
    # Under torchrun the other processes train quietly; rank 0 shows progress and writes.
    result = train_prognosis(patients, args.out, config, source=source, progress=distributed.is_main())
    if not distributed.is_main():
        return 0
    m = result.card.metrics["held_out"]
    auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    clinical = m.get("km_clinical")
    print(
        f"wrote {result.weights_path} ({result.card.id} {result.card.version}); held-out AUC {auc}, "
        f"accuracy {m['accuracy']:.3f} on {m['n']} scans; KM of the test patients: model {_km_line(m['km'])}"
        + ("" if clinical is None else f", clinical factors {_km_line(clinical)}")
    )
    return 0


def run_km(args: argparse.Namespace) -> int:
    library = open_existing(args)
    registry = registry_of(args)
    role = role_of(args.endpoint, args.group_by)
    models = {}
    if role is not None:
        model_id = args.model or model_role_ids(registry).get(role)
        if model_id is None:
            raise MissingModelError(
                f"--group-by {args.group_by} needs a {role} model; none is registered in {args.weights}."
            )
        models[role] = registry.load(model_id)
    patients = library_patients(library)
    with LazyBar("predicting", "patient") as bar:
        cohort = stratify(
            patients,
            args.endpoint,
            args.group_by,
            models=models,
            library=library,
            age_cut=args.age_cut,
            s_feature=args.s_feature,
            s_threshold=args.s_threshold,
            progress=bar,
        )
    analysis = cohort.analyse()
    doc = analysis.to_dict()
    for g, group in zip(doc["groups"], analysis.groups, strict=False):
        g["table"] = group.table()
    doc = {
        "grouping": args.group_by,
        "description": cohort.description,
        "patients": len(cohort.patients),
        "excluded": cohort.excluded,
    } | doc
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return 0
    print(cohort.description)
    for g in analysis.groups:
        median = "not reached" if g.median_time is None else f"{g.median_time:g} days"
        print(f"  {g.name}: n={g.n}, events={g.events}, censored={g.censored}, median {median}")
    p = "-" if analysis.logrank_p is None else f"{analysis.logrank_p:.3g}"
    hr = (
        "-"
        if analysis.hazard_ratio is None
        else (
            f"{analysis.hazard_ratio:.2f} (95% CI {analysis.hazard_ratio_ci[0]:.2f}-{analysis.hazard_ratio_ci[1]:.2f})"
        )
    )
    print(f"log-rank p {p}; hazard ratio {hr}")
    for m in analysis.messages:
        print(f"note: {m}")
    return 0
