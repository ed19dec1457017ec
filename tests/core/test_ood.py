"""The "unlike my training data" detector (core.ood): the Mahalanobis reference itself, a tiny
model trained end to end that carries one, the probe kinds it must flag, and the commands and
summaries that use the verdict."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from core.demo import ood_probes as P
from core.errors import WeightsIntegrityError
from core.inference import Reading, summarise, xray_ood
from core.io.images import read_xray
from core.labels import PNEUMONIA_ANY, XRAY_LABELS
from core.models.registry import LoadedModel, ModelRegistry, sha256_of
from core.ood import (
    LayerReference,
    OodReference,
    OodVerdict,
    fit_reference,
    load_reference,
    save_reference,
    verdict,
)
from core.types import Prediction, XrayImage
from tests.cli_helpers import assert_one_line_error, run

CPU = torch.device("cpu")
MODEL_ID = "cxr-ood-tiny"
#: The demo dataset the tiny model is trained on (images per class, pixels, seed).
PER_CLASS, DATA_SIZE, DATA_SEED = 40, 96, 0
#: Probes per kind.
N_PROBES = 10
#: Share of a probe kind that must be flagged, and of fresh in-distribution phantoms accepted.
MIN_FLAGGED, MIN_ACCEPTED = 0.8, 0.6


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread for this module (restored after): the training and the many single-image
    forward passes are quickest so, and two threads on a busy 2-core machine run many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the reference


def _two_gaussians(rng: np.random.Generator, n: int, dim: int, gap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, means): two unit-variance classes whose means are ``gap`` apart on axis 0."""
    means = np.zeros((2, dim))
    means[1, 0] = gap
    labels = rng.integers(0, 2, n)
    return means[labels] + rng.standard_normal((n, dim)), labels, means


