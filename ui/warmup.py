"""The library's warm-up: what the pages' first visits would compute, done in the background.

On a fresh install the first visit of Similar cases used to embed every library X-ray and the
first visit of Survival and prognosis to run the prognosis and survival models over the
cohort (tens of seconds each). Right after the first-launch demo build, and at a launch where
the library lacks some of that derived data (after an import, or new weights), one background
thread per process and library computes it and stores it in the library, where the pages find
it; its first step prepares the process itself:

1. the 3D Grad-CAM: one COVID3D map of a small phantom CT, kept nowhere. The first Grad-CAM of
   a process imports Captum (which brings matplotlib and IPython: 0.7-1.1 s on 2 cores, several
   seconds under load) and is the model's first backward pass; without this step the
   presenter's first CT map, or the first analysis of the CT page, waited for both;
2. the similar-case search embeddings of the reference model (:func:`index_library`);
3. the survival and prognosis models' predictions over the Kaplan-Meier cohorts
   (:func:`stratify` stores them with ``put_scores``);
4. the trajectories' scores: COVID3D's s of every CT and the X-ray model's P(COVID-19) of
   every X-ray (:func:`score_library`).

Steps 2-4 are incremental (only what is missing for the current weights is computed), so a
warm-up of a complete library loads the models, draws the one map (its cost is the process's,
not the library's) and finds nothing else to do. Sessions arriving meanwhile watch the same
warm-up (Home shows its progress); pages visited during it compute what they need as before
and reuse whatever it has stored. Models come from :mod:`ui.resources`, so they are loaded once
per process for the warm-up and the pages alike. A step that fails is reported in plain words
and the others still run. ``DASHBOARD_WARM_UP=0`` switches it off.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from core.ct.preprocess import prepare_volume
from core.demo.ct_phantom.generate import generate_ct
from core.errors import DashboardError
from core.explain.gradcam3d import covid3d_with_cam
from core.library.store import CaseLibrary, open_library
from core.models.registry import ModelRegistry
from core.review.model_read import default_model_id
from core.search.embeddings import REFERENCE_MODEL, index_library
from core.survival.analysis import model_role_ids, role_of, stratify
from core.survival.cohort import library_patients
from core.trajectory.scores import score_library
from core.types import Progress
from ui import resources
from ui.search import INDEXING

logger = logging.getLogger(__name__)

THREAD_NAME = "library-warm-up"
#: Threads that use the process's cached resources outside a page's script: this one, and the
#: first-launch build's (ui/library.py), which starts the warm-up when it is done.
_BACKGROUND_THREADS = frozenset({THREAD_NAME, "demo-library-build"})
#: The Kaplan-Meier analyses whose model predictions the Survival page shows or offers.
SURVIVAL_ANALYSES: tuple[tuple[str, str], ...] = (
    ("discharge", "model"),
    ("discharge", "model-1scan"),
    ("death", "model"),
)
#: The models the Trajectories page picks first (as it does: these ids when registered).
TRAJECTORY_CT_MODEL, TRAJECTORY_XRAY_MODEL = "covid3d", "cxr-resnet18"
#: The phantom CT the 3D Grad-CAM is drawn on: the smallest the phantom code makes. Every series
#: is resampled to the model's own grid (:func:`prepare_volume`), so the model computes on the
#: same shapes as for a real CT of any size.
CAM_PHANTOM_SHAPE = (16, 32, 32)


class _FromWarmUpThread(logging.Filter):
    """Streamlit warns at each cached call made outside a page's script ("missing
    ScriptRunContext"); the background threads' calls are meant to be so."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName not in _BACKGROUND_THREADS


logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_FromWarmUpThread())


@dataclass
class WarmUp:
    """A warm-up of one library, run by a background thread and watched by any page."""

    path: str
    key: tuple[object, ...]  # the library's size and the models' weights it was started for
    step: str = "Starting"  # what it is doing now, in words (with done / total: "... 120 of 400 images")
    unit: str = ""
    done: int = 0
    total: int = 0
    steps_done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # plain lines: images that could not be read, failed steps
    finished: bool = False

    @property
    def text(self) -> str:
        """The progress line Home shows."""
        if self.total:
            return f"{self.step}: {self.done} of {self.total} {self.unit}"
        return f"{self.step}..."

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


_WARMUPS: dict[str, WarmUp] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    """False when ``DASHBOARD_WARM_UP`` is 0, no or off."""
    return os.environ.get("DASHBOARD_WARM_UP", "1").strip().lower() not in ("0", "no", "off", "false")


def _key(library: CaseLibrary, registry: ModelRegistry) -> tuple[object, ...]:
    counts = library.counts()
    return (counts.studies, tuple(sorted((c.id, c.sha256) for c in registry.cards())))


def current(path: str) -> WarmUp | None:
    """The warm-up of ``path`` started in this process, if any (running or finished)."""
    with _LOCK:
        return _WARMUPS.get(path)


