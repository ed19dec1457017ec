"""How long the Case review presenter view takes to show the next case (issue 20: <= 2 s).

Runs the page (``pages/review.py?present=1``) in AppTest with the shipped weights on a library
whose warm-up is done (search embeddings and trajectory scores stored; see ``ui/warmup.py``),
opens the demo meeting ("Teaching file: 8 demo patients") and steps through its cases with
Next, timing each script run:

- ``first visit``: a case seen for the first time in the session (its images read, its maps
  computed, its s(t) curve and similar patients looked up);
- ``second visit``: the same case again after stepping back with Previous (the session's memo);
- ``CT, first`` / ``CT, second``: for a patient with CTs, switching the study shown to their
  latest CT (the slice viewer; with ``--cam``, COVID3D's 3D Grad-CAM on it).

With ``--cam`` the Grad-CAM toggle is on throughout (the maps are computed on first visits),
and the seconds of each COVID3D 3D map computed are printed too: the first one of the process
apart from the later ones' median; with ``--cam-on-ct`` it is turned on while the first case
shows its latest CT, so the process's first Grad-CAM is a COVID3D map (otherwise it is the
X-ray model's, on the first case's X-ray). With ``--warm-up`` the library's warm-up
(``ui/warmup.py``) runs in this process before the page opens and is waited for, as in the app
once Home said the library is ready (without it, the process is as cold as one whose warm-up
is switched off).
The browser's own drawing time is not counted. Each case is revealed before it is timed, so
the s(t) curve and the similar patients' diagnoses are drawn as well. Prints each run and the
medians. The library is used as it is: a case review writes nothing but the reveal state of
the demo meeting's cases (and scores the page would store anyway); use a copy to keep it as it
was.

    python benchmarks/bench_presenter.py [--library data/library] [--cam [--cam-on-ct]] [--warm-up] [--cases 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402 - after the path is set

from core.library.demo import DEMO_MEETING_TITLE, add_demo_meeting, needs_demo_meeting  # noqa: E402
from core.library.store import open_library  # noqa: E402
from ui import review_present, warmup  # noqa: E402


def timed(at: AppTest, step: str) -> float:
    """Seconds one script run takes; a line on stderr when the page showed an error."""
    start = time.perf_counter()
    at.run()
    took = time.perf_counter() - start
    shown = [e.value for e in at.error] + [e.message for e in at.exception]
    if shown:
        print(f"{step}: {shown}", file=sys.stderr)
    return took


def time_ct_maps() -> list[float]:
    """Record the seconds of each COVID3D map the presenter computes (its cache misses)."""
    seconds: list[float] = []
    compute = review_present._covid3d_map

    def timed_map(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return compute(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    review_present._covid3d_map = timed_map
    return seconds


def warm_up(library: Path) -> None:
    """The library's warm-up in this process, waited for (what Home starts at launch)."""
    os.environ["DASHBOARD_WARM_UP"] = "1"
    start = time.perf_counter()
    warm = warmup.start(str(library))
    if warm is None:
        sys.exit("The warm-up did not start: the library or the weights cannot be read.")
    while not warm.finished:
        time.sleep(0.05)
    print(f"warm-up: {time.perf_counter() - start:.1f} s ({', '.join(warm.steps_done)})", flush=True)
    for problem in warm.problems:
        print(f"warm-up: {problem}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--library", type=Path, default=Path(os.environ.get("DASHBOARD_LIBRARY", ROOT / "data" / "library"))
    )
    parser.add_argument("--cam", action="store_true", help="Grad-CAM toggle on")
    parser.add_argument(
        "--cam-on-ct",
        action="store_true",
        help="with --cam: turn it on on the first case's CT (its first map is COVID3D's)",
    )
    parser.add_argument("--warm-up", action="store_true", help="run the library's warm-up first, in this process")
    parser.add_argument("--cases", type=int, default=8, help="the first N cases of the demo meeting")
    args = parser.parse_args()
    os.environ["DASHBOARD_LIBRARY"] = str(args.library)
    ct_maps = time_ct_maps()
    if args.warm_up:
        warm_up(args.library)
    os.environ["DASHBOARD_WARM_UP"] = "0"  # timed as once Home said ready: the warm-up's data are stored
    library = open_library(args.library)
    if needs_demo_meeting(library):
        add_demo_meeting(library)
    demo = next(m for m in library.meetings() if m.title == DEMO_MEETING_TITLE)
    cases = demo.cases[: args.cases]
    for case in cases:  # everything drawn: the s(t) curve and the strip's diagnoses too
        library.reveal(case.id, True)

    at = AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=600)
    at.query_params["present"] = "1"
    start = time.perf_counter()
    at.run()
    at.selectbox(key="review_meeting").set_value(demo.id)
    at.run()
    print(f"page opened (models loaded): {time.perf_counter() - start:.1f} s", flush=True)
    times: dict[str, list[float]] = {"first visit": [], "second visit": [], "CT, first": [], "CT, second": []}

    def ct_study(case_index: int) -> tuple[str, int, int] | None:
        """(the study selector's key, the patient's latest CT, the study shown first), or None
        when the case has no CT to switch to."""
        case = cases[case_index]
        patient = library.patient(case.pseudonym)
        cts = [s for s in patient.studies if s.modality == "CT" and s.images]
        key = f"review_study_{case.id}"
        if not cts or case.study_id is not None or not any(s.key == key for s in at.selectbox):
            return None
        return key, cts[-1].id, patient.studies[-1].id

    def ct_switch(case_index: int, which: str) -> None:
        study = ct_study(case_index)
        if study is None:
            return
        key, ct_id, shown_id = study
        at.selectbox(key=key).set_value(ct_id)
        took = timed(at, f"{cases[case_index].pseudonym} CT {which}")
        times[f"CT, {which}"].append(took)
        print(f"  {cases[case_index].pseudonym}'s CT, {which} visit: {took:.2f} s", flush=True)
        at.selectbox(key=key).set_value(shown_id)
        at.run()

    on_ct = ct_study(0) if args.cam and args.cam_on_ct else None
    if args.cam:
        if on_ct is not None:  # the process's first Grad-CAM is then COVID3D's
            at.selectbox(key=on_ct[0]).set_value(on_ct[1])
            at.run()
        at.toggle(key="review_cam").set_value(True)
        where = " (on the first case's CT)" if on_ct is not None else ""
        print(f"Grad-CAM on{where}: {timed(at, 'Grad-CAM on'):.2f} s", flush=True)
        if on_ct is not None:
            at.selectbox(key=on_ct[0]).set_value(on_ct[2])
            at.run()

    for i in range(len(cases)):
        if i:
            at.button(key="review_next").click()
            took = timed(at, f"case {i + 1} first")
        else:
            took = timed(at, "case 1 first")  # shown when the page opened: its rerun is already warm
        if i:
            times["first visit"].append(took)
        print(f"case {i + 1} ({cases[i].pseudonym}) first visit: {took:.2f} s", flush=True)
        if i or on_ct is None:  # with --cam-on-ct the first case's CT map is computed already
            ct_switch(i, "first")
    for i in range(len(cases) - 2, -1, -1):
        at.button(key="review_prev").click()
        took = timed(at, f"case {i + 1} second")
        times["second visit"].append(took)
        print(f"case {i + 1} ({cases[i].pseudonym}) second visit: {took:.2f} s", flush=True)
        ct_switch(i, "second")
    for case in cases:
        library.reveal(case.id, False)
    print(
        "medians"
        + (" (Grad-CAM on)" if args.cam else "")
        + ": "
        + ", ".join(f"{k} {statistics.median(v):.2f} s (n={len(v)})" for k, v in times.items() if v)
    )
    if ct_maps:
        later = (
            f", later ones {statistics.median(ct_maps[1:]):.2f} s (n={len(ct_maps) - 1})" if len(ct_maps) > 1 else ""
        )
        print(f"COVID3D maps computed by the page: the first {ct_maps[0]:.2f} s{later}")


if __name__ == "__main__":
    main()
