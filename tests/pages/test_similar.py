"""The Similar cases page: a library case or an upload as the query, result cards with each
patient's series in time order, filters, the compare view and the "about this search" panel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "similar.py")
CARD = re.compile(r"^#### (\d+)\. (\S+) · similarity ([0-9.]+)$")


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path, library_copy: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    return AppTest.from_file(PAGE, default_timeout=120)


def cards(at: AppTest) -> list[tuple[int, str, float]]:
    """(rank, pseudonym, similarity) of each result card, in page order."""
    out = []
    for md in at.markdown:
        m = CARD.match(md.value)
        if m:
            out.append((int(m[1]), m[2], float(m[3])))
    return out


def search_with_case(at: AppTest, pseudonym: str | None = None) -> AppTest:
    at.run()
    at.radio(key="similar_source").set_value("A library case").run()
    if pseudonym:
        at.selectbox(key="similar_case_patient").set_value(pseudonym).run()
    assert not at.exception, at.exception
    return at


def test_library_case_gives_n_patients_with_their_series(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    app.slider(key="similar_k").set_value(3).run()
    search_with_case(app)
    query_patient = app.selectbox(key="similar_case_patient").value
    found = cards(app)
    assert [rank for rank, _, _ in found] == [1, 2, 3]
    names = [name for _, name, _ in found]
    assert len(set(names)) == 3 and query_patient not in names
    sims = [sim for _, _, sim in found]
    assert sims == sorted(sims, reverse=True)
    # Each card shows every study of its patient (thumbnail captions), one "matched".
    captions = [c.value for c in app.caption if re.match(r"^(\*\*matched\*\* · )?day ", c.value)]
    assert len(captions) == sum(len(lib.patient(n).studies) for n in names)
    assert sum("**matched**" in c for c in captions) == 3
    # Notes of every session are on the page.
    notes = " ".join(md.value for md in app.markdown)
    for n in names:
        for study in lib.patient(n).studies:
            assert (study.note or "No note.")[:40] in notes


def test_series_are_in_time_order(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    search_with_case(app)
    captions = iter(c.value for c in app.caption if re.match(r"^(\*\*matched\*\* · )?day ", c.value))
    for _, name, _ in cards(app):
        studies = lib.patient(name).studies
        shown = [next(captions) for _ in studies]
        days = [float(re.search(r"day ([0-9.]+) ·", c)[1]) for c in shown]
        assert days == sorted(days)
        assert days == [s.day for s in studies]


def test_include_query_patient(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    n_patients = lib.counts().patients
    # A patient with another X-ray besides the query, so that it can come back when asked for.
    query_patient = next(p.pseudonym for p in lib.patients() if p.n_xray >= 2)
    app.run()
    app.slider(key="similar_k").set_value(20).run()
    search_with_case(app, query_patient)
    assert query_patient not in [n for _, n, _ in cards(app)]
    assert len(cards(app)) == n_patients - 1
    app.checkbox(key="similar_include_query").check().run()
    assert query_patient in [n for _, n, _ in cards(app)]
    assert len(cards(app)) == n_patients


def test_filters_restrict_the_results(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    labels = {p.pseudonym: p.label for p in lib.patients()}
    search_with_case(app)
    app.multiselect(key="similar_labels").set_value(["COVID-19"]).run()
    assert not app.exception
    found = [n for _, n, _ in cards(app)]
    assert found and all(labels[n] == "COVID-19" for n in found)
    app.multiselect(key="similar_outcomes").set_value(["died"]).run()
    died = {p.pseudonym for p in lib.patients() if p.outcome == "died" and p.label == "COVID-19"}
    assert {n for _, n, _ in cards(app)} <= died
    if not died:
        assert any("No patient passes the filters" in w.value for w in app.warning)


def test_upload_not_in_the_library(app: AppTest, chest_png: bytes) -> None:
    app.run()
    app.file_uploader(key="similar_upload").upload("chest.png", chest_png, "image/png").run()
    assert not app.exception, app.exception
    assert any("not in the library" in c.value for c in app.caption)
    assert len(cards(app)) == 5


def test_upload_of_a_library_image_is_recognised(app: AppTest, library_copy: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    from core.io.images import read_xray
    from core.library.store import open_library

    lib = open_library(library_copy)
    ref = lib.image_refs(("xray",))[0]
    _, data = lib.image_files(lib.image_record(ref.image_id))[0]
    # Same pixels, other bytes: the stored (de-identified) file's pixels as a 16-bit TIFF.
    pixels = read_xray(data).pixels
    assert pixels.min() >= 0 and pixels.max() < 65536
    buf = io.BytesIO()
    Image.fromarray(np.rint(pixels).astype(np.uint16)).save(buf, format="TIFF")
    app.run()
    app.slider(key="similar_k").set_value(20).run()
    app.file_uploader(key="similar_upload").upload("again.tiff", buf.getvalue(), "image/tiff").run()
    assert not app.exception, app.exception
    assert any(ref.patient_pseudonym in i.value and "same pixels" in i.value for i in app.info)
    assert ref.patient_pseudonym not in [n for _, n, _ in cards(app)]


def test_x_ray_page_images_are_offered(app: AppTest, chest_png: bytes) -> None:
    app.session_state["shared_xrays"] = [("from-triage.png", chest_png)]
    app.run()
    assert not app.exception, app.exception
    assert not any("Upload a chest X-ray" in i.value for i in app.info)
    assert any("not in the library" in c.value for c in app.caption)
    assert len(cards(app)) == 5


def test_bad_upload_gets_a_plain_message(app: AppTest) -> None:
    app.run()
    app.file_uploader(key="similar_upload").upload("notes.pdf", b"%PDF-1.4 not an image", "application/pdf").run()
    assert not app.exception
    assert any("PDF" in e.value for e in app.error)
    app.radio(key="similar_source").set_value("A library case").run()
    assert not app.exception and cards(app)


def test_compare_view_and_about_panel(app: AppTest) -> None:
    search_with_case(app)
    charts = app.get("plotly_chart")
    assert len(charts) == 1
    options = app.selectbox(key="similar_compare").options
    assert sum(o.endswith("(matched)") for o in options) == 5
    app.selectbox(key="similar_compare").set_value(options[-1]).run()
    assert not app.exception
    app.toggle(key="similar_cam").set_value(False).run()
    assert not app.exception and len(app.get("plotly_chart")) == 1
    about = " ".join(md.value for md in app.markdown)
    assert "cosine" in about and "Same-patient hit rate" in about
    assert len(app.dataframe) == 1
    table = app.dataframe[0].value
    assert {"Precision@5", "Chance"} <= set(table.columns)
    assert ((table["Precision@5"] >= 0) & (table["Precision@5"] <= 1)).all()


def test_a_thumbnail_opens_the_stored_image_with_its_note(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    search_with_case(app)
    _, name, _ = cards(app)[0]
    study = next(s for s in lib.patient(name).studies if s.modality == "X-ray")
    app.button(key=f"open_1_{study.id}").click().run()
    assert not app.exception, app.exception
    texts = [md.value for md in app.markdown] + [t.value for t in app.get("text")]
    assert any(t.startswith(f"**{name}**") for t in texts)
    assert study.note is not None and study.note in " ".join(texts)
