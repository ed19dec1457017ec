"""The learning curves of a model card: loss per epoch, as a trainer records them."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def learning_curves_figure(curves: list[dict], training: dict) -> go.Figure:
    """Loss per epoch from a model card's ``learning_curves``. A single run (X-ray: train and
    dev loss, the kept epoch marked) or k-fold (CT: each fold's train and validation loss, the
    kept fold drawn bold, its kept epoch marked)."""
    df = pd.DataFrame(curves)
    fig = go.Figure()
    if "fold" not in df:
        for col, name in (("train_loss", "train loss"), ("dev_loss", "dev loss")):
            if col in df:
                fig.add_trace(go.Scatter(x=df["epoch"], y=df[col], mode="lines+markers", name=name))
        best = training.get("best_epoch")
        if best:
            fig.add_vline(x=best, line_dash="dot", annotation_text=f"weights kept (epoch {best})")
    else:
        kept = training.get("kept_fold")
        palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
        for i, (fold, part) in enumerate(df.groupby("fold")):
            colour = palette[i % len(palette)]
            width = 3 if fold == kept else 1
            label = f"fold {fold}" + (" (kept)" if fold == kept else "")
            fig.add_trace(
                go.Scatter(
                    x=part["epoch"],
                    y=part["train_loss"],
                    mode="lines",
                    line=dict(color=colour, width=width, dash="dot"),
                    name=f"{label} train",
                    legendgroup=str(fold),
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=part["epoch"],
                    y=part["val_loss"],
                    mode="lines+markers",
                    line=dict(color=colour, width=width),
                    name=f"{label} validation",
                    legendgroup=str(fold),
                )
            )
        folds = training.get("folds") or []
        best = next((f.get("best_epoch") for f in folds if f.get("fold") == kept), None)
        if best:
            fig.add_vline(x=best, line_dash="dot", annotation_text=f"fold {kept}: weights kept (epoch {best})")
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=30, b=10),
        title="Learning curves" + (" (dotted: train, solid: validation)" if "fold" in df else ""),
        xaxis_title="epoch",
        yaxis_title="loss",
    )
    return fig
