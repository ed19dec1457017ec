"""Crashes lose nothing: the library commands killed (-9) at seeded random points, two writers at once.

After a kill the library must open, pass SQLite's integrity check and show no half-stored study
(a study without images, an image without its files); running the command again must finish
the work with the same counts as a run that was never interrupted (no duplicates).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.cli.main import main
from core.demo.build import build_demo_cohort
from core.demo.xray_phantom import generate_xray
from core.library import store
from core.library.demo import build_demo_library, needs_demo_build
from core.library.importers import add_upload, import_source
from core.library.records import ImportReport
from core.library.store import DATABASE_NAME, LibraryError, open_library
from tests.helpers import ROOT, register_tiny_model

PATIENTS = 3
#: The child imports everything first and says so: the kill delay then falls in the command's work
#: (about 1 s here), not in Python's start-up.
CHILD = "import sys, core.cli.library; from core.cli.main import main; print('ready', flush=True); sys.exit(main(sys.argv[1:]))"
#: Kill points per command: import and build-demo are killed once a seeded random number of
#: studies is stored (and a few ms more); index and score write their results in one batch at this
#: size, so one point each, a seeded random delay after "ready" (they take about 1 s here).
KILLS = {"import": 2, "build-demo": 2, "index": 1, "score": 1}
MAX_DELAY_S = 1.2
TABLES = ("patients", "studies", "images", "embeddings", "pixel_digests", "scores")


def table_counts(root: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(root / DATABASE_NAME)) as con:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def assert_whole(root: Path) -> None:
    """The library opens, SQLite finds it intact, and every visible study is whole."""
    if not (root / DATABASE_NAME).exists():
        return  # killed before it created the library: nothing to check
    lib = open_library(root, create=False)
    with contextlib.closing(sqlite3.connect(root / DATABASE_NAME)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        bare_studies = (
            "SELECT COUNT(*) FROM studies s WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.study_id = s.id)"
        )
        assert con.execute(bare_studies).fetchone()[0] == 0
        bare_patients = (
            "SELECT COUNT(*) FROM patients p WHERE NOT EXISTS (SELECT 1 FROM studies s WHERE s.patient_id = p.id)"
        )
        assert con.execute(bare_patients).fetchone()[0] == 0
    for ref in lib.image_refs():
        record = lib.image_record(ref.image_id)
        files = lib.image_files(record)
        assert len(files) == record.n_files and all(data for _, data in files)


@pytest.fixture
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted runs: a demo cohort on disk, tiny weights, and the library after each command."""
    top = tmp_path_factory.mktemp("crash")
    build_demo_cohort(top / "cohort", PATIENTS, 0, workers=1)
    register_tiny_model(top / "weights", "cxr-resnet18")
    out = {"cohort": top / "cohort", "weights": top / "weights", "empty": top / "empty"}
    for stage, before in (("import", "empty"), ("index", "import"), ("score", "index")):
        if before != "empty":
            shutil.copytree(out[before], top / stage)
        out[stage] = top / stage
        assert main(argv(stage, out, top / stage)) == 0
    out["build-demo"] = Path(build_demo_library(top / "build-demo", PATIENTS, workers=1).library)
    return out


def argv(command: str, stages: dict[str, Path], library: Path) -> list[str]:
    model = ["--weights", str(stages["weights"]), "--device", "cpu"]
    return {
        "import": ["library", "import", "--format", "cohen", str(stages["cohort"]), "--workers", "1"],
        "index": ["library", "index", *model],
        "score": ["library", "score", "--model", "cxr-resnet18", *model],
        "build-demo": ["library", "build-demo", "--patients", str(PATIENTS), "--workers", "1"],
    }[command] + ["--library", str(library)]


def start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill takes any worker with it
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def wait_for_studies(lib: Path, n: int, child: subprocess.Popen[str]) -> None:
    """Return once the library being written holds ``n`` studies, or the child has ended."""
    while child.poll() is None:
        with contextlib.suppress(sqlite3.Error):  # not created yet (read-only: polling creates nothing)
            with contextlib.closing(sqlite3.connect(f"file:{lib / DATABASE_NAME}?mode=ro", uri=True)) as con:
                if con.execute("SELECT COUNT(*) FROM studies").fetchone()[0] >= n:
                    return
        time.sleep(0.01)


