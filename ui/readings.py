"""How a page shows models' readings of one input: the "unlike my training data" verdicts, the
headline, and the probabilities of every model (collapsed for those that reject the input)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core.inference import Reading, ReadingSummary
from core.ood import OodVerdict


def verdict_words(verdict: OodVerdict | None) -> str:
    """A short cell for a table: "yes (0.97 <= 1.49)" / "NO (2.72 > 1.49)"."""
    if verdict is None:
        return "not checked"
    if verdict.in_distribution:
        return f"yes ({verdict.comparison()})"
    if verdict.lookalike:
        return f"NO ({verdict.lookalike})"
    return f"NO ({verdict.comparison()})"


def _short_domain(domain: str) -> str:
    return "demo" if domain.startswith("demo") else "real"


def ood_warnings(readings: Sequence[Reading], kind: str = "image") -> None:
    """One plain warning per model the input is unlike the training data of, first on the card."""
    for r in readings:
        if r.ood is not None and not r.ood.in_distribution:
            why = f"It looks like {r.ood.lookalike}." if r.ood.lookalike else f"(OOD {r.ood.comparison()}.)"
            st.warning(
                f"This {kind} is unlike the images {r.prediction.model_id} ({r.domain}) was trained on: its "
                f"prediction is not shown as a result. {why}",
                icon="⚠️",
            )


def probability_table(readings: Sequence[Reading], average=None, key: str = "") -> None:
    """Every model's probabilities (the union of their classes), its domain and its verdict."""
    labels: list[str] = []
    for r in readings:
        labels.extend(label for label in r.prediction.labels if label not in labels)
    rows, index = [], []
    for r in readings:
        probs = dict(zip(r.prediction.labels, r.prediction.probabilities, strict=True))
        rows.append([probs.get(label) for label in labels])
        index.append(r.prediction.model_id)
    if average is not None:
        probs = dict(zip(average.labels, average.probabilities, strict=True))
        rows.append([probs.get(label) for label in labels])
        index.append("Average")
    table = pd.DataFrame(rows, index=index, columns=labels)
    st.dataframe(
        table.style.format("{:.1%}", subset=labels, na_rep="-").highlight_max(
            axis=1, subset=labels, props="font-weight: bold"
        ),
        key=key or None,
    )
    st.caption(
        "Like its training data? "
        + " · ".join(f"{r.prediction.model_id} ({_short_domain(r.domain)}): {verdict_words(r.ood)}" for r in readings)
    )


def headline(summary: ReadingSummary, readings: Sequence[Reading]) -> None:
    """The predicted class of the accepted models, or a plain statement that there is none."""
    if summary.headline is None:
        st.error(
            "No result: this image is unlike the training data of every chosen model, so no class is shown. "
            "The probabilities are kept below, collapsed, for reference only."
        )
        return
    who = "average of models" if summary.average is not None else summary.headline.model_id
    domain = next((r.domain for r in readings if r.prediction.model_id == summary.headline.model_id), "")
    st.metric(
        f"Predicted ({who})",
        summary.headline.predicted_label,
        help="The class with the highest probability, among the models this image is like the training data of.",
    )
    if domain:
        st.caption(f"{summary.headline.model_id}: {domain}.")
    if summary.average is not None:
        st.caption(summary.average_words())
    elif summary.not_averaged:
        st.caption(
            f"Not averaged with {', '.join(summary.not_averaged)}: their classes differ (e.g. the demo's Viral "
            "pneumonia is not the real data's Pneumonia (non-COVID))."
        )
