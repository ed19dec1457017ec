"""The Kaplan-Meier figure: step curves with confidence bands and censor marks, the numbers at
risk underneath, the log-rank p-value and hazard ratio in a corner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, unlabel_rgb
from plotly.subplots import make_subplots

from core.survival.km import KMAnalysis, KMGroup

#: Okabe-Ito colours, colour-blind safe; blue and vermillion first for the usual two groups.
KM_COLOURS: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)

#: How each grouping of :data:`core.survival.analysis.GROUPINGS` is named on the page and in reports.
GROUPING_LABELS: dict[str, str] = {
    "model": "Model risk",
    "model-1scan": "Model risk, 1 scan",
    "clinical": "Clinical factors (age, sex)",
    "age": "Age band",
    "sex": "Sex",
    "s": "Threshold on s(t)",
}

_BAND_OPACITY = 0.18
_FONT_SIZE = 13


def km_figure(
    analysis: KMAnalysis,
    *,
    title: str = "",
    colours: Mapping[str, str] | None = None,
    height: int = 460,
    y_title: str = "Proportion without the event",
    x_title: str = "Days",
) -> go.Figure:
    """One step curve per group with its confidence band (translucent, same colour), "+" marks at
    censored times, the median in the legend and as a dotted line to 0.5; under it, the number
    at risk at each of ``analysis.at_risk_times``.

    Parameters
    ----------
    analysis
        From :func:`core.survival.km.km_analysis`.
    title
        Figure title; none by default (the page has a heading).
    colours
        Group name to ``#RRGGBB`` or ``rgb(r, g, b)``; groups not named take :data:`KM_COLOURS`
        in order.
    height
        Pixels, curves and at-risk table together.
    y_title, x_title
        Axis titles, e.g. "Proportion still in hospital", "Days since admission".
    """
    palette = _group_colours(analysis.groups, colours or {})
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.78, 0.22],
        vertical_spacing=0.16,
    )
    for group in analysis.groups:
        colour = palette[group.name]
        fig.add_trace(_band_trace(group, colour, analysis.alpha), row=1, col=1)
        fig.add_trace(_curve_trace(group, colour, analysis.alpha), row=1, col=1)
        fig.add_trace(_censor_trace(group, colour), row=1, col=1)
        if group.median_time is not None:
            fig.add_shape(
                type="line",
                x0=group.median_time,
                x1=group.median_time,
                y0=0,
                y1=0.5,
                line=dict(color=colour, width=1.5, dash="dot"),
                row=1,
                col=1,
            )
        fig.add_trace(_at_risk_trace(group, analysis.at_risk_times, colour), row=2, col=1)
    if any(g.median_time is not None for g in analysis.groups):
        fig.add_hline(y=0.5, line=dict(color="#999999", width=1, dash="dot"), row=1, col=1)
    fig.add_annotation(
        text=comparison_text(analysis),
        xref="x domain",
        yref="y domain",
        x=0.99,
        y=0.98,
        xanchor="right",
        yanchor="top",
        align="right",
        showarrow=False,
        bgcolor="rgba(255,255,255,0.85)",
        bordercolor="#cccccc",
        borderwidth=1,
        font=dict(size=_FONT_SIZE),
    )
    _layout(fig, analysis, title, height, y_title, x_title)
    return fig


def y_title(endpoint: str) -> str:
    """The curves' axis title for an endpoint of :data:`core.survival.analysis.ENDPOINTS`."""
    return "Proportion still in hospital" if endpoint == "discharge" else "Proportion alive"


def comparison_text(analysis: KMAnalysis) -> str:
    """The corner annotation: "log-rank p = 3.1e-05<br>HR 2.41 (95% CI 1.50-3.88)", one line per
    group against the reference when there are more than two, or why a number is missing."""
    if len(analysis.groups) < 2:
        return "One group: nothing to compare"
    lines = [
        "log-rank p: not available" if analysis.logrank_p is None else f"log-rank p {format_p(analysis.logrank_p)}"
    ]
    level = f"{100 * (1 - analysis.alpha):g}% CI"
    if analysis.hazard_ratio is not None and analysis.hazard_ratio_ci is not None:
        lo, hi = analysis.hazard_ratio_ci
        lines.append(f"HR {analysis.hazard_ratio:.2f} ({level} {lo:.2f}-{hi:.2f})")
    elif analysis.hazard_ratios:
        lines.append(f"HR vs {analysis.reference}:")
        lines.extend(f"{name} {hr:.2f} ({lo:.2f}-{hi:.2f})" for name, (hr, lo, hi) in analysis.hazard_ratios.items())
    else:
        lines.append("HR: not estimable")
    return "<br>".join(lines)


def format_p(p: float) -> str:
    """'= 0.042', '= 3.1e-05' below 0.001, '< 1e-16' below double precision."""
    if p < 1e-16:
        return "< 1e-16"
    return f"= {p:.1e}" if p < 0.001 else f"= {p:.3f}"


def legend_name(group: KMGroup) -> str:
    """'High risk (n=40, 22 events, median 9 d)'."""
    events = f"{group.events} event" + ("" if group.events == 1 else "s")
    median = "median not reached" if group.median_time is None else f"median {group.median_time:.1f} d"
    return f"{group.name} (n={group.n}, {events}, {median})"


