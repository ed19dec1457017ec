"""The Survival and prognosis page on a 26-patient demo library (the smallest whose discharge
cohort has two sex groups of at least 5) with the tiny models of tests/survival_helpers.py:
the Kaplan-Meier tab's curves, the user's own grouping checked against
:func:`core.survival.analysis.stratify` run directly, the case report a user downloads for a
library patient, and the tab with the survival model alone.

The library is built once for the module and the page writes its stored predictions into it,
as the app does; what the page shows does not depend on whether they were stored already.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.errors import InsufficientDataError
from core.explain.overlay import render_overlay
from core.library.store import open_library
from core.models.manifest import write_manifest_entry
from core.models.registry import ModelRegistry
from core.survival.analysis import stratify
from core.survival.cohort import OutcomePatient, library_patients
from core.survival.predict import predict_survival
from core.text import percent
from tests.helpers import ROOT
from tests.report_helpers import Deferred, downloaded, without_bundle
from tests.survival_helpers import PROGNOSIS_IDS, SURVIVAL_ID, load_role_models, survival_weights  # noqa: F401

PAGE = str(ROOT / "pages" / "survival.py")
#: The first 26 patients of the demo cohort (seed 0): 5 women and 8 men with COVID-19 and two CTs.
KM_PATIENTS = 26
DISCHARGE = "Time to discharge (prognosis)"
DEATH = "Time to death (survival)"
#: Columns of the Kaplan-Meier tab per endpoint: (grouping, heading) as the page draws them.
COLUMNS = {
    DISCHARGE: (
        ("model", "2 scans (COVID3D prognosis)"),
        ("model-1scan", "1 scan (COVID3D prognosis)"),
        ("clinical", "Clinical factors (age, sex)"),
    ),
    DEATH: (("model", "CNN-LSTM over the X-rays"), ("clinical", "Clinical factors (age, sex)")),
}
ENDPOINTS = {DISCHARGE: "discharge", DEATH: "death"}
Y_TITLES = {"discharge": "Proportion still in hospital", "death": "Proportion alive"}
EXTERNAL = re.compile(r'(?:src|href)\s*=\s*["\']https?://')  # as tests/core/test_report.py


@pytest.fixture(scope="module")
def km_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.library.demo import build_demo_library

    root = tmp_path_factory.mktemp("km-page-library") / "library"
    build_demo_library(root, KM_PATIENTS, seed=0, workers=1)
    return root


@pytest.fixture(scope="module")
def patients(km_library: Path) -> list[OutcomePatient]:
    return library_patients(open_library(km_library, create=False))


@pytest.fixture(scope="module")
def models(survival_weights: Path) -> dict:  # noqa: F811
    """The page's model roles, loaded from the same folder (for stratify run directly)."""
    return load_role_models(survival_weights)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, survival_weights: Path, km_library: Path) -> AppTest:  # noqa: F811
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(survival_weights))
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(km_library))
    return AppTest.from_file(PAGE, default_timeout=120)


# --------------------------------------------------------------------------------------------
# Reading the page


def km_tab(at: AppTest):  # noqa: ANN201
    return next(t for t in at.tabs if t.label == "Kaplan-Meier risk groups")


def compare_columns(at: AppTest, endpoint_label: str) -> list:
    """The tab's comparison columns (as in COLUMNS), checked by their headings."""
    columns = list(km_tab(at).columns)[: len(COLUMNS[endpoint_label])]
    headings = [c.markdown[0].value if c.markdown else None for c in columns]
    assert headings == [f"**{title}**" for _, title in COLUMNS[endpoint_label]]
    return columns


def charts(block, key: str | None = None) -> list[dict]:  # noqa: ANN001
    """The plotly figures (spec JSON) of a block, or only the one whose key is ``key``."""
    found = block.get("plotly_chart")
    if key is not None:
        found = [c for c in found if c.proto.id.endswith(f"-{key}")]
    return [json.loads(c.proto.spec) for c in found]


