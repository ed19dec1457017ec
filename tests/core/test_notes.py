"""Notes describe what was drawn and compare with the prior in seed 004's categories."""

from __future__ import annotations

import pytest

from core.demo.notes import CHANGE_PHRASES, Prior, change_category, ct_note, xray_note

CLEAR = {"Lung Opacity": 0, "Consolidation": 0, "Pleural Effusion": 0, "Cardiomegaly": 0}
OPAQUE = {"Lung Opacity": 1, "Consolidation": 1, "Pleural Effusion": 1, "Cardiomegaly": 1}


def category_in(note: str) -> str:
    found = [c for c, phrases in CHANGE_PHRASES.items() if any(p in note for p in phrases)]
    assert len(found) == 1, note
    return found[0]


def test_xray_note_follows_the_findings() -> None:
    note = xray_note("COVID-19", "AP", 0.7, OPAQUE, None)
    assert note.startswith("AP chest radiograph.")
    assert "peripheral lower-zone ground-glass" in note and "consolidation" in note
    assert "Pleural effusion." in note and "heart is enlarged" in note
    assert "No prior" in note
    clear = xray_note("Normal", "PA", 0.0, CLEAR, None)
    assert "Lungs are clear" in clear and "No pleural effusion." in clear and "consolidation" not in clear
    viral = xray_note("Viral pneumonia", "PA", 0.5, {**CLEAR, "Lung Opacity": 1}, None)
    assert "perihilar" in viral and "consolidation" not in viral


@pytest.mark.parametrize(
    "prior, now, expected",
    [(0.0, 0.4, "Worse"), (0.3, 0.6, "Worse"), (0.5, 0.52, "Stable"), (0.6, 0.2, "Improved"), (0.4, 0.0, "Improved")],
)
def test_comparison_with_the_prior_reads_back_as_its_category(prior, now, expected) -> None:
    p = Prior(day=2, severity=prior, findings=CLEAR)
    assert change_category(now, p) == expected
    findings = {**CLEAR, "Lung Opacity": int(now > 0)}
    assert category_in(xray_note("COVID-19", "PA", now, findings, p)) == expected
    ct = ct_note("COVID-19", now, {"Bilateral": 1, "Peripheral": 1}, 0.1 if now else 0.0, p)
    assert category_in(ct) == expected
    assert "day 2" in ct


def test_ct_note_states_the_involvement() -> None:
    note = ct_note("COVID-19", 0.8, {"Bilateral": 1, "Peripheral": 1, "Consolidation": 1}, 0.31, None)
    assert "bilateral peripheral" in note and "consolidation" in note and "31%" in note
