"""Which inputs each model should call "unlike my training data", and how well it does.

For each model, sets of inputs of a known kind (:mod:`core.demo.ood_probes` draws most of them;
real images come from ``../shared/data`` and ``../shared/samples`` when present, and from the
chest CR that pydicom-data ships) are scored against its own held-out cases with
:func:`core.evaluation.ood.measure_probes`:

- X-ray models (3-class and findings): a real chest X-ray given to a demo model, a demo phantom
  given to a real model, colour photographs, software screenshots, lateral chest films
  (simulated from CT: no real lateral film is at hand), axial CT slices on the X-ray page, and
  the model's own held-out images with inverted grey levels;
- the slice model on slice images (real CT): demo CT phantom slices, chest X-rays,
  photographs, screenshots, inverted slices;
- CT series models (COVID3D, the demo slice model): a real chest CT series given to a demo
  model; the real-data slice model gets demo phantom series.

Photographs and screenshots go through the project's reader as the PNG a user would upload
(colour to grayscale), so the probes see what the page sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.demo import ood_probes as P
from core.demo.ct_phantom import generate_ct
from core.demo.xray_phantom import generate_xray
from core.errors import DashboardError, InvalidInputError
from core.evaluation.data import IMAGE_KINDS, evaluation_data, model_kind
from core.evaluation.ood import held_out_scores, image_scores, measure_probes, volume_scores
from core.io.ct_input import read_ct_path
from core.io.images import read_xray
from core.models.manifest import write_manifest_entry
from core.models.registry import LoadedModel, ModelRegistry

#: Where the real images live beside the project (never needed by the app or the default tests).
SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _uploaded(png: bytes) -> np.ndarray:
    """An image as the X-ray page reads an upload: [0, 1] at the file's window."""
    return read_xray(png, "probe.png").windowed()


