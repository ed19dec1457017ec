"""``python -m core models``: the registered models and the device they would run on."""

from __future__ import annotations

import argparse
import json

from core.cli.common import weights_arg
from core.models.registry import ModelRegistry


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models")
    weights_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    registry = ModelRegistry(args.weights)
    for card in registry.cards():
        acc = card.metrics.get("held_out", {}).get("accuracy")
        if args.json:
            print(
                json.dumps(
                    {
                        "id": card.id,
                        "version": card.version,
                        "architecture": card.architecture,
                        "input_kind": card.input_kind,
                        "labels": list(card.labels),
                        "held_out_accuracy": acc,
                        "intended_use": card.intended_use,
                        "domain": card.domain,
                        "ood_threshold": (card.ood or {}).get("threshold"),
                    }
                )
            )
        else:
            acc_text = f"{acc:.3f}" if isinstance(acc, float) else "n/a"
            ood = "OOD check" if card.ood else "no OOD check"
            print(
                f"{card.id:24s} {card.version:20s} {card.architecture:12s} {card.domain:5s} "
                f"held-out accuracy {acc_text}  {ood}"
            )
    if not args.json:
        print(f"device: {registry.device}")
    return 0