def _group_colours(groups: Sequence[KMGroup], colours: Mapping[str, str]) -> dict[str, str]:
    unnamed = iter(c for c in KM_COLOURS * (len(groups) // len(KM_COLOURS) + 1) if c not in colours.values())
    return {g.name: colours[g.name] if g.name in colours else next(unnamed) for g in groups}


def _rgba(colour: str, alpha: float) -> str:
    """``#RRGGBB`` / ``#RGB`` / ``rgb(r, g, b)`` as ``rgba(r, g, b, alpha)``."""
    if colour.startswith("#"):
        hex_digits = colour[1:]
        if len(hex_digits) == 3:
            hex_digits = "".join(ch * 2 for ch in hex_digits)
        r, g, b = hex_to_rgb("#" + hex_digits)
    elif colour.startswith("rgb(") and colour.endswith(")"):
        r, g, b = (int(float(x)) for x in unlabel_rgb(colour))
    else:
        raise ValueError(f"colours must be '#RRGGBB' or 'rgb(r, g, b)', not {colour!r}")
    return f"rgba({r}, {g}, {b}, {alpha})"


def _steps(times: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The corners of a right-continuous step function: each value held until the next time."""
    xs, ys = [times[0]], [values[0]]
    for t, v in zip(times[1:], values[1:], strict=True):
        xs += [t, t]
        ys += [ys[-1], v]
    return xs, ys


def _band_trace(group: KMGroup, colour: str, alpha: float) -> go.Scatter:
    # One closed polygon (upper steps out, lower steps back): a fill that never leaks onto
    # the neighbouring group's band, as "tonexty" would with traces in between.
    xu, yu = _steps(group.timeline, group.ci_upper)
    xl, yl = _steps(group.timeline, group.ci_lower)
    return go.Scatter(
        x=xu + xl[::-1],
        y=yu + yl[::-1],
        fill="toself",
        fillcolor=_rgba(colour, _BAND_OPACITY),
        line=dict(width=0),
        mode="lines",
        name=f"{group.name} {100 * (1 - alpha):g}% CI",
        legendgroup=group.name,
        showlegend=False,
        hoverinfo="skip",
    )


def _curve_trace(group: KMGroup, colour: str, alpha: float) -> go.Scatter:
    level = f"{100 * (1 - alpha):g}% CI"
    return go.Scatter(
        x=list(group.timeline),
        y=list(group.survival),
        customdata=list(zip(group.ci_lower, group.ci_upper, strict=True)),
        mode="lines",
        line=dict(color=colour, width=2.5, shape="hv"),
        name=legend_name(group),
        legendgroup=group.name,
        hovertemplate=(
            f"<b>{group.name}</b><br>day %{{x:.1f}}<br>S(t) = %{{y:.3f}}<br>"
            f"{level} %{{customdata[0]:.3f}}-%{{customdata[1]:.3f}}<extra></extra>"
        ),
    )


def _censor_trace(group: KMGroup, colour: str) -> go.Scatter:
    return go.Scatter(
        x=list(group.censor_times),
        y=list(group.censor_survival),
        mode="markers",
        marker=dict(symbol="cross-thin", size=10, color=colour, line=dict(color=colour, width=2)),
        name=f"{group.name} censored",
        legendgroup=group.name,
        showlegend=False,
        hovertemplate=f"<b>{group.name}</b><br>censored at day %{{x:.1f}}<extra></extra>",
    )


def _at_risk_trace(group: KMGroup, times: Sequence[float], colour: str) -> go.Scatter:
    return go.Scatter(
        x=list(times),
        y=[group.name] * len(times),
        text=[str(n) for n in group.at_risk],
        mode="text",
        textfont=dict(color=colour, size=_FONT_SIZE),
        cliponaxis=False,  # the count at day 0 sits on the axis line
        name=f"{group.name} at risk",
        legendgroup=group.name,
        showlegend=False,
        hoverinfo="skip",
    )


def _layout(fig: go.Figure, analysis: KMAnalysis, title: str, height: int, y_title: str, x_title: str) -> None:
    last_day = max((g.timeline[-1] for g in analysis.groups), default=1.0) or 1.0
    ticks = list(analysis.at_risk_times)
    # A little room left of day 0 so the first count clears the group names.
    fig.update_xaxes(range=[-0.025 * last_day, last_day * 1.03], tickvals=ticks, zeroline=False)
    # The day labels sit under the curves (with the axis title); the table's numbers share them.
    fig.update_xaxes(showticklabels=True, title=dict(text=x_title, standoff=4), row=1, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, showline=False, row=2, col=1)
    fig.update_yaxes(title_text=y_title, range=[0, 1.02], tickformat=".1f", row=1, col=1)
    names = [g.name for g in analysis.groups]
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=names[::-1],  # first group on top, as in the legend
        range=[-0.5, len(names) - 0.2],  # headroom under the day axis title
        ticksuffix="  ",
        showgrid=False,
        fixedrange=True,
        row=2,
        col=1,
    )
    fig.update_layout(
        height=height,
        title=dict(text=title) if title else None,
        font=dict(size=_FONT_SIZE),
        margin=dict(l=10, r=10, t=50 if title else 20, b=10),
        legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"),
        plot_bgcolor="white",
        hovermode="closest",
    )
    fig.update_xaxes(showline=True, linecolor="#888888", gridcolor="#eeeeee", row=1, col=1)
    fig.update_yaxes(showline=True, linecolor="#888888", gridcolor="#eeeeee", row=1, col=1)
    fig.add_annotation(
        text="<b>Number at risk</b>",
        xref="paper",
        yref="y2 domain",
        x=0,
        y=1,
        xanchor="left",
        yanchor="bottom",
        showarrow=False,
        font=dict(size=_FONT_SIZE),
    )
