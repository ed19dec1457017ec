"""No identifier anywhere (issue 19, section 4), on the pages that search, follow and survive:
Similar cases, Trajectories and Survival and prognosis (and the dataset path of Model performance), with the marked uploads (the marked
X-ray, the marked CT series zipped, all named after the patient) and with the marked patient of
a library that holds the marked cases (:class:`tests.privacy.conftest.MarkedLibrary`).

Each test runs a page through its paths in one session and checks, after each path: what the
page shows (its uploads' own file names taken out, as the file uploader shows them anyway),
every image and download it served (contents and names), the case reports behind its download
buttons (the identifiers box is not ticked: those pages have none), the log records at DEBUG,
and every file under the library the page wrote to (embeddings, scores). Each asserts that its
path ran: results listed, a curve drawn, a probability shown, a report of some size.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT
from tests.privacy.checks import Served, assert_logs_clean, assert_none, assert_page_clean, ct_zip
from tests.privacy.conftest import MarkedLibrary
from tests.privacy.markers import MarkedData, with_values
from tests.privacy.scan import scan_tree
from tests.report_helpers import Deferred

pytestmark = pytest.mark.demo_weights


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=300)


def upload_names(files: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> tuple[str, ...]:
    return tuple(name for name, _ in files)


def assert_library_clean(library: MarkedLibrary, marked: MarkedData) -> None:
    hits, n_files = scan_tree(library.root, marked.markers)
    assert n_files >= 20
    assert_none(hits, marked, "the library the page wrote to")


def test_similar_cases_page(
    marked: MarkedData,
    in_marked_library: MarkedLibrary,
    deferred: dict[str, Deferred],
    served: list[Served],
    records: list[logging.LogRecord],
) -> None:
    at = page("similar").run()
    # An upload: the marked X-ray, which the library holds (the marked patient's first X-ray).
    at.file_uploader(key="similar_upload").upload(marked.xray_name, marked.xray, "application/dicom").run()
    assert not at.error, [e.value for e in at.error]
    assert any(f"patient **{in_marked_library.pseudonym}**" in i.value for i in at.info)
    assert any("most similar of" in md.value and not md.value.startswith("**0**") for md in at.markdown)
    assert at.get("plotly_chart"), "no side-by-side compare"
    assert_page_clean(at, marked, deferred, "Similar cases", served=served)
    # A library case: the marked patient's X-ray, and a result's stored image opened.
    at.radio(key="similar_source").set_value("A library case").run()
    at.selectbox(key="similar_case_patient").set_value(in_marked_library.pseudonym).run()
    assert not at.error, [e.value for e in at.error]
    assert any(c.value.startswith(f"Query patient {in_marked_library.pseudonym}:") for c in at.caption)
    opened = next(b for b in at.button if (b.key or "").startswith("open_1_"))
    opened.click().run()
    assert any(re.match(r"\*\*P-\w+\*\* · Day ", md.value) for md in at.markdown), "no study opened"
    assert len(served) >= 10  # thumbnails, the query, the opened image
    assert_page_clean(at, marked, deferred, "Similar cases", served=served)
    assert_library_clean(in_marked_library, marked)
    assert_logs_clean(records, marked)


def test_trajectories_page(
    marked: MarkedData,
    in_marked_library: MarkedLibrary,
    deferred: dict[str, Deferred],
    served: list[Served],
    records: list[logging.LogRecord],
) -> None:
    at = page("trajectories").run()
    # The marked patient's CTs (first: a COVID-19 patient with the most CTs), s(t) and the
    # Grad-CAM strip; the chosen scan's image and note.
    assert at.selectbox(key="traj_patient").value == in_marked_library.pseudonym
    assert not at.error, [e.value for e in at.error]
    assert any(
        md.value.startswith(f"**{in_marked_library.pseudonym}**") and "2 CT scans" in md.value for md in at.markdown
    )
    assert len(at.dataframe[0].value) == 2
    assert_page_clean(at, marked, deferred, "Trajectories", served=served)
    # Uploads: the marked CT series zipped, twice (days 0 and 1), named after the patient.
    second = tuple((name, with_values(data, AcquisitionNumber="2")) for name, data in marked.ct_files)
    zips = [
        (f"{marked.ct_folder_name}.zip", ct_zip(marked)),
        (f"{marked.ct_folder_name}_day5.zip", ct_zip(marked, second)),
    ]
    at.radio(key="traj_source").set_value("My uploads (this session)").run()
    at.file_uploader(key="traj_upload_ct").set_value([(n, d, "application/zip") for n, d in zips]).run()
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe[0].value) == 2 and [m.label for m in at.metric][0] == "First"
    csv = [s for s in served if s.mimetype == "text/csv"]
    assert csv and csv[-1].file_name == "trajectory-features-covid3d.csv" and len(csv[-1].data) > 100
    assert (
        assert_page_clean(at, marked, deferred, "Trajectories", upload_names(zips), served) >= 3
    )  # the CSV, a Grad-CAM per scan
    # The X-ray series: the marked patient's X-rays as uploads, then the patient's own X-rays
    # with the findings between them.
    at.radio(key="traj_kind").set_value("X-ray: P(COVID-19)").run()
    files = in_marked_library.xray_files
    at.file_uploader(key="traj_upload_xray").set_value([(n, d, "application/dicom") for n, d in files]).run()
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe[0].value) == 2
    assert_page_clean(at, marked, deferred, "Trajectories", upload_names(files), served)
    at.radio(key="traj_source").set_value("A library patient").run()
    at.selectbox(key="traj_patient").set_value(in_marked_library.pseudonym).run()
    assert not at.error, [e.value for e in at.error]
    changes = [df.value for df in at.dataframe if "category" in df.value.columns]
    assert len(changes) == 1 and len(changes[0]) == 1  # the one pair of sequential X-rays
    assert_page_clean(at, marked, deferred, "Trajectories", served=served)
    assert_library_clean(in_marked_library, marked)
    assert_logs_clean(records, marked)


def test_survival_page(
    marked: MarkedData,
    in_marked_library: MarkedLibrary,
    deferred: dict[str, Deferred],
    served: list[Served],
    records: list[logging.LogRecord],
) -> None:
    at = page("survival").run()
    # The marked patient, with the Kaplan-Meier curves of the marked cohort (time to death),
    # and the patient's case report.
    at.radio(key="surv_endpoint").set_value("Time to death (survival)").run()
    label = next(o for o in at.selectbox(key="surv_patient").options if o.startswith(in_marked_library.pseudonym))
    at.selectbox(key="surv_patient").set_value(label).run()
    assert not at.error, [e.value for e in at.error]
    assert [m.label for m in at.metric][:2] == ["P(survival), CNN-LSTM", "Risk of death group"]
    assert len(at.get("plotly_chart")) >= 2, "no Kaplan-Meier curve"
    report = deferred[at.download_button(key="surv_report").proto.deferred_file_id].build()
    assert len(report) > 10_000
    n = assert_page_clean(at, marked, deferred, "Survival and prognosis", served=served)
    assert n >= 3  # the report, the Grad-CAM of each X-ray
    # Uploads: the marked patient's two X-rays, read by the CNN-LSTM.
    at.radio(key="surv_source").set_value("My uploads (this session)").run()
    files = in_marked_library.xray_files
    at.file_uploader(key="surv_upload").set_value([(n, d, "application/dicom") for n, d in files]).run()
    assert not at.error, [e.value for e in at.error]
    assert [m.label for m in at.metric][:2] == ["P(survival), CNN-LSTM", "Risk of death group"]
    assert_page_clean(at, marked, deferred, "Survival and prognosis", upload_names(files), served)
    assert_library_clean(in_marked_library, marked)
    assert_logs_clean(records, marked)


def test_model_performance_page_on_a_dataset_of_marked_files(
    marked: MarkedData,
    marked_library: MarkedLibrary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_weights: Path,
    deferred: dict[str, Deferred],
    served: list[Served],
    records: list[logging.LogRecord],
) -> None:
    """A dataset path typed on the Model performance page: class folders of marked X-rays named
    after the patients, and the performance report. Small untrained models (tests.helpers): the
    shipped ones first evaluate on their held-out split, half a minute."""
    data = tmp_path / "dataset"
    for i, path in enumerate(sorted(marked_library.inputs.glob("*.dcm"))[:6]):
        folder = data / ("COVID", "NORMAL", "Viral Pneumonia")[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("DASHBOARD_DATA_ROOTS", str(tmp_path))
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    at = page("performance").run()
    at.radio[0].set_value("A dataset on this computer").run()
    at.text_input[0].set_value(str(data)).run()
    assert not at.error, [e.value for e in at.error]
    assert any(m.label == "Images" and m.value == "6" for m in at.metric), [(m.label, m.value) for m in at.metric]
    report = deferred[at.download_button(key="performance_report").proto.deferred_file_id].build()
    assert len(report) > 10_000
    # The page names the dataset by the path the user typed (the field shows it anyway).
    assert_page_clean(at, marked, deferred, "Model performance", (str(data),), served)
    assert_logs_clean(records, marked)