def curves(spec: dict) -> list[dict]:
    """The Kaplan-Meier step curves of a figure (bands, censor marks and at-risk rows left out)."""
    return [t for t in spec["data"] if t.get("line", {}).get("shape") == "hv"]


def annotations(spec: dict) -> list[str]:
    return [a.get("text", "") for a in spec["layout"].get("annotations", [])]


def assert_km_figure(spec: dict, endpoint: str) -> None:
    """A Kaplan-Meier figure as a user sees it: curves of at least 5 patients each, the numbers
    at risk, the comparison in the corner and the endpoint's axis title."""
    names = [t["name"] for t in curves(spec)]
    assert names, "no curve"
    for name in names:
        n = re.match(r".+ \(n=(\d+), \d+ events?, ", name)
        assert n and int(n[1]) >= 5, name
    texts = annotations(spec)
    assert "<b>Number at risk</b>" in texts
    assert any(t.startswith(("log-rank p", "One group: nothing to compare")) for t in texts), texts
    assert spec["layout"]["yaxis"]["title"]["text"] == Y_TITLES[endpoint]


def assert_plain_sentence(text: str) -> None:
    """What a user reads when there is not enough data: a sentence, not a program's error."""
    for bad in ("Traceback", "Error", "Exception", 'File "', "<class", "NoneType"):
        assert bad not in text, text
    assert "\n" not in text.strip() and text[:1].isupper() and text.rstrip().endswith("."), text


def expected_groups(cohort) -> list[tuple[str, int, int, int]]:  # noqa: ANN001
    """(group, patients, events, censored) from a GroupedCohort's own lists, in its order."""
    rows = []
    for name in cohort.group_order:
        events = [e for g, e in zip(cohort.groups, cohort.events, strict=True) if g == name]
        if events:
            rows.append((name, len(events), sum(events), len(events) - sum(events)))
    return rows


def left_out_of_a_curve(library, models: dict, endpoint: str) -> set[str]:  # noqa: ANN001
    """Patients of the tab's comparison columns (stratify run directly, as the page runs it) whose
    group has too few patients for a curve and is left out of the analysis."""
    patients = library_patients(library)
    out = set()
    for grouping, _ in COLUMNS[next(k for k, v in ENDPOINTS.items() if v == endpoint)]:
        try:
            cohort = stratify(patients, endpoint, grouping, models=models, library=library)
            drawn = {g.name for g in cohort.analyse().groups}
        except InsufficientDataError:
            continue  # no analysis, no Kaplan-Meier section in the report
        out |= {p for p, g in zip(cohort.patients, cohort.groups, strict=True) if g not in drawn}
    return out


def grouping_table(at: AppTest) -> list[tuple[str, int, int, int]]:
    """The table under "Your own grouping"."""
    frames = [d.value for d in km_tab(at).dataframe if "group" in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in km_tab(at).dataframe]
    df = frames[0]
    return [
        (str(r.group), int(r.patients), int(r.events), int(r.censored))
        for r in df[["group", "patients", "events", "censored"]].itertuples()
    ]


# --------------------------------------------------------------------------------------------
# 1. The Kaplan-Meier tab


