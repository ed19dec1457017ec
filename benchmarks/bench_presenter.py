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

With ``--cam`` the Grad-CAM toggle is on throughout (the maps are computed on first visits).
The browser's own drawing time is not counted. Each case is revealed before it is timed, so
the s(t) curve and the similar patients' diagnoses are drawn as well. Prints each run and the
medians. The library is used as it is: a case review writes nothing but the reveal state of
the demo meeting's cases (and scores the page would store anyway); use a copy to keep it as it
was.

    python benchmarks/bench_presenter.py [--library data/library] [--cam] [--cases 8]
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


def timed(at: AppTest, step: str) -> float:
    """Seconds one script run takes; a line on stderr when the page showed an error."""
    start = time.perf_counter()
    at.run()
    took = time.perf_counter() - start
    shown = [e.value for e in at.error] + [e.message for e in at.exception]
    if shown:
        print(f"{step}: {shown}", file=sys.stderr)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--library", type=Path, default=Path(os.environ.get("DASHBOARD_LIBRARY", ROOT / "data" / "library"))
    )
    parser.add_argument("--cam", action="store_true", help="Grad-CAM toggle on")
    parser.add_argument("--cases", type=int, default=8, help="the first N cases of the demo meeting")
    args = parser.parse_args()
    os.environ["DASHBOARD_LIBRARY"] = str(args.library)
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
    if args.cam:
        at.toggle(key="review_cam").set_value(True)
        timed(at, "Grad-CAM on")

    times: dict[str, list[float]] = {"first visit": [], "second visit": [], "CT, first": [], "CT, second": []}

    def ct_switch(case_index: int, which: str) -> None:
        case = cases[case_index]
        patient = library.patient(case.pseudonym)
        cts = [s for s in patient.studies if s.modality == "CT" and s.images]
        key = f"review_study_{case.id}"
        if not cts or case.study_id is not None or not any(s.key == key for s in at.selectbox):
            return
        at.selectbox(key=key).set_value(cts[-1].id)
        times[f"CT, {which}"].append(timed(at, f"{case.pseudonym} CT {which}"))
        at.selectbox(key=key).set_value(patient.studies[-1].id)
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


if __name__ == "__main__":
    main()
