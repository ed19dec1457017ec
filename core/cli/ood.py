"""``fit-ood``, ``ood-check`` and ``shortcut-check``: whether a model knows what it was trained on,
and what it looks at.

``fit-ood --model ID``: fit the model's OOD reference (its penultimate features on its recorded
training split, the threshold on its dev split; :mod:`core.ood`) for weights trained before the
trainers fitted it themselves, and write it beside the weights and into the card.

``ood-check --model ID``: score sets of inputs the model should call unlike its training data
(a real X-ray given to a demo model, a demo phantom given to a real model, photographs,
screenshots, lateral films, CT slices on the X-ray models, inverted grey levels) against its own
held-out cases; the detection AUROC and the share flagged of each kind go into the card.

``shortcut-check --model ID``: the border check (the AUC with everything outside the central
region blanked) and where Grad-CAM looks (its mass inside the central region, per class), on
the held-out split; written into the card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.cli.common import device_arg, registry_of, weights_arg
from core.evaluation.ood import fit_model_reference
from core.evaluation.probes import record_probe_check
from core.evaluation.shortcuts import record_shortcut_check


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, func in (("fit-ood", run_fit), ("ood-check", run_check), ("shortcut-check", run_shortcut)):
        p = sub.add_parser(name)
        p.add_argument("--model", action="append", required=True, help="model id (repeatable)")
        weights_arg(p)
        device_arg(p)
        p.add_argument("--threads", type=int, help="CPU threads for torch")
        p.add_argument("--json", action="store_true", help="print one JSON object per model")
        if name == "shortcut-check":
            p.add_argument("--caveats", help="what a reader of the card must know (stored in the card)")
        if name == "ood-check":
            p.add_argument("--n", type=int, default=60, help="inputs drawn per generated kind (default %(default)s)")
            p.add_argument(
                "--real-data",
                type=Path,
                default=None,
                help="folder with cxr-adult/ and ct-slices/ (default: ../shared/data when present) for the real probes",
            )
        p.set_defaults(func=func)


def _registry(args: argparse.Namespace):
    if args.threads:
        torch.set_num_threads(args.threads)
    return registry_of(args)


def run_fit(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for model_id in args.model:
        card = fit_model_reference(registry, model_id)
        record = card.extra["ood"]
        if args.json:
            print(json.dumps({"model": model_id} | record), flush=True)
        else:
            print(
                f"{model_id}: OOD reference {record['file']} ({record['classes']} class means, {record['dim']}-d), "
                f"threshold {record['threshold']:.2f} (95% of dev accepted); {record['fitted_on']}",
                flush=True,
            )
    return 0


def run_check(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for model_id in args.model:
        result = record_probe_check(registry, model_id, n=args.n, real_data=args.real_data)
        if args.json:
            print(json.dumps({"model": model_id} | result), flush=True)
            continue
        print(
            f"{model_id}: threshold {result['threshold']:.2f}; held-out flagged {result['held_out_flagged']:.1%} "
            f"of {result['held_out_n']}"
        )
        for p in result["probes"]:
            print(f"  {p['kind']:28s} n={p['n']:4d}  AUROC {p['auroc']:.3f}  flagged {p['flagged']:.1%}")
    return 0


def run_shortcut(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for model_id in args.model:
        result = record_shortcut_check(registry, model_id, args.caveats if len(args.model) == 1 else None)
        if args.json:
            print(json.dumps({"model": model_id} | result), flush=True)
            continue
        print(
            f"{model_id}: AUC {result['auc']:.3f}, with the outer {result['border']:.0%} of each side blanked "
            f"{result['auc_border_blanked']:.3f} ({result['positive']} against the rest, {result['n']} held-out images)"
        )
        for label, share in result["cam_central_share"].items():
            print(f"  Grad-CAM mass inside the central region, {label}: {share:.1%}")
        print(f"  (the central region is {result['central_area']:.0%} of the image)")
    return 0
