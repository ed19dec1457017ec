"""Plotly figures of the Model performance page and its HTML report.

Each builder takes one part of an evaluation or a comparison (the dataclasses of
:mod:`core.evaluation.results`) and returns a :class:`plotly.graph_objects.Figure`; nothing here
computes a metric. Figures share one look: template ``plotly_white``, a title, labelled
axes, a legend outside the plotting area, ROC-like axes 0..1 with equal aspect and a dashed
chance diagonal.

Numbers are written by the ``format_*`` helpers, which the HTML report reuses: AUCs and
similar scores with 3 decimals, proportions (0..1) as percentages with 1 decimal, ``None`` as
``"n/a"``.

Caller-given names (class labels, model ids) are shown literally: ``<``, ``>`` and ``&`` are
written as entities, so a label such as ``<b>x</b>`` is not read as plotly's HTML-like markup.

Examples
--------
>>> fig = roc_figure(level.roc, "ROC, image level")
>>> fig = confusion_figure(level.confusion_matrix, level.unit)
>>> format_auc(0.9731, [0.9412, 0.9948])
'0.973 (0.941-0.995)'
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from core.evaluation.results import (
    Calibration,
    Comparison,
    Confusion,
    PrecisionRecall,
    Reliability,
    ReliabilityBin,
    Roc,
    WindowRobustness,
)

__all__ = [
    "TEMPLATE",
    "comparison_figure",
    "confusion_figure",
    "format_auc",
    "format_number",
    "format_p_value",
    "format_percent",
    "pr_figure",
    "reliability_figure",
    "robustness_auc_figure",
    "robustness_figure",
    "roc_figure",
]

#: The plotly template every figure here uses.
TEMPLATE = "plotly_white"

NOT_AVAILABLE = "n/a"
_HEIGHT_PX = 440
_CURVE_HEIGHT_PX = 420
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_CHANCE_COLOUR = "#9aa0a6"
_CONFUSION_SCALE = "Blues"
# Above this row percent plotly's "Blues" is dark enough that black text becomes hard to read.
_DARK_CELL_PERCENT = 55.0
_MARKER_PX = (7.0, 24.0)  # smallest and largest reliability marker


# --------------------------------------------------------------------------------------------
# Numbers as text


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; ``None`` or NaN as ``"n/a"``."""
    return f"{value:.{digits}f}" if _is_number(value) else NOT_AVAILABLE


def format_percent(fraction: float | None, digits: int = 1) -> str:
    """A proportion in 0..1 as a percentage, e.g. ``0.95`` -> ``"95.0%"``; ``None`` as ``"n/a"``."""
    return f"{100.0 * fraction:.{digits}f}%" if _is_number(fraction) else NOT_AVAILABLE


def format_auc(auc: float | None, ci: Sequence[float | None] | None = None) -> str:
    """An AUC with its 95% interval, e.g. ``"0.973 (0.941-0.995)"``; the interval is left out
    when ``ci`` is ``None`` (or holds a ``None``)."""
    text = format_number(auc)
    if not _is_number(auc) or ci is None or len(ci) != 2 or not all(_is_number(v) for v in ci):
        return text
    return f"{text} ({format_number(ci[0])}-{format_number(ci[1])})"


