"""The library's warm-up (ui/warmup.py): after it, the small demo library holds the search
embeddings, the trajectories' scores and the survival and prognosis predictions, so the pages
visited next compute none of them, and the process has drawn a 3D Grad-CAM with the CT model the
presenter draws its maps with; it runs once per library; Home shows its progress and then says
the library is ready."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import core.survival.analysis as analysis
import core.trajectory.curves as curves
import core.trajectory.scores as scores
import ui.search
from core.library.importers import add_upload
from core.library.store import open_library
from core.models.registry import ModelRegistry
from core.search.embeddings import embedding_version, index_library
from core.survival.analysis import PROGNOSIS_SCORE, SURVIVAL_SCORE
from core.trajectory.scores import score_library, score_version, scored_refs
from tests.helpers import ROOT, register_tiny_model
from tests.survival_helpers import CT_ID, PROGNOSIS_IDS, SURVIVAL_ID, survival_weights  # noqa: F401
from ui import resources, warmup

#: Longest wait for a warm-up of the small library with the tiny models (it takes a few seconds).
WAIT_S = 120


@pytest.fixture(scope="module")
def weights(survival_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The tiny survival, prognosis and COVID3D models with a tiny cxr-resnet18 beside them."""
    folder = tmp_path_factory.mktemp("warm-up-weights") / "weights"
    shutil.copytree(survival_weights, folder)
    register_tiny_model(folder, "cxr-resnet18")
    return folder


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, weights: Path, library_copy: Path) -> Path:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("DASHBOARD_WARM_UP", "1")
    return library_copy


def finished(warm: warmup.WarmUp) -> warmup.WarmUp:
    deadline = time.monotonic() + WAIT_S
    while not warm.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert warm.finished, warm.text
    return warm


def warm_up_threads() -> int:
    return sum(t.name == warmup.THREAD_NAME and t.is_alive() for t in threading.enumerate())


def test_the_warm_up_stores_what_the_pages_would_compute(env: Path, weights: Path) -> None:
    warm = warmup.start(str(env))
    assert warm is not None
    assert warmup.start(str(env)) is warm  # a second session watches the same one
    finished(warm)
    assert warm.problems == []
    assert warm.steps_done == [
        "the 3D Grad-CAM",
        "the similar-case search",
        "survival and prognosis",
        "the trajectories of CT scans",
        "the trajectories of X-rays",
    ]
    assert warmup.start(str(env)) is warm and warm_up_threads() == 0  # nothing changed: not run again

    registry = ModelRegistry(weights, device=torch.device("cpu"))
    library = open_library(env)
    xray, ct = registry.load("cxr-resnet18"), registry.load(CT_ID)
    assert index_library(library, xray).added == 0
    assert index_library(library, xray).total == len(library.image_refs(("xray",))) > 0
    for model in (xray, ct):
        report = score_library(library, model)
        assert report.added == 0 and report.already == len(scored_refs(library, model)) > 0
    survival, prognosis = registry.load(SURVIVAL_ID), registry.load(PROGNOSIS_IDS[2])
    assert library.scores(SURVIVAL_ID, score_version(survival), SURVIVAL_SCORE)
    assert library.scores(PROGNOSIS_IDS[2], score_version(prognosis), PROGNOSIS_SCORE)
    assert library.count_embeddings("cxr-resnet18", embedding_version(xray)) == index_library(library, xray).total


def test_an_upload_after_the_warm_up_starts_another_that_embeds_only_it(env: Path, chest_png: bytes) -> None:
    first = finished(warmup.start(str(env)))
    library = open_library(env)
    added = add_upload(library, [("chest.png", chest_png)], modality="X-ray", label="COVID-19")
    second = warmup.start(str(env))
    assert second is not None and second is not first
    finished(second)
    assert second.problems == []
    version = embedding_version(resources.model("cxr-resnet18"))
    (image_id,) = [r.image_id for r in library.image_refs(("xray",)) if r.study_id == added.study_id]
    ids, _ = library.embeddings("cxr-resnet18", version)
    assert image_id in ids


