"""Uploads on the Trajectories page are checked against the model's training data, scan by scan."""

from __future__ import annotations

from pathlib import Path

import torch

from core.demo.ood_probes import photograph, to_png
from core.demo.xray_phantom import generate_xray
from core.io.images import read_xray
from core.models.registry import ModelRegistry
from core.trajectory.explain import UploadedScan, upload_verdicts
from tests.helpers import fit_phantom_reference, register_tiny_model


def test_each_uploaded_scan_gets_its_own_verdict(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-resnet18")
    fit_phantom_reference(tmp_path, "cxr-resnet18")
    model = ModelRegistry(tmp_path, device=torch.device("cpu")).load("cxr-resnet18")
    phantom = read_xray(generate_xray("COVID-19", 0.6, 20_003, size=128).to_png(), "day0.png")
    holiday = read_xray(to_png(photograph(2)), "day3.png")
    verdicts = upload_verdicts(
        model, [UploadedScan("day0.png", 0.0, image=phantom), UploadedScan("day3.png", 3.0, image=holiday)]
    )
    assert [v.in_distribution for v in verdicts] == [True, False]
    assert upload_verdicts(model, [UploadedScan("empty", 1.0)]) == [None]