def format_p_value(p: float | None) -> str:
    """A p-value with 3 decimals, or ``"<0.001"`` below that; ``None`` as ``"n/a"``."""
    if not _is_number(p):
        return NOT_AVAILABLE
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _is_number(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _shown(name: str) -> str:
    """A caller-given name as plotly text: its markup characters as entities."""
    return html.escape(str(name), quote=False)


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


# --------------------------------------------------------------------------------------------
# Confusion matrix


def confusion_figure(cm: Confusion, unit: str) -> go.Figure:
    """A confusion matrix as a heatmap coloured by row percent.

    Parameters
    ----------
    cm
        ``labels`` (K,), ``counts`` (K, K) and ``row_percent`` (K, K): rows are the true class,
        columns the predicted one, row percents in 0..100 (``None`` for a class with no case).
    unit
        What was counted, e.g. ``"image"`` or ``"scan"``.

    Returns
    -------
    go.Figure
        Rows top to bottom and columns left to right in ``labels`` order; each cell annotated
        ``"count<br>row%"`` (e.g. ``"19<br>95.0%"``), in white on dark cells.
    """
    labels = [_shown(label) for label in cm.labels]
    counts = [list(row) for row in cm.counts]
    percents = [list(row) for row in cm.row_percent]
    k = len(labels)
    if len(counts) != k or any(len(row) != k for row in counts):
        raise ValueError(f"confusion counts must be {k} x {k}, like its labels")
    fig = go.Figure(
        go.Heatmap(
            z=percents,
            x=labels,
            y=labels,
            customdata=counts,
            zmin=0.0,
            zmax=100.0,
            colorscale=_CONFUSION_SCALE,
            colorbar=dict(title=dict(text="% of true class", side="right"), thickness=14, ticksuffix="%"),
            hovertemplate="true %{y}, predicted %{x}<br>%{customdata} " + _shown(unit) + "s (%{z:.1f}% of row)"
            "<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    for i, true_label in enumerate(labels):
        for j, predicted_label in enumerate(labels):
            percent = percents[i][j]
            fig.add_annotation(
                x=predicted_label,
                y=true_label,
                text=f"{counts[i][j]}<br>{_format_row_percent(percent)}",
                showarrow=False,
                font=dict(color="white" if _is_number(percent) and percent > _DARK_CELL_PERCENT else "black", size=13),
            )
    total = cm.total
    fig.update_xaxes(title_text="Predicted", type="category", side="bottom", showgrid=False)
    fig.update_yaxes(title_text="True", type="category", autorange="reversed", showgrid=False)
    _style(fig, f"Confusion matrix, {_shown(unit)} level (n = {total})", max(_HEIGHT_PX, 120 + 70 * k))
    return fig


def _format_row_percent(percent: float | None) -> str:
    return format_number(percent, 1) + ("%" if _is_number(percent) else "")


# --------------------------------------------------------------------------------------------
# Curves


def roc_figure(roc: Mapping[str, Roc], title: str) -> go.Figure:
    """ROC curves, one per label, on equal 0..1 axes with the chance diagonal.

    Parameters
    ----------
    roc
        Each label's curve, in legend order.
    title
        The figure's title.

    Returns
    -------
    go.Figure
        Legend entries ``"label · AUC 0.973 (0.941-0.995)"`` (no interval when ``auc_ci`` is
        ``None``).
    """
    fig = go.Figure()
    _add_chance_diagonal(fig)
    for i, (label, curve) in enumerate(roc.items()):
        fig.add_trace(_curve(curve.fpr, curve.tpr, f"{_shown(label)} · AUC {format_auc(curve.auc, curve.auc_ci)}", i))
    _unit_square(fig, "False positive rate (1 - specificity)", "True positive rate (sensitivity)")
    _style(fig, title, _CURVE_HEIGHT_PX)
    return fig


def pr_figure(pr: Mapping[str, PrecisionRecall], title: str) -> go.Figure:
    """Precision-recall curves, one per label, drawn as steps (as average precision sums them).

    Parameters
    ----------
    pr
        Each label's curve, in legend order; its prevalence (0..1) is the precision of a random
        ranking.
    title
        The figure's title.

    Returns
    -------
    go.Figure
        Legend entries ``"label · AP 0.912, prevalence 33.3%"``.
    """
    fig = go.Figure()
    for i, (label, curve) in enumerate(pr.items()):
        name = (
            f"{_shown(label)} · AP {format_number(curve.average_precision)}, "
            f"prevalence {format_percent(curve.prevalence)}"
        )
        fig.add_trace(
            go.Scatter(
                x=curve.recall,
                y=curve.precision,
                mode="lines",
                line=dict(color=_colour(i), width=2, shape="hv"),
                name=name,
                hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<extra>" + _shown(label) + "</extra>",
            )
        )
    _unit_square(fig, "Recall (sensitivity)", "Precision (PPV)")
    _style(fig, title, _CURVE_HEIGHT_PX)
    return fig


def reliability_figure(calibration: Calibration, title: str) -> go.Figure:
    """A reliability diagram: accuracy against mean confidence per confidence bin.

    Parameters
    ----------
    calibration
        The bins before temperature scaling and, when a temperature was fitted, after it
        (confidence and accuracy in 0..1).
    title
        The figure's title.

    Returns
    -------
    go.Figure
        One trace for ``"uncalibrated (T = 1)"`` and, when ``calibrated`` is given, one for
        ``"calibrated (T = 1.32)"``, each with its ECE in the legend; marker area grows with the
        bin's count (also in the hover); empty bins are left out.
    """
    parts: list[tuple[str, Reliability]] = [("uncalibrated (T = 1)", calibration.uncalibrated)]
    if calibration.calibrated is not None:
        parts.append((f"calibrated (T = {format_number(calibration.temperature, 2)})", calibration.calibrated))
    shown_bins = [[b for b in part.bins if _is_filled(b)] for _, part in parts]
    largest = max((b.count for bins in shown_bins for b in bins), default=1)
    fig = go.Figure()
    _add_chance_diagonal(fig, "perfect calibration")
    for i, ((name, part), bins) in enumerate(zip(parts, shown_bins, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=[b.confidence for b in bins],
                y=[b.accuracy for b in bins],
                mode="markers",  # no line: it would run across empty bins as if they were measured
                name=f"{name} · ECE {format_number(part.ece)}",
                line=dict(color=_colour(i), width=1.5),
                marker=dict(color=_colour(i), size=[_marker_px(b.count, largest) for b in bins], opacity=0.85),
                customdata=[[b.count, b.lo, b.hi] for b in bins],
                hovertemplate="confidence %{customdata[1]:.2f}-%{customdata[2]:.2f}: mean %{x:.3f}"
                "<br>accuracy %{y:.3f}<br>%{customdata[0]} cases<extra>" + name + "</extra>",
            )
        )
    _unit_square(fig, "Mean confidence (top label)", "Accuracy")
    _style(fig, title, _CURVE_HEIGHT_PX)
    return fig


def _is_filled(bin_: ReliabilityBin) -> bool:
    return bool(bin_.count) and bin_.confidence is not None and bin_.accuracy is not None


def _marker_px(count: int, largest: int) -> float:
    """Marker diameter so that its area is proportional to ``count``."""
    low, high = _MARKER_PX
    return low + (high - low) * math.sqrt(count / largest) if largest > 0 else low


# --------------------------------------------------------------------------------------------
# Robustness to the CT window


def robustness_figure(robustness: WindowRobustness) -> go.Figure:
    """ROC curves over randomly drawn CT windows: the band they span, their median and the
    curve of the training window.

    Parameters
    ----------
    robustness
        The evaluation's robustness: the band (``tpr_low``, ``tpr_high``, ``tpr_median`` on the
        ``fpr`` grid), the training window's curve on the same grid and the AUC summary.

    Returns
    -------
    go.Figure
        Titled e.g. ``"AUC 0.912 ± 0.011 over 100 windows (range 0.880-0.930); training window
        0.920"``.
    """
    fpr = list(robustness.fpr)
    fig = go.Figure()
    _add_chance_diagonal(fig)
    fig.add_trace(
        go.Scatter(
            x=fpr + fpr[::-1],
            y=list(robustness.tpr_high) + list(robustness.tpr_low)[::-1],
            mode="lines",
            fill="toself",
            fillcolor="rgba(0, 114, 178, 0.18)",
            line=dict(width=0),
            name=f"band over {robustness.n_windows} windows",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=fpr,
            y=robustness.tpr_median,
            mode="lines",
            line=dict(color=_colour(0), width=1.5, dash="dash"),
            name="median over windows",
            hovertemplate="FPR %{x:.3f}<br>median TPR %{y:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        _curve(
            robustness.fpr_training_window,
            robustness.tpr_training_window,
            f"training window ({_window_text(robustness.training_window)})",
            1,
        )
    )
    _unit_square(fig, "False positive rate (1 - specificity)", "True positive rate (sensitivity)")
    title = (
        f"Robustness to the CT window, {_shown(robustness.unit)} level<br><sup>{_robustness_summary(robustness)}</sup>"
    )
    _style(fig, title, _HEIGHT_PX)
    return fig


def robustness_auc_figure(robustness: WindowRobustness) -> go.Figure:
    """The AUC of each drawn CT window, at its center (x) and width (y), coloured by AUC; the
    training window marked with a star.

    Parameters
    ----------
    robustness
        The evaluation's robustness: its ``windows`` (center, width in HU), one AUC per window,
        the training window with its AUC, and the ``sd`` the windows were drawn with.

    Returns
    -------
    go.Figure
        One scatter of the windows with a colour bar "AUC", and the star.
    """
    windows = robustness.windows
    aucs = list(robustness.aucs)
    if len(windows) != len(aucs):
        raise ValueError(f"{len(windows)} windows but {len(aucs)} AUCs")
    center, width = robustness.training_window
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[w[0] for w in windows],
            y=[w[1] for w in windows],
            mode="markers",
            name="drawn windows",
            marker=dict(
                color=aucs,
                colorscale="Viridis",
                size=9,
                line=dict(width=0.5, color="#444"),
                colorbar=dict(title=dict(text="AUC", side="right"), thickness=14),
                showscale=True,
            ),
            hovertemplate="center %{x:g} HU, width %{y:g} HU<br>AUC %{marker.color:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[center],
            y=[width],
            mode="markers",
            name=f"training window · AUC {format_number(robustness.auc_training_window)}",
            marker=dict(symbol="star", size=20, color="#D55E00", line=dict(width=1, color="black")),
            hovertemplate="training window<br>center %{x:g} HU, width %{y:g} HU<extra></extra>",
        )
    )
    sd_center, sd_width = robustness.sd
    title = (
        f"ROC AUC per CT window ({len(windows)} windows)<br><sup>drawn around the training window with "
        f"SD {sd_center:g} HU (center) and {sd_width:g} HU (width)</sup>"
    )
    fig.update_xaxes(title_text="Window center (HU)")
    fig.update_yaxes(title_text="Window width (HU)")
    _style(fig, title, _HEIGHT_PX)
    return fig


def _robustness_summary(robustness: WindowRobustness) -> str:
    return (
        f"AUC {format_number(robustness.auc_mean)} ± {format_number(robustness.auc_sd)} "
        f"over {robustness.n_windows} windows (range {format_number(robustness.auc_min)}-"
        f"{format_number(robustness.auc_max)}); training window {format_number(robustness.auc_training_window)}"
    )


def _window_text(window: Sequence[float]) -> str:
    return f"C {window[0]:g}, W {window[1]:g} HU"


# --------------------------------------------------------------------------------------------
# Model comparison


def comparison_figure(comparison: Comparison) -> go.Figure:
    """The ROC curves of several models on the same cases, overlaid.

    Parameters
    ----------
    comparison
        The models, each with its ROC curve, AUC and interval.

    Returns
    -------
    go.Figure
        One curve per model in ``models`` order, legend entries ``"model · AUC 0.950
        (0.910-0.980)"``.
    """
    fig = go.Figure()
    _add_chance_diagonal(fig)
    for i, model in enumerate(comparison.models):
        name = f"{_shown(model.id)} · AUC {format_auc(model.auc, model.auc_ci)}"
        fig.add_trace(_curve(model.fpr, model.tpr, name, i))
    _unit_square(fig, "False positive rate (1 - specificity)", "True positive rate (sensitivity)")
    title = (
        f"ROC of {_shown(comparison.positive)}, {_shown(comparison.unit)} level"
        f"<br><sup>same {comparison.n} cases from {comparison.n_patients} patients</sup>"
    )
    _style(fig, title, _CURVE_HEIGHT_PX)
    return fig


# --------------------------------------------------------------------------------------------
# Shared pieces


def _curve(x: Sequence[float], y: Sequence[float], name: str, i: int) -> go.Scatter:
    return go.Scatter(
        x=x,
        y=y,
        mode="lines",
        line=dict(color=_colour(i), width=2),
        name=name,
        hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>",
    )


def _add_chance_diagonal(fig: go.Figure, name: str = "chance") -> None:
    fig.add_trace(
        go.Scatter(
            x=[0.0, 1.0],
            y=[0.0, 1.0],
            mode="lines",
            line=dict(color=_CHANCE_COLOUR, width=1, dash="dash"),
            name=name,
            hoverinfo="skip",
            legendrank=2000,  # drawn first, below the curves, but listed last
        )
    )


def _unit_square(fig: go.Figure, x_title: str, y_title: str) -> None:
    """Axes 0..1 with equal aspect (a slight margin so curves at 0 and 1 stay visible)."""
    axis = dict(range=[-0.01, 1.01], dtick=0.2, constrain="domain", zeroline=False)
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, scaleanchor="x", scaleratio=1, **axis)


_LEGEND_LINE_PX = 21


def _style(fig: go.Figure, title: str, height: int) -> None:
    """Template, title, height, and the legend under the plot, one entry per line: it covers no
    curve and leaves the plot its width in a narrow page column."""
    entries = sum(1 for trace in fig.data if trace.type == "scatter" and trace.showlegend is not False)
    legend_px = _LEGEND_LINE_PX * entries + 16 if entries else 0
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0.0, xanchor="left"),
        height=height + legend_px,
        margin=dict(l=60, r=20, t=60, b=60 + legend_px),
        legend=dict(
            orientation="v",
            x=0.0,
            xanchor="left",
            y=0.0,
            yanchor="bottom",
            yref="container",
            bgcolor="rgba(255, 255, 255, 0.8)",
        ),
    )