@pytest.mark.parametrize("endpoint_label", [DISCHARGE, DEATH])
def test_each_column_draws_a_kaplan_meier_figure_where_the_cohort_allows(
    app: AppTest, patients: list[OutcomePatient], endpoint_label: str
) -> None:
    endpoint = ENDPOINTS[endpoint_label]
    app.run()
    if endpoint_label != DISCHARGE:
        app.radio(key="surv_endpoint").set_value(endpoint_label).run()
    assert not app.exception, app.exception
    assert [e.value for e in km_tab(app).error] == []
    eligible = stratify(patients, endpoint, "age").patients  # the endpoint's cohort, whatever the grouping
    assert len(eligible) >= 13  # enough for a curve in every model column
    for column, (grouping, _) in zip(compare_columns(app, endpoint_label), COLUMNS[endpoint_label], strict=True):
        drawn = charts(column, f"km_{endpoint}_{grouping}")
        infos = [i.value for i in column.info]
        for text in infos:
            assert_plain_sentence(text)
        if grouping == "clinical":  # no model: the page must match stratify on the library
            try:
                analysis = stratify(patients, endpoint, "clinical").analyse()
            except InsufficientDataError as e:
                assert not drawn and infos == [str(e)], (endpoint, infos)
                continue
            assert len(drawn) == 1, (endpoint, infos)
            assert [t["name"].split(" (n=")[0] for t in curves(drawn[0])] == [g.name for g in analysis.groups]
        else:  # a model column: the cohort has enough patients for at least one curve
            assert len(drawn) == 1 and not infos, (endpoint, grouping, infos)
            n = sum(int(re.search(r"\(n=(\d+)", t["name"])[1]) for t in curves(drawn[0]))
            assert n <= len(eligible)
        assert_km_figure(drawn[0], endpoint)


def test_grouping_by_sex_shows_what_stratify_gives_and_the_death_endpoint_changes_the_cohort(
    app: AppTest, patients: list[OutcomePatient]
) -> None:
    from lifelines.statistics import logrank_test

    from core.survival.km_figure import format_p

    app.run()
    assert not app.exception, app.exception
    assert app.radio(key="surv_endpoint").value == DISCHARGE
    app.selectbox(key="surv_group_by").set_value("Sex").run()
    assert not app.exception, app.exception

    shown = {}
    for endpoint_label in (DISCHARGE, DEATH):
        endpoint = ENDPOINTS[endpoint_label]
        if endpoint_label == DEATH:
            app.radio(key="surv_endpoint").set_value(DEATH).run()
            assert not app.exception, app.exception
            assert app.selectbox(key="surv_group_by").value == "Sex"  # the grouping stays
        assert [e.value for e in km_tab(app).error] == []
        cohort = stratify(patients, endpoint, "sex")
        expected = expected_groups(cohort)
        assert [g for g, *_ in expected] == ["F", "M"] and min(n for _, n, _, _ in expected) >= 5

        (spec,) = charts(km_tab(app), "km_custom")
        assert_km_figure(spec, endpoint)
        names = [t["name"] for t in curves(spec)]
        assert len(names) == 2, names  # one curve per sex
        for name, (group, n, events, _) in zip(names, expected, strict=True):
            assert name.startswith(f"{group} (n={n}, {events} event"), (name, expected)
        d = np.array(cohort.durations)
        e = np.array(cohort.events)
        f, m = np.array(cohort.groups) == "F", np.array(cohort.groups) == "M"
        p = logrank_test(d[f], d[m], event_observed_A=e[f], event_observed_B=e[m]).p_value
        corner = next(t for t in annotations(spec) if "log-rank p" in t)
        assert corner.startswith(f"log-rank p {format_p(p)}"), (corner, p)

        assert grouping_table(app) == expected
        shown[endpoint] = expected
    assert shown["discharge"] != shown["death"]  # a different cohort, and the page says so


# --------------------------------------------------------------------------------------------
# 2. The case report of a library patient


def scan_counts(label: str) -> tuple[int, int]:
    """(X-rays, CTs) from a patient selectbox label: "P-... · COVID-19 · 4 X-rays, 3 CTs"."""
    n_xray, n_ct = re.search(r"(\d+) X-rays, (\d+) CTs$", label).groups()
    return int(n_xray), int(n_ct)


def assert_no_source_identifier(document: str, library) -> None:  # noqa: ANN001
    """Neither the demo cohort's patient ids (the library keeps only their pseudonyms) nor the
    library's secret, nor an external URL, is in the report."""
    from core.demo.cohort import simulate_cohort
    from core.library.demo import DEMO_SOURCE

    text = without_bundle(document)
    source_ids = [p.patient_id for p in simulate_cohort(KM_PATIENTS, 0)]
    # These are the ids the library pseudonymised (so the search below looks for the right thing).
    assert {library.pseudonym(DEMO_SOURCE, pid) for pid in source_ids} == {p.pseudonym for p in library.patients()}
    for pid in source_ids:
        assert pid not in text, pid
    assert not re.search(r"demo-\d{4}", text)
    secret = library.secret().hex()
    assert secret not in text.lower()
    assert EXTERNAL.findall(text) == []


