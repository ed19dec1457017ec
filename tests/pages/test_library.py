"""The Case library page: filter, open a timeline, import a dataset, add a reviewed upload."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo.xray_phantom import generate_xray
from tests.helpers import ROOT
from tests.library.test_importers import with_burned_in_text

PAGE = str(ROOT / "pages" / "library.py")


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def test_page_lists_patients_and_opens_a_timeline_in_time_order(library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    at = run_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == str(lib.counts().patients)
    assert at.subheader[0].value.startswith(f"{lib.counts().patients} of")
    # Open the patient with the most studies: every note shows, in time order.
    busiest = max(lib.patients(), key=lambda p: p.n_studies)
    at.selectbox(key="library_patient").set_value(busiest.pseudonym).run()
    assert not at.exception
    patient = lib.patient(busiest.pseudonym)
    shown = [md.value for md in at.markdown if "since admission" in md.value]
    assert len(shown) == len(patient.studies)
    days = [float(s.split("Day ")[1].split(" ")[0]) for s in shown]
    assert days == sorted(days)
    texts = " ".join(t.value for t in at.get("text")) + " ".join(md.value for md in at.markdown)
    assert patient.studies[0].note.split(".")[0] in texts


def test_filters_narrow_the_list(library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    at = run_page()
    at.multiselect(key="library_labels").set_value(["Normal"]).run()
    n_normal = sum(p.label == "Normal" for p in lib.patients())
    assert at.subheader[0].value.startswith(f"{n_normal} of")
    at.multiselect(key="library_labels").set_value([]).run()
    at.selectbox(key="library_modality").set_value("CT").run()
    n_ct = sum(p.n_ct > 0 for p in lib.patients())
    assert at.subheader[0].value.startswith(f"{n_ct} of")


def test_importing_a_dataset_from_the_page(
    library_copy: Path, cohen_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_DATA_ROOTS", str(cohen_dataset.parent))
    at = run_page()
    before = int(at.metric[0].value)
    at.text_input(key="library_import_path").set_value(str(cohen_dataset)).run()
    at.button(key="library_import").click().run()
    assert not at.exception
    assert any("Added 5 studies of 3 new patients" in s.value for s in at.success)
    assert any("row 7" in w.value for w in at.warning)
    at.run()
    assert int(at.metric[0].value) == before + 3


def test_a_missing_dataset_folder_gets_a_plain_error(
    library_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_DATA_ROOTS", str(tmp_path))
    at = run_page()
    at.text_input(key="library_import_path").set_value(str(tmp_path / "nowhere")).run()
    at.button(key="library_import").click().run()
    assert not at.exception
    assert any("metadata.csv" in e.value for e in at.error)


def test_adding_a_reviewed_upload(library_copy: Path, chest_png: bytes) -> None:
    at = run_page()
    before = int(at.metric[0].value)
    at.file_uploader(key="library_upload").set_value([("jane-doe.png", chest_png, "image/png")])
    at.selectbox(key="library_upload_label").set_value("COVID-19")
    at.text_area(key="library_upload_note").set_value("Reviewed: bilateral opacities.")
    at.run()
    at.button(key="library_upload_add").click().run()
    assert not at.exception
    assert any("Added as a study of patient P-" in s.value for s in at.success)
    at.run()
    assert int(at.metric[0].value) == before + 1
    # The same file again is recognised.
    at.button(key="library_upload_add").click().run()
    assert any("already" in e.value for e in at.error)


@pytest.mark.parametrize(
    ("kind", "words"),
    [("text", "is not a case library"), ("random", "is not a case library"), ("truncated", "is truncated")],
)
def test_a_library_file_that_is_not_a_library_is_one_plain_error_and_left_untouched(
    kind: str, words: str, demo_library: Path, tmp_path: Path, monkeypatch
) -> None:
    root = tmp_path / "not-a-library"
    root.mkdir()
    bad = root / "library.sqlite"
    if kind == "truncated":
        with contextlib.closing(sqlite3.connect(demo_library / "library.sqlite")) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = (demo_library / "library.sqlite").read_bytes()[:100_000]
    else:
        data = b"patient,label\n1,COVID-19\n" * 40 if kind == "text" else random.Random(19).randbytes(8192)
    bad.write_bytes(data)
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(root))
    at = run_page()
    (error,) = at.error
    assert str(bad) in error.value and words in error.value and "left untouched" in error.value
    assert not at.metric  # the page stopped at the error
    assert bad.read_bytes() == data and sorted(root.iterdir()) == [bad]


def test_adding_a_reviewed_upload_on_a_full_disk_is_a_plain_error_and_stores_nothing(
    library_copy: Path, chest_png: bytes, monkeypatch
) -> None:
    at = run_page()
    before = int(at.metric[0].value)
    connect = sqlite3.connect

    def full_disk(*args, **kwargs) -> sqlite3.Connection:
        con = connect(*args, **kwargs)
        con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
        return con

    at.file_uploader(key="library_upload").set_value([("chest.png", chest_png, "image/png")])
    at.run()
    monkeypatch.setattr(sqlite3, "connect", full_disk)
    at.button(key="library_upload_add").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"The case library at {library_copy} cannot be written: the disk is full (nothing of the last change was stored)."
    ]
    monkeypatch.setattr(sqlite3, "connect", connect)
    at.run()
    assert int(at.metric[0].value) == before


def test_adding_a_reviewed_upload_with_burned_in_text_warns_and_adds_it(library_copy: Path) -> None:
    png = with_burned_in_text(generate_xray("COVID-19", 0.5, 51, size=256).to_png())
    at = run_page()
    before = int(at.metric[0].value)
    at.file_uploader(key="library_upload").set_value([("Doe_Jane.png", png, "image/png")])
    at.run()
    at.button(key="library_upload_add").click().run()
    assert not at.exception
    assert any("Added as a study of patient P-" in s.value for s in at.success)
    pseudonym = at.success[0].value.split("patient ")[1].rstrip(".")
    (warning,) = [w.value for w in at.warning]
    assert "the pixels may carry identifiers" in warning and "check the image before sharing it" in warning
    assert "Doe_Jane" not in warning
    at.run()
    assert int(at.metric[0].value) == before + 1
    # Whoever opens the patient later sees the flag on the study.
    at.selectbox(key="library_patient").set_value(pseudonym).run()
    assert any("The pixels may carry identifiers" in w.value for w in at.warning)
