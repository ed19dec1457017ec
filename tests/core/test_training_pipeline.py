"""The pieces every trainer shares: the training loop (core.training.loop.fit), the logits
predictor, the publish step (core.training.publish.publish) and the two layouts of the one
binary report."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.evaluation.binary import binary_metrics, binary_report
from core.evaluation.calibration import fit_calibration
from core.models.manifest import InputSpec, read_manifest
from core.models.registry import sha256_of
from core.training.loop import Record, StepLoss, fit, predict_logits
from core.training.publish import CardDraft, DevSplit, Measured, publish


def test_fit_runs_every_epoch_without_patience_and_keeps_the_epoch_its_rule_picks() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x = torch.randn(32, 2)
    y = (x[:, 0] > 0).long()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=1, gamma=0.9)
    seen: list[dict[str, torch.Tensor]] = []

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        logits = model(batch[0])
        return StepLoss(F.cross_entropy(logits, batch[1]), len(batch[1]), int((logits.argmax(1) == batch[1]).sum()))

    def validate() -> Record:
        seen.append(copy.deepcopy(model.state_dict()))
        return {"val_score": float(len(seen) == 2)}  # the second epoch is the best

    result = fit(
        model,
        optimiser,
        lambda epoch: [(x[:16], y[:16]), (x[16:], y[16:])],
        step,
        validate,
        max_epochs=4,
        improved=lambda record, best: best is None or record["val_score"] > best["val_score"],
        scheduler=scheduler,
        progress=False,
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2
    assert all(torch.equal(result.state[k], seen[1][k]) for k in seen[1])
    assert not torch.equal(result.state["weight"], model.weight.detach())  # trained on after epoch 2
    assert all(0.0 <= r["train_accuracy"] <= 1.0 for r in result.history)
    assert scheduler.last_epoch == 8  # stepped after each of the 8 optimiser steps


def test_the_training_loss_is_the_mean_of_the_batches_weighted_as_each_step_says() -> None:
    model = nn.Linear(1, 1)

    def step(batch: tuple[float, float]) -> StepLoss:
        value, weight = batch
        return StepLoss(model.weight.sum() * 0.0 + value, weight)

    result = fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        lambda epoch: [(2.0, 3.0), (6.0, 1.0)],
        step,
        lambda: {"dev_loss": 1.0},
        max_epochs=1,
        progress=False,
    )
    assert result.history == [{"epoch": 1, "train_loss": pytest.approx(3.0), "dev_loss": 1.0}]  # (2*3 + 6*1) / 4


def test_predict_logits_reads_in_eval_mode_batch_by_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    x = torch.randn(10, 3)
    logits = predict_logits(model, [(x[:4],), (x[4:],)])
    assert logits.dtype == np.float32 and logits.shape == (10, 2)
    assert not model.training
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-6)  # no dropout: the eval network
    assert predict_logits(model, []).shape == (0, 1)


def test_publish_registers_the_half_precision_file_and_measures_it_as_loaded_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = nn.Linear(3, 2)
    x = torch.randn(40, 3)
    y = (x[:, 0] > 0).long().numpy()
    seen: dict[str, object] = {}

    def dev_logits(shipped: nn.Module) -> np.ndarray:
        seen["calibrated"] = shipped
        return predict_logits(shipped, [(x,)])

    def measure(shipped: nn.Module, temperature: float, logits: np.ndarray) -> Measured:
        seen["measured"], seen["dev_logits"] = shipped, logits
        return Measured(
            {"held_out": {"weight": shipped.weight.detach().tolist(), "temperature": temperature}},
            thresholds={"covid": 0.5},
            extra={"task": "test"},
        )

    draft = CardDraft(
        id="tiny",
        architecture="linear",
        architecture_kwargs={},
        input_kind="xray",
        input=InputSpec(8, 1, (0.5,), (0.25,)),
        labels=("Normal", "COVID-19"),
        gradcam_layer="",
        intended_use="test",
        extra={"domain": "demo"},
    )
    published = publish(
        trained.state_dict(),
        lambda: nn.Linear(3, 2),
        torch.device("cpu"),
        tmp_path / "weights",
        draft,
        DevSplit(dev_logits, y, "softmax", "dev split (40 cases)"),
        measure,
        {"data": {"source": "test"}},
    )

    path = tmp_path / "weights" / "tiny.pt"
    assert published.weights_path == path
    assert all(v.dtype == torch.float16 for v in torch.load(path, weights_only=True).values())
    (card,) = read_manifest(tmp_path / "weights")
    assert card.sha256 == sha256_of(path) and card.version.endswith(card.sha256[:8])
    # What was calibrated and measured is the file loaded back, not the trained float32 network.
    shipped = published.shipped
    assert seen["calibrated"] is seen["measured"] is shipped and shipped is not trained and not shipped.training
    assert torch.equal(shipped.weight, trained.weight.half().float())
    assert not torch.equal(shipped.weight, trained.weight)  # the round trip changed the numbers
    assert card.metrics["held_out"]["weight"] == trained.weight.detach().half().float().tolist()
    # The temperature is fitted on the dev logits of the shipped network, which measure gets too.
    np.testing.assert_array_equal(seen["dev_logits"], predict_logits(shipped, [(x,)]))
    expected = fit_calibration(predict_logits(shipped, [(x,)]), y, "softmax", "dev split (40 cases)")
    assert card.temperature == expected.temperature == card.metrics["held_out"]["temperature"]
    assert card.training["calibration"] == expected.to_record()
    assert card.training["data"] == {"source": "test"} and card.training["stored_as"].startswith("float16")
    assert card.thresholds == {"covid": 0.5}
    assert card.extra == {"domain": "demo", "task": "test"}


def test_binary_metrics_lay_out_the_binary_report() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.3, 0.8, 0.2, 0.9, 0.7])
    report = binary_report(y, p, ("Low", "High"), 0.5)
    metrics = binary_metrics(y, p, 0.5, ("Low", "High"))
    assert metrics["confusion_matrix"] == report["confusion_matrix"]
    assert metrics["per_class"] == report["per_class"]
    assert (metrics["n"], metrics["positives"], metrics["threshold"]) == (7, 4, 0.5)
    assert metrics["accuracy"] == report["accuracy"] == pytest.approx(5 / 7)
    assert metrics["roc_auc"] == report["roc_auc_ovr"]
    assert metrics["sensitivity"] == report["per_class"]["High"]["recall"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == report["per_class"]["High"]["specificity"] == pytest.approx(2 / 3)
    one_class = binary_metrics(np.zeros(3, dtype=int), np.array([0.1, 0.7, 0.2]), 0.5, ("Low", "High"))
    assert one_class["roc_auc"] is None and one_class["sensitivity"] is None
    assert one_class["specificity"] == pytest.approx(2 / 3)
