"""How much retrieving a CT series from a PACS adds to reading the same files from disk.

Starts a real Orthanc (``tests/pacs/orthanc.py``; Debian's ``orthanc`` and ``orthanc-dicomweb``)
on free loopback ports, stores a 64-slice 512 x 512 demo CT series in it (about 32 MB, written
as a hospital's DICOM), and times, each ``--repeats`` times:

- ``files``: reading the same DICOM files from a folder (``read_ct_path``), as ``predict-ct``;
- ``C-GET``: :func:`core.pacs.retrieve.retrieve_series` by DIMSE, then reading the bytes in memory
  (``read_ct_upload``), as the CT page does with a retrieved series;
- ``WADO-RS``: the same by DICOMweb.

Then the analysis the CT page runs on the volume (COVID3D with its 3D Grad-CAM and the slice
model, shipped weights), once per source, to put the retrieval next to the whole wait. Prints
each run, the medians, and each protocol's difference and ratio to the file read. Target
(issue 21): retrieval adds at most 1 s over the file read.

    python benchmarks/bench_pacs.py [--repeats 5] [--slices 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402 - after the path is set

from core.ct.analysis import analyse_ct  # noqa: E402
from core.demo.ct_phantom import generate_ct  # noqa: E402
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid  # noqa: E402
from core.io.ct_input import read_ct_path, read_ct_upload  # noqa: E402
from core.models.registry import ModelRegistry  # noqa: E402
from core.pacs.retrieve import retrieve_series  # noqa: E402
from tests.pacs.orthanc import Orthanc, orthanc_missing  # noqa: E402


def _timed(fn):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=64)
    args = parser.parse_args()
    missing = orthanc_missing()
    if missing:
        print(missing)
        return 1
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ct = generate_ct("COVID-19", 0.6, 2021, shape=(args.slices, 512, 512))
    patient = DicomPatient("BENCH^PATIENT", "BENCH-0001", "19600101", "F", 60)
    study = DicomStudy(new_uid("bench-pacs-study"), "BENCH-ACC", dt.date(2020, 5, 1))
    series_uid = new_uid("bench-pacs-series")
    files = ct_series_files(ct.hu, ct.spacing_mm, patient, study, series_uid=series_uid)
    size_mb = sum(len(d) for _, d in files) / 1e6
    print(f"series: {len(files)} slices of 512 x 512, {size_mb:.1f} MB")

    registry = ModelRegistry(ROOT / "weights", device=torch.device("cpu"))
    covid3d = registry.load("covid3d")
    slice_ids = [c.id for c in registry.cards() if c.input_kind == "ct-slice" and c.domain == "real"]
    slice_model = registry.load(slice_ids[0]) if slice_ids else None

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        for name, data in files:
            (folder / name).write_bytes(data)
        with Orthanc(Path(tmp) / "orthanc") as orthanc:
            orthanc.store(d for _, d in files)
            sources = {
                "files": lambda: read_ct_path(folder),
                "C-GET": lambda: read_ct_upload(
                    retrieve_series(orthanc.dimse, study.study_uid, series_uid, expected=len(files))
                ),
                "WADO-RS": lambda: read_ct_upload(
                    retrieve_series(orthanc.dicomweb, study.study_uid, series_uid, expected=len(files))
                ),
            }
            times: dict[str, list[float]] = {name: [] for name in sources}
            volumes = {}
            for name, read in sources.items():
                volumes[name] = read()  # warm-up: imports, connections, the page cache
            for i in range(args.repeats):
                for name, read in sources.items():  # interleaved, so a slow moment hits all three
                    _, seconds = _timed(read)
                    times[name].append(seconds)
                    print(f"run {i + 1} {name}: {seconds:.2f} s")
            analysis = {}
            for name, volume in volumes.items():
                _, analysis[name] = _timed(lambda v=volume: analyse_ct(v, covid3d, slice_model))
    same = all((v.hu == volumes["files"].hu).all() for v in volumes.values())
    base = statistics.median(times["files"])
    print(f"\nvolumes identical across sources: {same}")
    print(f"medians over {args.repeats} runs (read into a volume; analysis once per source, on the same volume):")
    for name in sources:
        m = statistics.median(times[name])
        extra = "" if name == "files" else f"   +{m - base:.2f} s over the files, x{m / base:.2f}"
        print(f"  {name:8s} {m:6.2f} s   analysis {analysis[name]:6.2f} s{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