#: What each command starts from: nothing, or the library the previous command left.
START = {"import": "empty", "index": "import", "score": "index", "build-demo": "empty"}


def test_commands_killed_at_random_points_leave_a_whole_library_and_a_rerun_completes_it(
    stages: dict[str, Path], tmp_path: Path
) -> None:
    # One test for every kill point, so that the uninterrupted runs above are made once per
    # test session, not once per xdist worker that gets one of the points.
    for command, n in KILLS.items():
        for point in range(n):
            lib = tmp_path / f"{command}-{point}"
            if START[command] != "empty":
                shutil.copytree(stages[START[command]], lib)
            rng = random.Random(f"{command}/{point}")
            child = start(argv(command, stages, lib))
            if command in ("import", "build-demo"):  # mid-way, whatever the machine's speed
                wait_for_studies(lib, rng.randint(1, table_counts(stages[command])["studies"] - 1), child)
                time.sleep(rng.uniform(0.0, 0.05))
            else:  # one batch: before, during or after it
                time.sleep(rng.uniform(0.0, MAX_DELAY_S))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            assert_whole(lib)
            cut_short = (lib / DATABASE_NAME).exists() and table_counts(lib) != table_counts(stages[command])
            if command == "build-demo" and cut_short:
                assert needs_demo_build(lib)  # the app's next launch resumes the build
            assert main(argv(command, stages, lib)) == 0
            assert_whole(lib)
            assert table_counts(lib) == table_counts(stages[command]), (command, point)
            if command == "build-demo":
                assert not needs_demo_build(lib)


def test_the_app_adds_reviewed_cases_while_the_command_line_imports(cohen_dataset: Path, tmp_path: Path) -> None:
    lib_root = tmp_path / "lib"
    cli_side, app_side = open_library(lib_root), open_library(lib_root)  # two writers, one file
    imported: list[ImportReport] = []
    importer = threading.Thread(target=lambda: imported.append(import_source(cli_side, "cohen", cohen_dataset)))
    importer.start()
    added = []
    for n in range(4):  # distinct images: each one a new case
        png = generate_xray("COVID-19", 0.5, seed=100 + n, size=64).to_png()
        added.append(add_upload(app_side, [(f"case-{n}.png", png)], modality="X-ray", label="COVID-19"))
    importer.join(timeout=120)
    (report,) = imported
    assert report.added_studies > 0
    counts = table_counts(lib_root)
    assert counts["studies"] == report.added_studies + len(added)
    assert counts["patients"] == report.added_patients + len(added)
    assert_whole(lib_root)


def test_a_writer_waits_for_another_programs_write_and_says_so(tmp_path: Path, chest_png: bytes, caplog) -> None:
    lib = open_library(tmp_path / "lib")
    other = sqlite3.connect(lib.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock for 1.5 s
    threading.Timer(1.5, other.execute, ("COMMIT",)).start()
    with caplog.at_level(logging.WARNING, logger="core.library.store"):
        add_upload(lib, [("chest.png", chest_png)], modality="X-ray", label="Normal")
    other.close()
    assert lib.counts().studies == 1
    assert any("busy with another writer; waiting" in r.getMessage() for r in caplog.records)


def test_a_write_that_waited_too_long_is_a_plain_error_and_stores_nothing(
    tmp_path: Path, chest_png: bytes, monkeypatch
) -> None:
    monkeypatch.setattr(store, "_WAIT_S", 0.3)
    monkeypatch.setattr(store, "_QUIET_WAIT_S", 0.1)
    lib = open_library(tmp_path / "lib")
    other = sqlite3.connect(lib.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(LibraryError, match="is busy: another program is writing to it"):
        add_upload(lib, [("chest.png", chest_png)], modality="X-ray", label="Normal")
    other.execute("ROLLBACK")
    other.close()
    assert lib.counts().studies == 0 and not any((tmp_path / "lib" / "files").rglob("*.png"))
