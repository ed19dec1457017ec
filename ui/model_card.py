"""The parts of a model card the Home and Model performance pages both show: what the model
was trained on (domain, data, licences, caveats), its shortcut checks and its
"unlike my training data" detector with the measured detection figures."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import MissingModelError
from core.models.manifest import ModelCard
from ui import resources


def domain_badge(card: ModelCard) -> str:
    """A short tag for titles: "real data" or "demo"."""
    return "real data" if card.domain == "real" else "demo"


def model_label(model_id: str, short: bool = False) -> str:
    """How a model choice reads in a widget: its id and what it was trained on ("cxr-resnet18 (demo:
    trained on synthetic phantoms)", or with ``short`` "cxr-resnet18 (demo)"); other options as they are."""
    try:
        card = resources.registry().card(model_id)
    except MissingModelError:
        return model_id
    return f"{model_id} ({card.domain if short else card.domain_words})"


def provenance(card: ModelCard) -> None:
    """Domain, licences and caveats, in plain words."""
    data = card.training.get("data", {}) if card.training else {}
    st.markdown(f"**Domain:** {card.domain_words}.")
    licences = data.get("licences") if isinstance(data, dict) else None
    if licences:
        st.markdown(f"**Data sources and licences:** {licences}")
    caveats = card.extra.get("caveats")
    if caveats:
        st.warning(f"**Caveats:** {caveats}", icon=":material/report:")


def shortcut_checks(card: ModelCard) -> None:
    """The border check and where Grad-CAM looks, as measured on the held-out split."""
    checks = card.recorded_metrics.shortcuts
    if checks is None:
        return
    st.markdown(
        f"**Shortcut checks** (held-out split, {checks.n} images; the central region leaves out the outer "
        f"{checks.border:.0%} of each side, {checks.central_area:.0%} of the image)"
    )
    rows = [
        {"AUC": name, "plain": value, "borders blanked": checks.aucs_border_blanked.get(name)}
        for name, value in checks.aucs.items()
    ]
    left, right = st.columns(2)
    left.dataframe(pd.DataFrame(rows).set_index("AUC").style.format("{:.3f}", na_rep="-"), key=f"border_{card.id}")
    left.caption(
        "A model that reads the disease keeps its AUC when the borders (markers, frames, devices) are blanked."
    )
    share = pd.DataFrame({"Grad-CAM mass in the central region": checks.cam_central_share})
    right.dataframe(share.style.format("{:.1%}"), key=f"cam_share_{card.id}")
    right.caption(
        f"Share of each class's Grad-CAM ({checks.cam_target or 'the predicted class'}) inside the central "
        f"region; a map spread evenly would put {checks.central_area:.0%} there."
    )


def ood_detector(card: ModelCard) -> None:
    """How the model tells inputs unlike its training data, and how well it does."""
    ood = card.ood
    if not ood:
        st.caption("No 'unlike my training data' reference is fitted for this model: its inputs are not checked.")
        return
    layers = ood.get("layers") or []
    look = ood.get("lookalike")
    st.markdown(
        f"**Unlike its training data?** The score is the mean, over {len(layers) or 1} depths of the network "
        f"({', '.join(f'`{name}`' for name in layers)}), of the Mahalanobis distance of the input's features to "
        f"the training data (the nearest of {ood['classes']} class mean(s) at the penultimate layer), each over "
        f"its dev median; threshold {ood['threshold']:.2f} (accepts {ood['accept_dev']:.0%} of the dev split). "
        f"Fitted on {ood['fitted_on']}." + (f" Inputs that look like {look['what']} are refused too." if look else "")
    )
    detection = ood.get("detection")
    if not detection:
        return
    table = pd.DataFrame(detection["probes"]).set_index("kind")[["n", "auroc", "flagged", "description"]]
    table.columns = ["n", "detection AUROC", "share flagged", "what"]
    st.dataframe(table.style.format({"detection AUROC": "{:.3f}", "share flagged": "{:.0%}"}), key=f"ood_{card.id}")
    st.caption(
        f"Against its own held-out cases ({detection['held_out_n']}), of which {detection['held_out_flagged']:.0%} "
        "are flagged (false alarms)."
    )