def test_home_shows_the_progress_then_says_ready_and_pages_compute_nothing(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, release = threading.Event(), threading.Event()
    real_index = warmup.index_library

    def slow_index(library, model, *, progress=None):  # noqa: ANN001, ANN202
        progress(1, 4)
        reached.set()
        release.wait(WAIT_S)
        return real_index(library, model, progress=progress)

    monkeypatch.setattr(warmup, "index_library", slow_index)
    warmup.start(str(env))  # as the first-launch build's thread does; Home then shows this one
    assert reached.wait(WAIT_S)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    bars = [p for p in at.get("progress") if "fast searches" in str(p.proto.text)]
    assert bars and "Preparing the library for fast searches: 1 of 4 images" in bars[0].proto.text
    release.set()
    finished(warmup.current(str(env)))
    at.run()
    assert not at.exception
    ready = " ".join(s.value for s in at.success)
    assert "The case library is ready" in ready and "similar-case search" in ready and "3D Grad-CAM" in ready
    assert not at.get("progress")

    # The pages visited now find everything stored: no embedding, no prediction computed.
    def no_call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("computed on a page visit after the warm-up")

    monkeypatch.setattr(ui.search, "index_library", no_call)
    monkeypatch.setattr(analysis, "predict_prognosis", no_call)
    monkeypatch.setattr(analysis, "predict_survival", no_call)
    # Every module that calls them was imported above, so each binding is patched and restored.
    monkeypatch.setattr(scores, "score_scan", no_call)
    monkeypatch.setattr(curves, "score_scan", no_call)
    for page in ("pages/similar.py", "pages/survival.py", "pages/trajectories.py"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.switch_page(page).run()
        assert not at.exception, page
        assert not [e.value for e in at.error if "did not expect" in e.value], page


def test_pages_visited_during_the_warm_up_work_and_reuse_what_it_stored(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, release = threading.Event(), threading.Event()
    real_index = warmup.index_library

    def slow_index(library, model, *, progress=None):  # noqa: ANN001, ANN202
        reached.set()
        release.wait(WAIT_S)
        return real_index(library, model, progress=progress)

    monkeypatch.setattr(warmup, "index_library", slow_index)
    warm = warmup.start(str(env))
    assert warm is not None and reached.wait(WAIT_S)
    # The Survival page does not wait for the warm-up: it computes its cohort itself.
    at = AppTest.from_file(str(ROOT / "pages" / "survival.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    # Similar cases waits for the embeddings under way (released here after a second), then searches.
    threading.Timer(1.0, release.set).start()
    at = AppTest.from_file(str(ROOT / "pages" / "similar.py"), default_timeout=120).run()
    assert not at.exception and not at.error
    assert release.is_set()
    finished(warm)
    assert warm.problems == []


def test_the_warm_up_draws_a_3d_grad_cam_with_the_model_the_presenter_uses(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[object, tuple[int, ...], float]] = []
    real_cam = warmup.covid3d_with_cam

    def spy(model, x):  # noqa: ANN001, ANN202
        logit, cam = real_cam(model, x)
        drawn.append((model, tuple(x.shape), float(cam.max())))
        return logit, cam

    monkeypatch.setattr(warmup, "covid3d_with_cam", spy)
    warm = finished(warmup.start(str(env)))
    assert warm.problems == [] and warm.steps_done[0] == "the 3D Grad-CAM"
    # One map, by the very model instance the presenter's CT Grad-CAM is drawn with, on the model's
    # own input grid: the shapes a real series of any size is resampled to.
    ((model, shape, top),) = drawn
    spec = resources.registry().card(CT_ID).input
    assert model is resources.model(CT_ID)
    assert shape == (1, spec.channels, spec.depth, spec.size, spec.size)
    assert 0.0 <= top <= 1.0


def test_a_failed_3d_grad_cam_is_a_plain_problem_line_and_the_other_steps_run(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(model, x):  # noqa: ANN001, ANN202
        raise RuntimeError("a secret path /home/someone/weights.pt")

    monkeypatch.setattr(warmup, "covid3d_with_cam", broken)
    warm = finished(warmup.start(str(env)))
    assert warm.problems == [
        "Preparing the 3D Grad-CAM failed unexpectedly (RuntimeError); its page computes it on its first visit."
    ]
    assert "the 3D Grad-CAM" not in warm.steps_done and "the trajectories of CT scans" in warm.steps_done


def test_switched_off_the_warm_up_draws_no_map(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a map was drawn with the warm-up switched off")

    monkeypatch.setattr(warmup, "covid3d_with_cam", no_call)
    monkeypatch.setenv("DASHBOARD_WARM_UP", "0")
    assert warmup.start(str(env)) is None
    assert warmup.current(str(env)) is None and warm_up_threads() == 0


def test_a_presenter_who_opens_the_case_review_page_first_starts_the_warm_up(env: Path) -> None:
    # A bookmarked presenter link in a fresh process never passes through Home.
    assert warmup.current(str(env)) is None
    at = AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    warm = warmup.current(str(env))
    assert warm is not None
    assert "the 3D Grad-CAM" in finished(warm).steps_done