def test_the_case_report_of_a_library_patient(
    app: AppTest,
    km_library: Path,
    survival_weights: Path,  # noqa: F811
    models: dict,
    deferred: dict[str, Deferred],
) -> None:
    registry = ModelRegistry(survival_weights, device=torch.device("cpu"))
    max_xrays = registry.card(SURVIVAL_ID).training["config"]["max_xrays"]
    library = open_library(km_library, create=False)
    app.run()
    assert not app.exception, app.exception
    # A COVID-19 patient whose whole X-ray series the CNN-LSTM reads, with CTs for both prognosis
    # models, and in a group with a curve in every column (the other case is the next test's).
    avoid = left_out_of_a_curve(library, models, "discharge")
    options = app.selectbox(key="surv_patient").options
    label = next(
        o
        for o in options
        if " · COVID-19 · " in o
        and scan_counts(o)[0] <= max_xrays
        and scan_counts(o)[1] >= 2
        and o.split(" · ")[0] not in avoid
    )
    app.selectbox(key="surv_patient").set_value(label).run()
    assert not app.exception, app.exception
    pseudonym = label.split(" · ")[0]
    assert pseudonym.startswith("P-")

    file_name, document = downloaded(app, "surv_report", deferred)
    assert file_name == f"case-report-{pseudonym}.html"
    # One HTML document.
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert document.count("<!DOCTYPE") == 1 and document.count("<html") == 1 and document.count("</html>") == 1
    assert f"<title>Case review: {pseudonym}</title>" in document
    assert f"<dd>{pseudonym}</dd>" in document

    # The models that made the numbers, by id and version.
    for model_id in (SURVIVAL_ID, PROGNOSIS_IDS[1], PROGNOSIS_IDS[2]):
        version = registry.card(model_id).version
        assert f"<td>{model_id}</td><td>{html.escape(version)}</td>" in document, model_id

    # One PNG per X-ray of the series, captioned with its day: the X-ray with the CNN-LSTM's
    # Grad-CAM as the page blends it (the default opacity), from the model called directly.
    xrays = library_patients(library, [pseudonym])[0].xrays()
    assert 1 <= len(xrays) <= max_xrays
    series = re.search(r"<h2>X-ray series with the CNN-LSTM&#x27;s Grad-CAM.*?</section>", document, re.S)
    assert series, "no X-ray series section"
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', series.group(0))
    assert [alt for _, alt in images] == [f"day {x.day:g}" for x in xrays]
    grays = [x.load() for x in xrays]
    pred = predict_survival(models["survival"], grays)
    assert f"P(survival) {percent(pred.probability)} over {len(xrays)} X-rays" in document
    for (data, alt), gray, heat in zip(images, grays, pred.maps, strict=True):
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).astype(int)
        expected = render_overlay(gray, heat, "Jet", app.slider(key="surv_opacity").value).astype(int)
        assert shown.shape == expected.shape, alt
        assert np.abs(shown - expected).max() <= 2, alt

    # The radiologist's notes of the patient's studies.
    notes = [s.note for s in library.patient(pseudonym).studies if s.note]
    assert notes
    for note in notes:
        assert html.escape(note) in document, note

    assert_no_source_identifier(document, library)