def start(path: str, library: CaseLibrary | None = None) -> WarmUp | None:
    """The warm-up of the library at ``path``: the one running, the finished one when the library
    and the weights have not changed since, or a new one started in a background thread.

    None when warm-ups are switched off or the library or the model registry cannot be read (the
    pages say why themselves).
    """
    if not enabled():
        return None
    try:
        registry = resources.registry()
        key = _key(library or open_library(path), registry)
    except DashboardError:
        return None
    with _LOCK:
        warm = _WARMUPS.get(path)
        if warm is not None and (not warm.finished or warm.key == key):
            return warm
        warm = _WARMUPS[path] = WarmUp(path, key)
        threading.Thread(target=_run, args=(warm, registry), name=THREAD_NAME, daemon=True).start()
        return warm


def _steps(warm: WarmUp, registry: ModelRegistry, library: CaseLibrary) -> list[tuple[str, Callable[[], None]]]:
    """The warm-up's steps, in the order a presentation needs them: (what, do it)."""

    def progress(step: str, unit: str) -> Progress:
        def report(done: int, total: int) -> None:
            warm.step, warm.unit, warm.done, warm.total = step, unit, done, total

        return report

    steps: list[tuple[str, Callable[[], None]]] = []
    ct_models = registry.ids("ct-volume")
    if ct_models:
        # The models the presenter's CT Grad-CAM uses (the Case review page's: demo patients', real ones').
        cam_ids = list(dict.fromkeys(default_model_id(registry, "CT", domain) for domain in ("demo", "real")))

        def gradcam() -> None:
            hu = generate_ct("COVID-19", 0.5, seed=0, shape=CAM_PHANTOM_SHAPE).hu
            for model_id in cam_ids:
                model = resources.model(model_id)
                covid3d_with_cam(model, prepare_volume(hu, model.card.input))

        # First: about a second whatever the library's size, and a presentation may start at once.
        steps.append(("the 3D Grad-CAM", gradcam))

    xray_classifiers = registry.classifier_ids("xray")
    if xray_classifiers:
        search_id = REFERENCE_MODEL if REFERENCE_MODEL in xray_classifiers else xray_classifiers[0]

        def embeddings() -> None:
            with INDEXING:  # a Similar cases visit under way waits, then finds the images embedded
                report = index_library(
                    library,
                    resources.model(search_id),
                    progress=progress("Preparing the library for fast searches", "images"),
                )
            warm.problems += [f"Not searchable: {p}" for p in report.problems[:20]]

        steps.append(("the similar-case search", embeddings))

    roles = model_role_ids(registry)
    analyses = [(e, g) for e, g in SURVIVAL_ANALYSES if role_of(e, g) in roles]
    if analyses:

        def survival() -> None:
            models = {role: resources.model(model_id) for role, model_id in roles.items() if role != "s"}
            warm.step, warm.total = "Preparing survival and prognosis: reading the cohort", 0
            patients = library_patients(library)
            for endpoint, grouping in analyses:
                model = models[str(role_of(endpoint, grouping))]
                stratify(
                    patients,
                    endpoint,
                    grouping,
                    models=models,
                    library=library,
                    progress=progress(f"Preparing survival and prognosis ({model.id})", "patients"),
                )

        steps.append(("survival and prognosis", survival))

    covid_xray = [c.id for c in registry.cards("xray") if "COVID-19" in c.labels]
    for ids, default, unit in (
        (ct_models, TRAJECTORY_CT_MODEL, "CT scans"),
        (covid_xray, TRAJECTORY_XRAY_MODEL, "X-rays"),
    ):
        if not ids:
            continue
        # The Trajectories page's first choice; for CTs also the Survival page's s(t) model.
        wanted = [default if default in ids else ids[0]] + ([roles["s"]] if unit == "CT scans" and "s" in roles else [])
        model_ids = list(dict.fromkeys(wanted))

        def scores(model_ids: list[str] = model_ids, unit: str = unit) -> None:
            for model_id in model_ids:
                report = score_library(
                    library, resources.model(model_id), progress=progress(f"Preparing trajectories ({model_id})", unit)
                )
                warm.problems += [f"Not scored by {model_id}: {p}" for p in report.problems[:20]]

        steps.append((f"the trajectories of {unit}", scores))
    return steps


def _run(warm: WarmUp, registry: ModelRegistry) -> None:
    try:
        library = open_library(warm.path)
        steps = _steps(warm, registry, library)
    except DashboardError as e:
        warm.problems.append(f"The library could not be prepared: {e}")
        steps = []
    for what, step in steps:
        warm.step, warm.unit, warm.done, warm.total = f"Preparing {what}", "", 0, 0
        try:
            step()
        except DashboardError as e:
            warm.problems.append(f"Preparing {what} failed: {e}")
        except Exception as e:  # a bug: say so in words; the log gets its type and stack, not its message
            logger.error(
                "The library warm-up of %s failed: %s\n%s",
                what,
                type(e).__name__,
                "".join(traceback.format_tb(e.__traceback__)),
            )
            warm.problems.append(
                f"Preparing {what} failed unexpectedly ({type(e).__name__}); its page computes it on its first visit."
            )
        else:
            warm.steps_done.append(what)
    warm.finished = True
