"""core.case_reports without a page: the X-ray report of a phantom as a reader of the HTML sees it,
the pseudonyms of uploads, and the identifier rows (the pages' tests check the same reports as a
download click gives them)."""

from __future__ import annotations

import hashlib

import numpy as np

from core.case_reports.common import identifier_rows, upload_pseudonym
from core.case_reports.ct import ct_pseudonym
from core.case_reports.xray import xray_case_report
from core.demo.images import demo_xrays
from core.io.images import read_xray
from core.report import render_report
from core.types import ExplanationMap, Prediction


def test_an_upload_is_named_by_the_hash_of_its_bytes_and_a_demo_ct_by_its_label() -> None:
    data = b"not really a radiograph"
    assert upload_pseudonym(data) == "upload-" + hashlib.sha256(data).hexdigest()[:8]
    assert ct_pseudonym("series-key") == upload_pseudonym(b"series-key")
    assert ct_pseudonym("ignored", "Viral pneumonia") == "demo-viral-pneumonia"


def test_identifier_rows_give_one_row_per_field_with_distinct_values_in_order() -> None:
    items = [
        ("PatientName", "Doe^Jane"),
        ("SOPInstanceUID", "1.2.3"),
        ("PatientName", "Doe^Jane"),
        ("SOPInstanceUID", "1.2.4"),
    ]
    assert identifier_rows(items) == (("PatientName", "Doe^Jane"), ("SOPInstanceUID", "1.2.3, 1.2.4"))


def test_the_xray_report_of_a_phantom_names_it_by_pseudonym_and_shows_each_model_and_the_average() -> None:
    name, data = demo_xrays(size=128)[0]
    image = read_xray(data, name)
    heat = ExplanationMap(np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128), "Grad-CAM", "Normal", "m1")
    labels = ("Normal", "COVID-19")
    one = Prediction("m1", "v1", labels, (0.8, 0.2), calibrated=True)
    two = Prediction("m2", "v2", labels, (0.6, 0.4))
    average = Prediction("average", "v1+v2", labels, (0.7, 0.3))
    report = xray_case_report(
        data=data,
        image=image,
        window=(image.window_center, image.window_width),
        explanation=heat,
        method="Grad-CAM",
        colormap="Jet",
        opacity=0.5,
        predictions=[one, two],
        average=average,
        created="2024-05-02",
    )
    assert report.pseudonym == upload_pseudonym(data) and report.created == "2024-05-02"
    assert [p.model_id for p in report.predictions] == ["m1", "m2", "average of models"]
    assert report.predictions[0].output == "Normal 80.0% (COVID-19 20.0%)"
    table = report.sections[1].table
    assert table[0][:4] == ("Model", "Trained on", "Normal", "COVID-19")
    assert [row[0] for row in table[1:]] == ["m1", "m2", "Average"]
    assert len(report.sections[0].images) == 2  # the film and its overlay
    document = render_report(report)
    assert name not in document  # the file name never reaches the report
    assert report.identifiers == ()
