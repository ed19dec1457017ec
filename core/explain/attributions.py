"""Captum attributions for the 2D classifiers, as maps in [0, 1] over the original image.

Methods: Grad-CAM (the default; ``LayerGradCam`` on the manifest's layer, ReLU'd, upsampled),
Guided Grad-CAM, Integrated Gradients (baseline: the black image) and Occlusion (baseline:
black patches). Captum adds its hooks for the duration of one ``attribute`` call and removes
them in ``finally``; we hold the model's lock around it because the module is shared between
browser sessions. The module's train/eval mode is never changed.
"""

from __future__ import annotations

import warnings
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import DashboardError
from core.models.architectures import gradcam_layer_of
from core.models.registry import LoadedModel
from core.preprocess import baseline_input
from core.types import ExplanationMap

GRAD_CAM: Final = "Grad-CAM"
GUIDED_GRAD_CAM: Final = "Guided Grad-CAM"
INTEGRATED_GRADIENTS: Final = "Integrated Gradients"
OCCLUSION: Final = "Occlusion"
METHODS: Final[tuple[str, ...]] = (GRAD_CAM, GUIDED_GRAD_CAM, INTEGRATED_GRADIENTS, OCCLUSION)
#: Short names for the command line.
METHOD_ALIASES: Final[dict[str, str]] = {
    "gradcam": GRAD_CAM,
    "guided-gradcam": GUIDED_GRAD_CAM,
    "integrated-gradients": INTEGRATED_GRADIENTS,
    "occlusion": OCCLUSION,
}


def _to_unit(heat: torch.Tensor, out_hw: tuple[int, int], robust: bool) -> np.ndarray:
    """(h, w) non-negative map -> float32 (H, W) in [0, 1]; robust = scale by the 99.5th pct.

    Pixel-level methods (IG, guided) have a few extreme pixels that would otherwise make the
    rest of the map invisible.
    """
    heat = heat.detach().float().cpu()
    up = F.interpolate(heat[None, None], size=out_hw, mode="bilinear", align_corners=False)[0, 0]
    up = up.clamp_(min=0.0)
    top = float(torch.quantile(up.flatten()[:: max(1, up.numel() // 200_000)], 0.995)) if robust else float(up.max())
    if top <= 0.0 or not np.isfinite(top):
        return np.zeros(out_hw, dtype=np.float32)
    return (up / top).clamp_(0.0, 1.0).numpy().astype(np.float32)


def explain(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None,
    method: str = GRAD_CAM,
    out_hw: tuple[int, int] | None = None,
) -> ExplanationMap:
    """Attribute the logit of class ``target`` (None: the predicted class) for ``x`` (1, C, S, S).

    Returns an :class:`ExplanationMap` of shape ``out_hw`` (default (S, S)) in [0, 1].
    """
    return attribute(model, x, target, method, out_hw)[0]


def attribute(
    model: LoadedModel,
    x: torch.Tensor,
    target: int | None,
    method: str = GRAD_CAM,
    out_hw: tuple[int, int] | None = None,
) -> tuple[ExplanationMap, torch.Tensor]:
    """:func:`explain`, also returning the model's logits for ``x`` as a float32 (K,) CPU tensor.

    Grad-CAM takes one forward pass for both: the logits are recorded on the way and the
    target (when None) is chosen from them before the backward pass, which stops at the
    Grad-CAM layer. So prediction + Grad-CAM costs less than one forward + full backward.
    """
    from captum.attr import GuidedGradCam, IntegratedGradients, LayerGradCam, Occlusion

    method = METHOD_ALIASES.get(method, method)
    if method not in METHODS:
        raise DashboardError(f"Unknown attribution method '{method}'. Choose one of: {', '.join(METHODS)}.")
    card = model.card
    if target is not None and not 0 <= target < len(card.labels):
        raise DashboardError(f"Target class {target} is out of range for model {card.id}.")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"explain takes one input (1, C, S, S), got {tuple(x.shape)}")
    size = x.shape[-1]
    out_hw = out_hw or (size, size)
    module = model.module
    x = x.to(model.device)
    layer = gradcam_layer_of(module, card.gradcam_layer)
    seen: dict[str, torch.Tensor] = {}

    def target_logit(inp: torch.Tensor) -> torch.Tensor:
        logits = module(inp)
        seen["logits"] = logits[0].detach().float().cpu()
        index = int(logits[0].argmax()) if target is None else target
        seen["target"] = torch.tensor(index)
        return logits[:, index : index + 1]

    with model.lock:
        was_training = module.training
        module.eval()
        try:
            if method == GRAD_CAM:
                attr = LayerGradCam(target_logit, layer).attribute(x, target=0, relu_attributions=True)
                heat = attr[0].sum(0)
                robust = False
            else:
                with torch.inference_mode():
                    target_logit(x)
                index = int(seen["target"])
                if method == GUIDED_GRAD_CAM:
                    with warnings.catch_warnings():
                        # Captum announces its temporary ReLU hooks (removed after the call).
                        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                        attr = GuidedGradCam(module, layer).attribute(x.clone().requires_grad_(True), target=index)
                    heat = attr[0].abs().sum(0)
                    robust = True
                elif method == INTEGRATED_GRADIENTS:
                    attr = IntegratedGradients(module).attribute(
                        x,
                        baselines=baseline_input(card.input).to(model.device),
                        target=index,
                        n_steps=32,
                        internal_batch_size=8,
                    )
                    # Smooth the pixel-level map a little so the overlay reads as regions.
                    heat = F.avg_pool2d(attr[0].abs().sum(0)[None, None], 5, stride=1, padding=2)[0, 0]
                    robust = True
                else:
                    window = max(8, size // 7)
                    stride = max(4, size // 14)
                    channels = x.shape[1]
                    attr = Occlusion(module).attribute(
                        x,
                        sliding_window_shapes=(channels, window, window),
                        strides=(channels, stride, stride),
                        baselines=baseline_input(card.input).to(model.device),
                        target=index,
                        perturbations_per_eval=16,
                    )
                    # Positive = hiding this patch lowers the target score: evidence for the class.
                    heat = attr[0].mean(0)
                    robust = False
        finally:
            module.train(was_training)
    explanation = ExplanationMap(
        values=_to_unit(heat, out_hw, robust),
        method=method,
        target_label=card.labels[int(seen["target"])],
        model_id=card.id,
    )
    return explanation, seen["logits"]
