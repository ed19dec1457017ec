"""AppTest for the Model performance page.

On the shipped demo weights (their cards record the held-out split, which the page rebuilds):
the default model's numbers equal the ones recorded at training time, the threshold slider
moves sensitivity and specificity, two X-ray models are compared, the findings and survival
models show what they can. On tiny CT models and a drawn demo CT dataset: the CT levels and the
window-robustness band. Bad input gives a plain error. The Readers tab: the figures of reads
recorded in two case-review meetings, narrowed to one, and plain messages where there is no read
or no case library to read them from.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.store import DATABASE_NAME, open_library
from core.models.registry import ModelRegistry
from core.review.summary import COVID_QUESTION, kappa_text, meeting_summary, share_text
from tests.helpers import ROOT
from tests.pages.test_review_summary import record_two_meetings
from ui.review_summary import ACCURACY, KAPPA, SENSITIVITY

PAGE = str(ROOT / "pages" / "performance.py")
DATASET = "A dataset on this computer"


@pytest.fixture
def app() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=300)


def readers_tab(app: AppTest):  # noqa: ANN201
    (tab,) = [t for t in app.tabs if t.label == "Readers"]
    return tab


@pytest.fixture
def no_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty weights folder, so the Models tab evaluates nothing and the Readers tab is tested alone."""
    folder = tmp_path / "no-weights"
    folder.mkdir()
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(folder))