def test_the_case_report_of_a_patient_whose_group_is_too_small_for_a_curve(km_library: Path) -> None:
    """A Kaplan-Meier analysis leaves out a group of fewer than 5 patients (the page says so);
    the case report of a patient in that group must still be made, and say why there is no curve."""
    from core.case_reports.survival import PatientView, survival_case_report
    from core.report import render_report
    from core.survival.analysis import GroupedCohort

    library = open_library(km_library, create=False)
    pseudonym = library.patients()[0].pseudonym
    view = PatientView(library.patient(pseudonym), library_patients(library, [pseudonym])[0])
    cohort = GroupedCohort("discharge", "clinical", "a test grouping", ("Low risk", "High risk"))
    rng = np.random.default_rng(0)
    for i in range(12):
        cohort.add(f"other-{i}", float(rng.integers(1, 20)), bool(i % 3), "Low risk")
    cohort.add(pseudonym, 5.0, True, "High risk")
    cohort.add("other-high", 9.0, True, "High risk")
    analysis = cohort.analyse()
    assert [g.name for g in analysis.groups] == ["Low risk"]  # the 2-patient group is left out

    document = render_report(survival_case_report(view, {"clinical": (cohort, analysis)}, None, 0.5))
    assert f"<title>Case review: {pseudonym}</title>" in document
    assert "in the group &#x27;High risk&#x27;: 2 patients, too few for a curve" in document
    assert_no_source_identifier(document, library)


# --------------------------------------------------------------------------------------------
# 3. The survival model without the prognosis models


@pytest.fixture(scope="module")
def survival_only_weights(survival_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A weights folder with the CNN-LSTM alone (no COVID3D, no prognosis model)."""
    folder = tmp_path_factory.mktemp("survival-only-weights")
    card = ModelRegistry(survival_weights).card(SURVIVAL_ID)
    shutil.copy2(survival_weights / card.weights_file, folder / card.weights_file)
    write_manifest_entry(folder, card)
    return folder


def test_with_the_survival_model_alone_the_discharge_columns_say_which_model_is_missing(
    monkeypatch: pytest.MonkeyPatch, survival_only_weights: Path, km_library: Path, patients: list[OutcomePatient]
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(survival_only_weights))
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(km_library))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    assert not any("No survival or prognosis model is registered" in i.value for i in at.info)
    assert [m.label for m in at.metric if m.label == "P(survival), CNN-LSTM"]  # the Patient tab reads X-rays
    assert not [m for m in at.metric if m.label in ("1 scan", "2 scans (prior + this)")]

    two, one, clinical = compare_columns(at, DISCHARGE)
    for column, scans in ((two, 2), (one, 1)):
        (text,) = [i.value for i in column.info]
        assert_plain_sentence(text)
        assert "registered" in text and "prognosis" in text, text  # which model is missing, and why no curve
        assert re.search(rf"\b{scans}-scan\b|prognosis-{scans}\b", text), text
        assert not re.search(rf"\b{3 - scans}-scan\b|prognosis-{3 - scans}\b", text), text
        assert not charts(column)
    (spec,) = charts(clinical, "km_discharge_clinical")  # no model needed
    assert_km_figure(spec, "discharge")
    offered = at.selectbox(key="surv_group_by").options
    assert not {"Model risk", "Model risk, 1 scan", "Threshold on s(t)"} & set(offered), offered

    # The death endpoint is the CNN-LSTM's: its column and the user's grouping by it work.
    at.radio(key="surv_endpoint").set_value(DEATH).run()
    assert not at.exception, at.exception
    assert [e.value for e in km_tab(at).error] == []
    model_column, _ = compare_columns(at, DEATH)
    (spec,) = charts(model_column, "km_death_model")
    assert_km_figure(spec, "death")
    assert "Model risk" in at.selectbox(key="surv_group_by").options
    at.selectbox(key="surv_group_by").set_value("Model risk").run()
    assert not at.exception, at.exception
    (custom,) = charts(km_tab(at), "km_custom")
    assert_km_figure(custom, "death")
    rows = grouping_table(at)
    assert sum(n for _, n, _, _ in rows) <= len(stratify(patients, "death", "age").patients)
    for text in (i.value for i in km_tab(at).info):
        assert_plain_sentence(text)
