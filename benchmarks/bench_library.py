"""Demo cohort and case library speed: generation, import, queries.

Prints medians for drawing one CT and one X-ray phantom and simulating the cohort; wall times
for ``demo build`` (the cohort on disk in real formats), the Cohen import of that folder (the
long way: every file read and de-identified) and the app's first-launch build
(``build_demo_library``, the short way); and medians (ms) for the queries the pages make.
Targets on this 2-core machine: ``demo build`` of the default cohort < 60 s; first launch
(the app's build) well under 90 s.

    python benchmarks/bench_library.py [--patients 200] [--repeats 15] [--workers N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_ms  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    from core.demo.build import build_demo_cohort
    from core.demo.cohort import simulate_cohort
    from core.demo.ct_phantom import CT_SHAPE, generate_ct
    from core.demo.xray_phantom import generate_xray
    from core.library.demo import build_demo_library
    from core.library.importers import import_cohen
    from core.library.records import PatientFilter
    from core.library.store import open_library

    print(f"# generation (medians of {args.repeats})")
    print(f"CT phantom {CT_SHAPE}: {median_ms(lambda: generate_ct('COVID-19', 0.7, 1), args.repeats):8.1f} ms")
    print(f"X-ray phantom 256 px:        {median_ms(lambda: generate_xray('COVID-19', 0.7, 1), args.repeats):8.1f} ms")
    sim = median_ms(lambda: simulate_cohort(args.patients), args.repeats)
    print(f"simulate {args.patients} patients (no images): {sim:8.1f} ms")

    scratch = Path(tempfile.mkdtemp(prefix="bench-library-"))
    try:
        seconds, built = timed(lambda: build_demo_cohort(scratch / "cohort", args.patients, workers=args.workers))
        n_studies = built.n_xrays + built.n_cts
        print(f"\n# wall times, {args.patients} patients, {n_studies} studies ({built.n_cts} CT series)")
        print(f"demo build (to disk):                 {seconds:6.1f} s   (target < 60 s)")
        lib = open_library(scratch / "imported")
        seconds, report = timed(
            lambda: import_cohen(lib, scratch / "cohort", include_lateral=True, workers=args.workers)
        )
        print(
            f"cohen import of it (de-identified):   {seconds:6.1f} s   ({report.added_studies / seconds:.0f} studies/s)"
        )
        seconds, _ = timed(lambda: import_cohen(lib, scratch / "cohort", include_lateral=True, workers=args.workers))
        print(f"the same import again (all known):    {seconds:6.1f} s")
        seconds, _ = timed(lambda: build_demo_library(scratch / "direct", args.patients, workers=args.workers))
        print(f"first-launch build (the app's):       {seconds:6.1f} s   (target well under 90 s)")

        direct = open_library(scratch / "direct")
        patients = direct.patients()
        some = [p.pseudonym for p in patients[:: max(1, len(patients) // 20)]]
        first_image = direct.patient(some[0]).studies[0].images[0].id
        covid = PatientFilter(labels=("COVID-19",), modality="CT", min_studies=3)
        print(f"\n# queries on {len(patients)} patients (medians of {args.repeats}, ms)")
        print(f"counts():                          {median_ms(direct.counts, args.repeats):8.2f}")
        print(f"patients():                        {median_ms(direct.patients, args.repeats):8.2f}")
        print(f"patients(COVID-19, CT, >= 3):      {median_ms(lambda: direct.patients(covid), args.repeats):8.2f}")
        it = iter(some * (args.repeats + 1))
        print(f"patient(pseudonym) with studies:   {median_ms(lambda: direct.patient(next(it)), args.repeats):8.2f}")
        print(
            f"thumbnail(image):                  {median_ms(lambda: direct.thumbnail(first_image), args.repeats):8.2f}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