def metric(app: AppTest, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric {label!r} among {[m.label for m in app.metric]}"
    return values[0]


def chart_titles(app: AppTest) -> list[str]:
    import json

    titles = []
    for chart in app.get("plotly_chart"):
        title = json.loads(chart.proto.spec)["layout"].get("title", {})
        titles.append(title.get("text", "") if isinstance(title, dict) else str(title))
    return titles


def test_default_model_shows_its_recorded_held_out_numbers(app: AppTest) -> None:
    app.run()
    assert not app.exception
    card = ModelRegistry().card("cxr-resnet18")
    recorded = card.metrics["held_out"]
    assert metric(app, "Images") == str(recorded["n"])
    assert metric(app, "Accuracy") == f"{100 * recorded['accuracy']:.1f}%"
    assert metric(app, "Temperature") == f"{card.temperature:.2f}"
    table = app.dataframe[0].value
    assert list(table["class"]) == list(card.labels)
    assert list(table["n"]) == [recorded["per_class"][c]["support"] for c in card.labels]
    titles = " | ".join(chart_titles(app))
    for name in ("Confusion matrix", "Reliability", "ROC", "Precision-recall"):
        assert name in titles
    assert any("Calibrated probabilities" in m.value for m in app.markdown)
    assert app.get("download_button"), "no report download"
    # The Readers tab beside the models; this test's scratch case library is not built, which it says.
    assert any("not ready yet" in i.value for i in readers_tab(app).info)


def test_the_threshold_slider_trades_sensitivity_for_specificity(app: AppTest) -> None:
    app.run()
    before = (metric(app, "Sensitivity"), metric(app, "Specificity"))
    app.slider[0].set_value(0.99).run()
    assert not app.exception
    after = (metric(app, "Sensitivity"), metric(app, "Specificity"))
    as_number = [float(v.rstrip("%")) for v in (*before, *after)]
    assert as_number[2] <= as_number[0] and as_number[3] >= as_number[1]
    assert any("At 0.99" in c.value for c in app.caption)


def test_two_xray_models_side_by_side_with_a_paired_test(app: AppTest) -> None:
    app.run()
    app.multiselect[0].set_value(["cxr-resnet18", "cxr-custom"]).run()
    assert not app.exception
    assert any("Side by side" in h.value for h in app.subheader)
    pairs = app.dataframe[-1].value
    assert list(pairs["models"]) == ["cxr-resnet18 - cxr-custom"]
    assert "DeLong p" in pairs.columns
    assert any("Comparison" in t or "ROC" in t for t in chart_titles(app))


def test_findings_model_per_finding_with_thresholds_and_what_it_cannot_score(app: AppTest) -> None:
    app.run()
    app.multiselect[0].set_value(["cxr-findings"]).run()
    assert not app.exception
    table = app.dataframe[0].value
    card = ModelRegistry().card("cxr-findings")
    assert list(table["finding"]) == list(card.labels)
    assert "threshold" in table.columns
    assert any("No ROC curve or AUC for" in c.value and "Edema" in c.value for c in app.caption)


def test_survival_model_shows_its_recorded_results_and_says_why_no_curves(app: AppTest) -> None:
    app.run()
    app.multiselect[0].set_value(["survival-cnn-lstm"]).run()
    assert not app.exception
    held = ModelRegistry().card("survival-cnn-lstm").metrics["held_out"]
    assert metric(app, "Accuracy") == f"{100 * held['accuracy']:.1f}%"
    assert any("Recorded at training time" in c.value for c in app.caption)


def test_a_dataset_path_that_does_not_exist_is_a_plain_error(
    app: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_DATA_ROOTS", str(tmp_path))
    missing = str(tmp_path / "nowhere" / "at" / "all")
    app.run()
    app.radio[0].set_value(DATASET).run()
    app.text_input[0].set_value(missing).run()
    assert not app.exception
    assert app.error and missing in app.error[0].value and "outside" not in app.error[0].value


def test_ct_models_on_a_demo_dataset_per_scan_and_patient_with_a_window_band(
    monkeypatch: pytest.MonkeyPatch, ct_weights: Path
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    app = AppTest.from_file(PAGE, default_timeout=300)
    app.run()
    app.multiselect[0].set_value(["covid3d-tiny"]).run()
    app.radio[0].set_value(DATASET).run()
    app.text_input[0].set_value("demo:4").run()
    assert not app.exception
    levels = [r for r in app.radio if r.label == "Per"]
    assert levels and list(levels[0].options) == ["scan", "patient"]
    app.number_input[0].set_value(2).run()
    assert not app.exception
    assert any("windows" in t for t in chart_titles(app))


def test_the_readers_tab_shows_the_figures_of_two_meetings_and_of_one(library_copy: Path, no_models: None) -> None:
    library = open_library(library_copy)
    demo_id, second_id = record_two_meetings(library)
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert [t.label for t in app.tabs][:2] == ["Models", "Readers"]
    assert any("No models are registered" in i.value for i in app.info)  # and the Readers tab still works
    tab = readers_tab(app)
    chooser = tab.multiselect(key="performance_reader_meetings")
    assert set(chooser.value) == {demo_id, second_id}  # every meeting with reads

    def pooled_row(ids: list[int]) -> dict:
        """All readers' figures, checked against the core's, with the model's on the same reads."""
        figures = next(d.value for d in readers_tab(app).dataframe if "Reader" in d.value.columns)
        assert list(figures["Reader"]) == [
            "Dr A",
            "model, Dr A's cases",
            "Dr B",
            "model, Dr B's cases",
            "all readers",
            "model, all readers' cases",
        ]
        rows = figures.set_index("Reader")
        expected = meeting_summary(library, ids).question(COVID_QUESTION).pooled
        row = rows.loc["all readers"].to_dict()
        assert row[KAPPA] == kappa_text(expected.vs_model)
        assert row[ACCURACY] == share_text(expected.accuracy)
        assert rows.loc["model, all readers' cases", SENSITIVITY] == share_text(expected.model_sensitivity)
        return row

    both = pooled_row(chooser.value)
    assert both["Reads"] == 10 and both[KAPPA].startswith("0.17 (")
    cases = next(d.value for d in tab.dataframe if "Room" in d.value.columns)
    assert list(cases[""][:2]) == ["disagree", "disagree"]
    # Narrowed to the demo meeting: its four reads alone, and another kappa.
    chooser.set_value([demo_id]).run()
    assert not app.exception, app.exception
    one = pooled_row([demo_id])
    assert one["Reads"] == 4 and one[KAPPA].startswith("0.00 (")
    assert one[ACCURACY] != both[ACCURACY]
    cases = next(d.value for d in readers_tab(app).dataframe if "Room" in d.value.columns)
    assert list(cases[""]).count("disagree") == 1 and "Meeting" not in cases.columns


def test_the_readers_tab_without_reads_says_where_to_record_them(library_copy: Path, no_models: None) -> None:
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    tab = readers_tab(app)
    assert any("No read has been recorded yet" in i.value and "Case review" in i.value for i in tab.info)
    assert not tab.dataframe


def test_a_case_library_that_cannot_be_opened_leaves_the_page_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_models: None
) -> None:
    broken = tmp_path / "broken-library"
    broken.mkdir()
    (broken / DATABASE_NAME).write_bytes(b"not a database" * 100)
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(broken))
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    assert not app.error
    (message,) = [i.value for i in readers_tab(app).info]
    assert "cannot be opened" in message and "not a case library" in message
