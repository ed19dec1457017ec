"""Plotly figures of trajectories: one patient's score over time, the cohort's lines with their
median course, finding probabilities per X-ray, and the change of a finding per category."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

#: Colours of outcomes on cohort plots (colour-blind-safe Okabe-Ito hues).
OUTCOME_COLOURS = {"discharged": "#009E73", "died": "#D55E00", "in hospital": "#0072B2", None: "#999999"}


def trajectory_figure(
    days: list[float],
    values: list[float],
    study_ids: list[int],
    hover: list[str],
    *,
    y_title: str,
    threshold: float | None,
    threshold_label: str,
    end_day: float | None = None,
    end_label: str = "",
    x_title: str = "days since admission",
    selected: int | None = None,
) -> go.Figure:
    """One patient's score over time: a line through the scans (click a point to open it), the
    decision threshold dashed, the end of the stay dotted; ``selected`` study ringed."""
    fig = go.Figure(
        go.Scatter(
            x=days,
            y=values,
            mode="lines+markers",
            marker=dict(size=13, color="#CC3311", line=dict(width=1, color="white")),
            line=dict(width=2.5, color="#CC3311"),
            customdata=study_ids,
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            name="scans",
        )
    )
    if selected in study_ids:
        i = study_ids.index(selected)
        fig.add_trace(
            go.Scatter(
                x=[days[i]],
                y=[values[i]],
                mode="markers",
                marker=dict(size=22, color="rgba(0,0,0,0)", line=dict(width=3, color="black")),
                hoverinfo="skip",
                name="shown below",
            )
        )
    if threshold is not None:
        # Left, so it never lands on the end-of-stay label at the top right.
        fig.add_hline(
            y=threshold,
            line_dash="dash",
            line_color="#555",
            annotation_text=threshold_label,
            annotation_position="top left",
        )
    if end_day is not None:
        fig.add_vline(x=end_day, line_dash="dot", line_color="#555", annotation_text=end_label)
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=30, b=40),
        xaxis_title=x_title,
        yaxis_title=y_title,
        showlegend=False,
        font=dict(size=14),
    )
    return fig


def cohort_figure(
    lines: list[tuple[str, list[float], list[float], str | None, float | None]],
    curve_centres: list[float],
    curve_median: list[float],
    curve_q25: list[float],
    curve_q75: list[float],
    *,
    colour_by: str,
    highlight: str | None,
    y_title: str,
    x_title: str = "days since admission",
    threshold: float | None = None,
) -> go.Figure:
    """Every patient's trajectory as a thin line (coloured by outcome, or by length of stay), the
    median course with its interquartile band, and ``highlight`` drawn on top.

    ``lines``: (pseudonym, days, values, outcome, length of stay) per patient.
    """
    fig = go.Figure()
    stays = [s for *_, s in lines if s is not None]
    top = max(stays) if stays else 1.0
    shown_outcomes: set[str | None] = set()
    for name, days, values, outcome, stay in lines:
        if name == highlight:
            continue
        if colour_by == "outcome":
            colour = OUTCOME_COLOURS.get(outcome, OUTCOME_COLOURS[None])
            legend = outcome or "outcome unknown"
            show = outcome not in shown_outcomes
            shown_outcomes.add(outcome)
        else:
            colour = sample_colorscale("Viridis", [min((stay or 0.0) / top, 1.0)])[0]
            legend, show = "", False
        fig.add_trace(
            go.Scatter(
                x=days,
                y=values,
                mode="lines+markers",
                line=dict(width=1, color=colour),
                marker=dict(size=4, color=colour),
                opacity=0.45,
                name=legend,
                legendgroup=legend,
                showlegend=show,
                hovertemplate=f"{name}<br>day %{{x}}: %{{y:.2f}}<extra></extra>",
            )
        )
    if colour_by != "outcome" and stays:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                showlegend=False,
                marker=dict(
                    colorscale="Viridis",
                    cmin=0,
                    cmax=top,
                    color=[0],
                    showscale=True,
                    colorbar=dict(title=dict(text="stay (days)", side="right"), thickness=12),
                ),
                hoverinfo="skip",
            )
        )
    if curve_centres:
        fig.add_trace(
            go.Scatter(
                x=curve_centres + curve_centres[::-1],
                y=curve_q75 + curve_q25[::-1],
                fill="toself",
                fillcolor="rgba(60,60,60,0.18)",
                line=dict(width=0),
                hoverinfo="skip",
                name="interquartile range",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=curve_centres,
                y=curve_median,
                mode="lines",
                line=dict(width=4, color="#222"),
                name="median",
                hovertemplate="median, day %{x}: %{y:.2f}<extra></extra>",
            )
        )
    for name, days, values, _, _ in lines:
        if name == highlight:
            fig.add_trace(
                go.Scatter(
                    x=days,
                    y=values,
                    mode="lines+markers",
                    line=dict(width=4, color="#CC3311"),
                    marker=dict(size=10, color="#CC3311"),
                    name=name,
                    hovertemplate=f"{name}<br>day %{{x}}: %{{y:.2f}}<extra></extra>",
                )
            )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="#555")
    fig.update_layout(
        height=440,
        margin=dict(l=10, r=10, t=30, b=40),
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        font=dict(size=14),
    )
    return fig


def findings_heatmap(findings: list[str], columns: list[str], values: list[list[float]]) -> go.Figure:
    """Finding probabilities (rows) per X-ray (columns), 0-100%, with the value in each cell."""
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=columns,
            y=findings,
            zmin=0,
            zmax=1,
            colorscale="Reds",
            text=[[f"{v:.0%}" for v in row] for row in values],
            texttemplate="%{text}",
            hovertemplate="%{y}, %{x}: %{z:.1%}<extra></extra>",
            colorbar=dict(title=dict(text="P(present)", side="right"), tickformat=".0%", thickness=12),
        )
    )
    fig.update_layout(height=60 + 32 * len(findings), margin=dict(l=10, r=10, t=10, b=30), font=dict(size=13))
    fig.update_yaxes(autorange="reversed")
    return fig


CATEGORY_COLOURS = {"Worse": "#D55E00", "Stable": "#999999", "Improved": "#009E73"}


def change_box_figure(changes: dict[str, list[float]], finding: str) -> go.Figure:
    """Box plots of one finding's change between sequential X-rays, per category."""
    fig = go.Figure()
    for category, values in changes.items():
        fig.add_trace(
            go.Box(
                y=values,
                name=f"{category} (n = {len(values)})",
                marker_color=CATEGORY_COLOURS.get(category, "#555"),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker=dict(size=4, opacity=0.5),
            )
        )
    fig.add_hline(y=0, line_dash="dot", line_color="#555")
    fig.update_layout(
        height=360,
        margin=dict(l=10, r=10, t=30, b=30),
        yaxis_title=f"change in P({finding})",
        showlegend=False,
        font=dict(size=14),
    )
    return fig