def _nearest(points: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row to the nearest of ``means``."""
    return np.min(np.linalg.norm(points[:, None, :] - means[None], axis=2), axis=1)


def test_reference_accepts_about_95_percent_of_fresh_in_distribution_draws() -> None:
    rng = np.random.default_rng(11)
    dim = 6
    x, y, true_means = _two_gaussians(rng, 4000, dim, gap=12.0)
    dev, _, _ = _two_gaussians(rng, 2000, dim, gap=12.0)
    ref = fit_reference([x], y, [dev])

    (layer,) = ref.layers
    assert ref.classes == 2 and ref.dim == dim and layer.precision.shape == (dim, dim)
    np.testing.assert_allclose(layer.means, true_means, atol=0.1)
    # Unit covariance: a layer's distance is close to the Euclidean distance to the nearest true
    # mean, and the score is that distance over its median on the dev split.
    probe, _, _ = _two_gaussians(rng, 500, dim, gap=12.0)
    np.testing.assert_allclose(layer.distances(probe), _nearest(probe, true_means), rtol=0.08, atol=0.05)
    assert layer.scale == pytest.approx(np.median(_nearest(dev, true_means)), rel=0.05)
    np.testing.assert_allclose(ref.scores([probe]), layer.distances(probe) / layer.scale)
    assert np.median(ref.scores([dev])) == pytest.approx(1.0)  # a typical dev input scores 1

    fresh, _, _ = _two_gaussians(rng, 5000, dim, gap=12.0)
    accepted = float(np.mean(ref.scores([fresh]) <= ref.threshold))
    assert 0.92 <= accepted <= 0.98, accepted
    assert not ref.flagged([fresh]).all() and ref.flagged([fresh]).mean() == pytest.approx(1 - accepted)

    far = rng.standard_normal((200, dim)) + np.r_[60.0, np.zeros(dim - 1)]  # 48 sd beyond class 1
    assert ref.scores([far]).min() > 5 * ref.threshold
    verdicts = [verdict("m", ref, [row[None]]) for row in far[:5]]
    assert not any(v.in_distribution for v in verdicts)
    assert all(v.to_dict()["ood_score"] > v.to_dict()["ood_threshold"] for v in verdicts)
    near = verdict("m", ref, [true_means[1][None]])
    assert near.in_distribution and near.to_dict()["in_distribution"] is True


def test_class_means_matter_and_no_labels_gives_one_mean() -> None:
    rng = np.random.default_rng(12)
    x, y, true_means = _two_gaussians(rng, 3000, 4, gap=20.0)
    dev, _, _ = _two_gaussians(rng, 1000, 4, gap=20.0)
    midway = true_means.mean(axis=0)[None]  # 10 sd from either class, the centre of the whole cloud

    per_class = fit_reference([x], y, [dev])
    pooled = fit_reference([x], None, [dev])

    assert pooled.classes == 1
    np.testing.assert_allclose(pooled.layers[0].means[0], x.mean(axis=0), atol=1e-4)
    assert per_class.scores([midway])[0] > 2 * per_class.threshold  # between the classes: unlike either
    assert pooled.scores([midway])[0] < pooled.threshold  # one mean: the centre of everything seen


def test_every_layer_counts_and_only_the_last_has_class_means() -> None:
    """An input typical at the penultimate layer but unlike the training data at an earlier one
    (texture, contrast) is flagged; the earlier layers are modelled around one mean."""
    rng = np.random.default_rng(13)
    early, early_dev = rng.standard_normal((3000, 3)), rng.standard_normal((1000, 3))
    late, y, late_means = _two_gaussians(rng, 3000, 5, gap=10.0)
    late_dev, _, _ = _two_gaussians(rng, 1000, 5, gap=10.0)
    ref = fit_reference([early, late], y, [early_dev, late_dev], ["early", "late"])

    assert [layer.name for layer in ref.layers] == ["early", "late"]
    assert ref.layers[0].means.shape == (1, 3) and ref.layers[1].means.shape == (2, 5)
    ratios = ref.layer_ratios([early_dev, late_dev])
    np.testing.assert_allclose(np.median(ratios, axis=0), 1.0)
    np.testing.assert_allclose(ref.scores([early_dev, late_dev]), ratios.mean(axis=1))

    typical_late = late_means[y[:50]] + 0.1 * rng.standard_normal((50, 5))
    odd_early = rng.standard_normal((50, 3)) + 25.0
    assert ref.flagged([odd_early, typical_late]).all()
    assert not ref.flagged([0.1 * rng.standard_normal((50, 3)), typical_late]).any()
    with pytest.raises(ValueError, match="2 layers"):
        ref.scores([late])


def test_a_lookalike_domain_is_flagged_however_near_it_scores() -> None:
    """A real-data model's known look-alike (the demo phantoms) is refused even where its features
    sit well inside the training distribution; real inputs are not taken for it."""
    rng = np.random.default_rng(14)
    x, y, _ = _two_gaussians(rng, 3000, 4, gap=8.0)
    dev, _, _ = _two_gaussians(rng, 1000, 4, gap=8.0)
    centre = np.r_[2.0, 1.0, 0.0, 0.0]  # inside the training cloud
    look_train = centre + 0.05 * rng.standard_normal((300, 4))
    plain = fit_reference([x], y, [dev])
    ref = plain.with_lookalike("a synthetic demo phantom", look_train, dev)

    look_fresh = centre + 0.05 * rng.standard_normal((100, 4))
    assert (plain.scores([look_fresh]) <= plain.threshold).mean() > 0.9  # unnoticed without the look-alike
    assert ref.flagged([look_fresh]).all() and ref.lookalikes([look_fresh]).all()
    v = verdict("real-model", ref, [look_fresh[:1]])
    assert not v.in_distribution and v.lookalike == "a synthetic demo phantom"
    assert v.to_dict()["ood_lookalike"] == "a synthetic demo phantom" and "looks like" in v.headline()

    fresh, _, _ = _two_gaussians(rng, 3000, 4, gap=8.0)
    assert ref.lookalikes([fresh]).mean() < 0.02
    assert (ref.scores([fresh]) <= ref.threshold).mean() >= 0.9
    assert "ood_lookalike" not in verdict("real-model", plain, [look_fresh[:1]]).to_dict()


def test_a_scan_is_judged_by_its_median_slice() -> None:
    layer = LayerReference("last", np.zeros((1, 2), np.float32), np.eye(2, dtype=np.float32), scale=1.0)
    ref = OodReference((layer,), threshold=2.0)
    slices = np.array([[0.5, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 4.0], [1.5, 0.0]])  # distances .5 1 3 4 1.5
    v = verdict("slices", ref, [slices], unit="scan")
    assert v.score == pytest.approx(1.5) and v.in_distribution
    assert v.flagged_share == pytest.approx(2 / 5) and v.to_dict()["ood_flagged_slices"] == pytest.approx(0.4)
    one = verdict("slices", ref, [slices[2:3]])
    assert one.score == pytest.approx(3.0) and not one.in_distribution and "ood_flagged_slices" not in one.to_dict()


def _small_reference(seed: int = 3, lookalike: bool = False) -> OodReference:
    rng = np.random.default_rng(seed)
    early, early_dev = rng.standard_normal((300, 3)), rng.standard_normal((100, 3))
    x, y, _ = _two_gaussians(rng, 300, 5, gap=8.0)
    dev, _, _ = _two_gaussians(rng, 100, 5, gap=8.0)
    ref = fit_reference([early, x], y, [early_dev, dev], ["early", "late"])
    if lookalike:
        ref = ref.with_lookalike("a look-alike", np.r_[2.0, 0, 0, 0, 0] + 0.1 * rng.standard_normal((80, 5)), dev)
    return ref


@pytest.mark.parametrize("lookalike", [False, True], ids=["plain", "with-lookalike"])
def test_save_and_load_round_trip(tmp_path: Path, lookalike: bool) -> None:
    ref = _small_reference(lookalike=lookalike)
    path = tmp_path / "m.ood.pt"
    digest = save_reference(ref, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    back = load_reference(path, digest)
    assert back.threshold == ref.threshold and len(back.layers) == len(ref.layers) == 2
    for a, b in zip(back.layers, ref.layers, strict=True):
        assert a.name == b.name and a.scale == b.scale
        np.testing.assert_array_equal(a.means, b.means)
        np.testing.assert_array_equal(a.precision, b.precision)
    assert (back.lookalike is None) == (not lookalike)
    if lookalike:
        assert back.lookalike.what == ref.lookalike.what and back.lookalike.threshold == ref.lookalike.threshold
    rng = np.random.default_rng(4)
    probe = [rng.standard_normal((20, 3)) * 3, rng.standard_normal((20, 5)) * 3]
    np.testing.assert_allclose(back.scores(probe), ref.scores(probe))
    np.testing.assert_array_equal(back.lookalikes(probe), ref.lookalikes(probe))


def test_a_tampered_or_missing_reference_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.ood.pt"
    digest = save_reference(_small_reference(), path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsIntegrityError, match="does not match"):
        load_reference(path, digest)
    # A different but valid reference under the recorded sha256 is refused as well.
    save_reference(_small_reference(seed=5), path)
    with pytest.raises(WeightsIntegrityError, match="does not match"):
        load_reference(path, digest)
    path.unlink()
    with pytest.raises(WeightsIntegrityError, match="missing"):
        load_reference(path, digest)


@pytest.mark.parametrize(
    "state",
    [{"means": torch.zeros(2, 3)}, [1, 2], {"names": ["a"], "threshold": 1.0}],
    ids=["old-layout", "not-a-dict", "no-layer-tensors"],
)
def test_a_reference_file_of_the_wrong_content_is_refused(tmp_path: Path, state: object) -> None:
    path = tmp_path / "m.ood.pt"
    torch.save(state, path)
    with pytest.raises(WeightsIntegrityError, match="does not load"):
        load_reference(path, sha256_of(path))


@pytest.mark.parametrize("content", [b"", b"not a torch archive " * 8], ids=["empty", "garbage"])
def test_a_reference_file_that_is_not_a_torch_archive_is_an_integrity_error(tmp_path: Path, content: bytes) -> None:
    """A file under the recorded sha256 that is no torch archive (a hand-edited card): refused as
    damaged, like the weights themselves (the registry catches these for weights files)."""
    path = tmp_path / "m.ood.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsIntegrityError, match="does not load"):
        load_reference(path, sha256_of(path))


# ----------------------------------------------------------------------------- a tiny trained model


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.demo.xray_phantom import write_xray_dataset

    return write_xray_dataset(
        tmp_path_factory.mktemp("ood-data"), n_per_class=PER_CLASS, seed=DATA_SEED, size=DATA_SIZE
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Path:
    """A weights folder with one resnet18 trained for two epochs at 64 px on ``demo_data``."""
    from core.training.xray import XrayTrainConfig, train_xray

    out = tmp_path_factory.mktemp("ood-weights")
    config = XrayTrainConfig(
        architecture="resnet18",
        model_id=MODEL_ID,
        size=64,
        max_epochs=2,
        patience=2,
        lr=1e-3,
        batch_size=16,
        channels=1,
        device="cpu",
    )
    train_xray(demo_data, out, config, progress=False)
    return out


@pytest.fixture(scope="module")
def model(trained: Path) -> LoadedModel:
    return ModelRegistry(trained, device=CPU).load(MODEL_ID)


def _upload(image: np.ndarray) -> XrayImage:
    """An array read back as the PNG a user would upload."""
    return read_xray(P.to_png(image), "upload.png")


def _fresh_phantoms(n: int) -> list[XrayImage]:
    """New phantoms drawn as the dataset draws them (same generator, size and severity range), new seeds."""
    from core.demo.xray_phantom import DATASET_SEVERITY_RANGE, generate_xray

    rng = np.random.default_rng(2024)
    out = []
    for i in range(n):
        label = XRAY_LABELS[i % 3]
        severity = 0.0 if label == "Normal" else round(float(rng.uniform(*DATASET_SEVERITY_RANGE)), 3)
        out.append(read_xray(generate_xray(label, severity, 1_500_000_000 + i, size=DATA_SIZE).to_png(), "p.png"))
    return out


def _files(demo_data: Path, names: list[str]) -> list[XrayImage]:
    return [read_xray((demo_data / n).read_bytes(), n) for n in names]


def _train_files(demo_data: Path, model: LoadedModel) -> list[str]:
    data = model.card.training["data"]
    held = set(data["test_files"]) | set(data["dev_files"])
    every = sorted(str(p.relative_to(demo_data)) for p in demo_data.glob("*/*.png"))
    return [f for f in every if f not in held]


def _flagged(model: LoadedModel, images: list[XrayImage]) -> tuple[float, list[float]]:
    verdicts = [xray_ood(model, im) for im in images]
    assert all(v is not None for v in verdicts)
    return float(np.mean([not v.in_distribution for v in verdicts])), [round(v.score, 2) for v in verdicts]


def test_training_writes_the_reference_and_the_registry_loads_it(trained: Path, demo_data: Path) -> None:
    card = ModelRegistry(trained, device=CPU).card(MODEL_ID)
    record = card.ood
    assert record is not None
    path = trained / record["file"]
    assert record["file"] == f"{MODEL_ID}.ood.pt" and path.is_file()
    assert record["sha256"] == sha256_of(path)
    assert card.domain == "demo" and card.extra["domain"] == "demo" and card.training["data"]["domain"] == "demo"
    assert "synthetic" in json.loads((demo_data / "dataset.json").read_text())
    images = card.training["data"]["images"]
    assert record["n_train"] == sum(images["train"].values()) and record["n_dev"] == sum(images["dev"].values())
    assert record["classes"] == len(card.labels) == 3

    loaded = ModelRegistry(trained, device=CPU).load(MODEL_ID)
    assert loaded.ood is not None
    assert loaded.ood.threshold == pytest.approx(record["threshold"])
    assert loaded.ood.classes == 3 and loaded.ood.dim == record["dim"] == loaded.module.embedding_dim
    assert record["layers"] == [layer.name for layer in loaded.ood.layers] == list(loaded.module.ood_layers)
    assert record["lookalike"] is None and loaded.ood.lookalike is None  # a demo model has no look-alike


def test_the_threshold_accepts_the_dev_split_as_the_page_reads_it(model: LoadedModel, demo_data: Path) -> None:
    """Fitted at training time on the trainer's inputs; the page's own reading of the dev images
    must see the same scores (about 95% accepted; 11 of the 12 dev images by construction)."""
    dev = _files(demo_data, model.card.training["data"]["dev_files"])
    flagged, scores = _flagged(model, dev)
    assert 1 - flagged >= 0.8, scores


def test_a_changed_reference_file_stops_the_model_from_loading(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "weights"
    shutil.copytree(trained, copy)
    path = copy / f"{MODEL_ID}.ood.pt"
    save_reference(_small_reference(), path)  # a valid reference, not the recorded one
    with pytest.raises(WeightsIntegrityError, match="OOD reference"):
        ModelRegistry(copy, device=CPU).load(MODEL_ID)


# ----------------------------------------------------------------------------- what it must flag


@functools.lru_cache(maxsize=1)
def _real_xrays(n: int) -> list[XrayImage]:
    """pydicom-data's chest CR (RG1_UNCR.dcm, MONOCHROME1) and crops / a mirror image of it, as DICOM then PNG."""
    from pydicom.data import get_testdata_file

    name = get_testdata_file("RG1_UNCR.dcm")
    assert name is not None, "pydicom-data's RG1_UNCR.dcm is missing: is pydicom-data installed?"
    film = read_xray(Path(name).read_bytes(), "RG1_UNCR.dcm")
    unit = film.windowed()
    h, w = unit.shape
    crops = [(0.05, 0.05, 0.05, 0.05), (0.1, 0.0, 0.05, 0.05), (0.0, 0.1, 0.1, 0.0), (0.1, 0.1, 0.0, 0.1)]
    crops += [(0.15, 0.05, 0.1, 0.1), (0.0, 0.2, 0.0, 0.0), (0.05, 0.0, 0.15, 0.15), (0.2, 0.0, 0.1, 0.1)]
    variants = [np.ascontiguousarray(unit[:, ::-1])] + [
        unit[int(h * top) : int(h * (1 - bottom)), int(w * left) : int(w * (1 - right))]
        for top, bottom, left, right in crops
    ]
    return ([film] + [_upload(v.astype(np.float32)) for v in variants])[:n]


def _inverted_held_out(demo_data: Path, model: LoadedModel, n: int) -> list[XrayImage]:
    held = _files(demo_data, model.card.training["data"]["test_files"][:n])
    return [_upload(P.inverted(im.windowed())) for im in held]


PROBES: dict[str, Callable[[Path, LoadedModel], list[XrayImage]]] = {
    "real chest X-ray": lambda data, model: _real_xrays(N_PROBES),
    "photograph": lambda data, model: [_upload(P.photograph(i)) for i in range(N_PROBES)],
    "screenshot": lambda data, model: [_upload(P.screenshot(i)) for i in range(N_PROBES)],
    "lateral chest film": lambda data, model: [_upload(P.lateral_phantom(i)) for i in range(N_PROBES)],
    "CT slice": lambda data, model: [_upload(s) for i in range(N_PROBES // 2) for s in P.ct_phantom_slices(i, 2)],
    "inverted grey levels": lambda data, model: _inverted_held_out(data, model, N_PROBES),
}


def test_fresh_in_distribution_phantoms_are_accepted(model: LoadedModel) -> None:
    flagged, scores = _flagged(model, _fresh_phantoms(12))
    print(f"fresh phantoms: flagged {flagged:.2f}, threshold {model.ood.threshold:.2f}, scores {scores}")
    assert 1 - flagged >= MIN_ACCEPTED, (model.ood.threshold, scores)


@pytest.mark.parametrize("kind", list(PROBES))
def test_each_probe_kind_is_flagged(kind: str, model: LoadedModel, demo_data: Path) -> None:
    images = PROBES[kind](demo_data, model)
    assert len(images) >= 8
    flagged, scores = _flagged(model, images)
    print(f"{kind}: flagged {flagged:.2f} of {len(images)}, threshold {model.ood.threshold:.2f}, scores {scores}")
    assert flagged >= MIN_FLAGGED, (kind, model.ood.threshold, scores)


def test_the_real_film_itself_is_flagged(model: LoadedModel) -> None:
    film = _real_xrays(N_PROBES)[0]
    assert film.file_format == "dicom"
    v = xray_ood(model, film)
    assert v is not None and not v.in_distribution and v.score > v.threshold


# ----------------------------------------------------------------------------- predict-xray


def test_predict_xray_json_reports_the_verdict(
    trained: Path, demo_data: Path, model: LoadedModel, tmp_path, capsys
) -> None:
    photo = tmp_path / "holiday.png"
    photo.write_bytes(P.to_png(P.photograph(7)))
    phantom = demo_data / _train_files(demo_data, model)[0]
    status, out, err = run(
        capsys, "predict-xray", str(photo), str(phantom), "--model", MODEL_ID, "--weights", str(trained),
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert status == 0, err
    records = {r["file"]: r for r in map(json.loads, out.splitlines())}
    assert set(records) == {str(photo), str(phantom)}
    rejected, accepted = records[str(photo)], records[str(phantom)]
    assert rejected["in_distribution"] is False and rejected["ood_score"] > rejected["ood_threshold"]
    assert accepted["in_distribution"] is True and accepted["ood_score"] <= accepted["ood_threshold"]
    for r in records.values():
        assert r["model"] == MODEL_ID and r["domain"] == model.card.domain_words
        assert r["domain"].startswith("demo") and r["ood_threshold"] == pytest.approx(model.ood.threshold, abs=1e-3)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_xray_says_no_result_for_a_photograph(trained: Path, demo_data: Path, model, tmp_path, capsys) -> None:
    photo = tmp_path / "holiday.png"
    photo.write_bytes(P.to_png(P.photograph(7)))
    phantom = demo_data / _train_files(demo_data, model)[0]
    status, out, err = run(
        capsys, "predict-xray", str(photo), str(phantom), "--model", MODEL_ID, "--weights", str(trained),
        "--device", "cpu",
    )  # fmt: skip
    assert status == 0, err
    (photo_line,) = [line for line in out.splitlines() if line.startswith(str(photo))]
    (phantom_line,) = [line for line in out.splitlines() if line.startswith(str(phantom))]
    assert "NO RESULT" in photo_line and "unlike the images" in photo_line and "predicted" not in photo_line
    assert "NO RESULT" not in phantom_line and "predicted" in phantom_line


# ----------------------------------------------------------------------------- summaries


def _reading(model_id: str, labels: tuple[str, ...], probs: tuple[float, ...], accepted: bool | None) -> Reading:
    """A reading built by hand; ``accepted`` None: the model has no reference."""
    prediction = Prediction(model_id, "v1", labels, probs)
    if accepted is None:
        return Reading(prediction, None, "demo: trained on synthetic phantoms")
    score = 3.0 if accepted else 30.0
    return Reading(prediction, OodVerdict(model_id, score, 10.0), "demo: trained on synthetic phantoms")


REAL_LABELS = ("Normal", PNEUMONIA_ANY, "COVID-19")


def test_summary_of_an_input_every_model_rejects_has_no_headline() -> None:
    readings = [
        _reading("a", XRAY_LABELS, (0.7, 0.2, 0.1), False),
        _reading("b", XRAY_LABELS, (0.1, 0.2, 0.7), False),
        _reading("real", REAL_LABELS, (0.3, 0.3, 0.4), False),
    ]
    s = summarise(readings)
    assert s.headline is None and s.average is None and s.averaged == () and s.average_words() == ""
    assert [r.prediction.model_id for r in s.rejected] == ["a", "b", "real"]


def test_summary_never_averages_models_with_different_classes() -> None:
    demo = _reading("demo", XRAY_LABELS, (0.6, 0.3, 0.1), True)
    real = _reading("real", REAL_LABELS, (0.1, 0.2, 0.7), True)
    s = summarise([demo, real])
    assert s.average is None and s.averaged == ()
    assert s.headline is not None and {s.headline.model_id, *s.not_averaged} == {"demo", "real"}
    assert len(s.not_averaged) == 1 and s.not_averaged[0] != s.headline.model_id
    preferred = summarise([demo, real], prefer="real")
    assert preferred.headline == real.prediction and preferred.not_averaged == ("demo",)
    # A rejected demo model does not become the average's second member.
    rejected_twin = _reading("demo-2", XRAY_LABELS, (0.2, 0.2, 0.6), False)
    s = summarise([demo, rejected_twin, real], prefer="demo")
    assert s.headline == demo.prediction and s.average is None and s.not_averaged == ("real",)
    assert [r.prediction.model_id for r in s.rejected] == ["demo-2"]


def test_summary_averages_exactly_the_accepted_models_of_one_label_set() -> None:
    a = _reading("a", XRAY_LABELS, (0.6, 0.3, 0.1), True)
    b = _reading("b", XRAY_LABELS, (0.2, 0.3, 0.5), None)  # no reference: accepted
    rejected = _reading("c", XRAY_LABELS, (0.0, 0.0, 1.0), False)
    real = _reading("real", REAL_LABELS, (0.9, 0.05, 0.05), True)
    s = summarise([a, rejected, real, b])
    assert s.averaged == ("a", "b") and s.not_averaged == ("real",)
    assert s.headline is s.average and s.average is not None
    assert s.average.labels == XRAY_LABELS
    expected = np.mean([a.prediction.probabilities, b.prediction.probabilities], axis=0)
    np.testing.assert_allclose(s.average.probabilities, expected)
    assert [r.prediction.model_id for r in s.rejected] == ["c"]
    assert "a, b" in s.average_words() and "real" in s.average_words()


# ----------------------------------------------------------------------------- fit-ood


def _without_reference(trained: Path, copy: Path) -> Path:
    """A copy of the weights folder whose card has no ``ood`` entry and no reference file."""
    shutil.copytree(trained, copy)
    (copy / f"{MODEL_ID}.ood.pt").unlink()
    manifest = copy / "manifest.json"
    doc = json.loads(manifest.read_text())
    for entry in doc["models"]:
        entry.pop("ood", None)
    manifest.write_text(json.dumps(doc))
    return copy


def test_fit_ood_refits_a_model_without_a_reference(trained: Path, demo_data: Path, tmp_path: Path, capsys) -> None:
    original = ModelRegistry(trained, device=CPU).card(MODEL_ID).ood
    copy = _without_reference(trained, tmp_path / "weights")
    bare = ModelRegistry(copy, device=CPU).load(MODEL_ID)
    assert bare.card.ood is None and bare.ood is None and xray_ood(bare, _fresh_phantoms(1)[0]) is None

    status, out, err = run(capsys, "fit-ood", "--model", MODEL_ID, "--weights", str(copy), "--device", "cpu", "--json")
    assert status == 0, err
    printed = json.loads(out)
    card = ModelRegistry(copy, device=CPU).card(MODEL_ID)
    record = card.ood
    assert record is not None and printed["model"] == MODEL_ID and printed["sha256"] == record["sha256"]
    path = copy / record["file"]
    assert path.is_file() and sha256_of(path) == record["sha256"]
    assert record["n_train"] == original["n_train"] and record["n_dev"] == original["n_dev"]
    assert "training split" in record["fitted_on"]
    # The same features of the same splits (the trainer stored its inputs as 8-bit): nearly the same threshold.
    assert record["threshold"] == pytest.approx(original["threshold"], rel=0.1)
    refitted = ModelRegistry(copy, device=CPU).load(MODEL_ID)
    assert refitted.ood is not None and refitted.ood.threshold == pytest.approx(record["threshold"])
    assert not xray_ood(refitted, _upload(P.photograph(3))).in_distribution


def test_fit_ood_on_an_unknown_model_is_one_line(trained: Path, capsys) -> None:
    status, out, err = run(capsys, "fit-ood", "--model", "cxr-nope", "--weights", str(trained), "--device", "cpu")
    assert_one_line_error(status, out, err, "cxr-nope")