def _real_xrays(real_data: Path | None, n: int) -> list[np.ndarray]:
    """Real chest X-rays: ``n`` spread over cxr-adult (when present) and the pydicom-data chest CR."""
    out: list[np.ndarray] = []
    if real_data is not None and (real_data / "cxr-adult").is_dir():
        files = sorted((real_data / "cxr-adult").glob("*/*.png"))
        for f in files[:: max(1, len(files) // n)][:n]:
            out.append(read_xray(f.read_bytes(), f.name).windowed())
    try:
        from pydicom.data import get_testdata_file

        for name in ("RG1_UNCR.dcm", "RG2_UNCR.dcm", "RG3_UNCR.dcm"):
            path = get_testdata_file(name)
            if path:
                out.append(read_xray(Path(path).read_bytes(), name).windowed())
    except (ImportError, DashboardError, OSError, ValueError):
        pass
    return out


def _real_ct_slices(real_data: Path | None, n: int) -> list[np.ndarray]:
    if real_data is None or not (real_data / "ct-slices").is_dir():
        return []
    files = sorted((real_data / "ct-slices").glob("*/*.png"))
    return [read_xray(f.read_bytes(), f.name).windowed() for f in files[:: max(1, len(files) // n)][:n]]


def _real_ct_series(samples: Path | None) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """(HU volume, spacing) of each real sample series."""
    if samples is None or not samples.is_dir():
        return []
    out = []
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        try:
            volume = read_ct_path(folder)
        except DashboardError:
            continue
        out.append((volume.hu, volume.spacing_mm))
    return out


def _real_ct_volumes(samples: Path | None) -> list[np.ndarray]:
    """The real sample series and sub-volumes of each (contiguous two-thirds at five offsets)."""
    out = []
    for hu, _ in _real_ct_series(samples):
        out.append(hu)
        z = hu.shape[0]
        span = max(8, (2 * z) // 3)
        for start in np.linspace(0, z - span, 5).astype(int):
            out.append(hu[start : start + span])
    return out


def _phantom_xrays(n: int) -> list[np.ndarray]:
    labels = ("Normal", "Viral pneumonia", "COVID-19")
    return [generate_xray(labels[i % 3], 0.0 if i % 3 == 0 else 0.6, 50_000 + i, size=256).pixels for i in range(n)]


def _phantom_volumes(n: int) -> list[np.ndarray]:
    labels = ("Normal", "COVID-19", "Viral pneumonia")
    return [generate_ct(labels[i % 3], 0.0 if i % 3 == 0 else 0.6, 60_000 + i).hu for i in range(n)]


def probe_sets(
    model: LoadedModel,
    held_out_images: list[np.ndarray],
    n: int = 60,
    real_data: Path | None = None,
    samples: Path | None = None,
) -> dict[str, tuple[str, Callable[[], np.ndarray]]]:
    """The probe kinds of ``model``: kind -> (description, a function giving their OOD scores)."""
    ref = model.ood
    assert ref is not None
    kind = model_kind(model.card)
    demo = model.card.domain == "demo"

    def images(get: Callable[[], list[np.ndarray]]) -> Callable[[], np.ndarray]:
        return lambda: image_scores(model, ref, get())

    def volumes(get: Callable[[], list[np.ndarray]]) -> Callable[[], np.ndarray]:
        return lambda: volume_scores(model, ref, get())

    out: dict[str, tuple[str, Callable[[], np.ndarray]]] = {}
    pictures = {
        "photograph": (
            f"{n} colour photographs (generated), read as uploads",
            lambda: [_uploaded(P.to_png(P.photograph(i))) for i in range(n)],
        ),
        "screenshot": (
            f"{n} software screenshots (generated), read as uploads",
            lambda: [_uploaded(P.to_png(P.screenshot(i))) for i in range(n)],
        ),
    }
    inverted = (
        f"the model's own held-out images with inverted grey levels ({min(n, len(held_out_images))})",
        lambda: [P.inverted(np.asarray(u, dtype=np.float32)) for u in held_out_images[:n]],
    )
    if kind in ("xray", "findings"):
        if demo:
            real = _real_xrays(real_data, n)
            out["real chest X-ray"] = (
                f"{len(real)} real chest X-rays (cxr-adult where present, pydicom-data CRs)",
                images(lambda: real),
            )
        else:
            out["demo phantom X-ray"] = (f"{n} synthetic X-ray phantoms of the demo", images(lambda: _phantom_xrays(n)))
        for name, (words, get) in pictures.items():
            out[name] = (words, images(get))
        out["lateral chest film"] = (
            f"{n // 2} lateral chest radiographs simulated from CT phantoms (and the real sample CT when present); "
            "no real lateral film is available here",
            images(
                lambda: (
                    [P.lateral_phantom(i) for i in range(n // 2)]
                    + [P.lateral_drr(hu, spacing) for hu, spacing in _real_ct_series(samples)]
                )
            ),
        )
        out["CT slice"] = (
            "axial CT slices in a lung window: demo phantom slices, and real slices (Soares) where present",
            images(
                lambda: (
                    [s for i in range(n // 4) for s in P.ct_phantom_slices(i, 2)] + _real_ct_slices(real_data, n // 2)
                )
            ),
        )
        out["inverted grey levels"] = (inverted[0], images(inverted[1]))
    elif kind == "slice-images":
        out["demo CT phantom slice"] = (
            f"{n} lung-window slices of demo CT phantoms",
            images(lambda: [s for i in range(n // 4) for s in P.ct_phantom_slices(i, 4)]),
        )
        out["chest X-ray"] = (
            "chest X-rays (real ones where present, else demo phantoms) on the CT page",
            images(lambda: _real_xrays(real_data, n) if real_data else _phantom_xrays(n)),
        )
        for name, (words, get) in pictures.items():
            out[name] = (words, images(get))
        out["inverted grey levels"] = (inverted[0], images(inverted[1]))
    elif kind in ("ct-volume", "ct-slice"):
        if demo:
            real = _real_ct_volumes(samples)
            if real:
                out["real chest CT series"] = (
                    "1 real chest CT series (../shared/samples, a lung-cancer patient) and 5 sub-volumes of it",
                    volumes(lambda: real),
                )
        else:
            out["demo CT phantom series"] = (f"{n // 4} demo CT phantoms", volumes(lambda: _phantom_volumes(n // 4)))
    return out


def probe_check(
    model: LoadedModel, n: int = 60, real_data: Path | None = None, samples: Path | None = None
) -> dict[str, Any]:
    """Detection AUROC and share flagged per probe kind, against the model's held-out cases."""
    if model.ood is None:
        raise InvalidInputError(f"{model.id} has no OOD reference: run python -m core fit-ood --model {model.id}.")
    data = evaluation_data(model.card, split="test")
    held = held_out_scores(model, model.ood, data)
    held_images: list[np.ndarray] = []
    if model_kind(model.card) in IMAGE_KINDS + ("findings",):
        held_images = [c.load() for c in data.cases[:n]]
    sets = probe_sets(model, held_images, n, real_data, samples)
    scored = {kind: (words, get()) for kind, (words, get) in sets.items()}
    result = measure_probes(model, held, scored)
    return result | {"measured_on": data.description}


def record_probe_check(
    registry: ModelRegistry, model_id: str, n: int = 60, real_data: Path | None = None
) -> dict[str, Any]:
    """:func:`probe_check`, stored in the card's ``ood`` entry as ``detection``."""
    real = real_data if real_data is not None else (SHARED / "data" if (SHARED / "data").is_dir() else None)
    samples = SHARED / "samples" if (SHARED / "samples").is_dir() else None
    model = registry.load(model_id)
    result = probe_check(model, n, real, samples)
    card = ModelRegistry(registry.weights_dir, device=registry.device).card(model_id)  # as on disk now
    record = dict(card.ood or {}) | {"detection": result}
    write_manifest_entry(registry.weights_dir, replace(card, extra=card.extra | {"ood": record}))
    return result
