"""One explainer for every network of the dashboard: Captum attributions of one output.

:class:`Explainer` binds a network, the layer Grad-CAM reads and the lock that guards the
network (a registered model is one instance shared by every browser session). One call,
:meth:`Explainer.attribute`, runs one Captum method on one input and gives an
:class:`Attribution`: the map, reduced over channels, on the layer's grid (Grad-CAM) or the
input's (the pixel methods), with the network's outputs from the same forward pass. With
Grad-CAM that one forward pass serves both, and the backward pass stops at the layer, so an
explained prediction costs little more than a prediction. :meth:`Attribution.resampled` puts
the map on any grid, scaled to [0, 1] (or [-1, 1] when signed); a map is cheapest made at the
size it is shown.

While ``attribute`` runs, the lock is held, the network is in eval mode and its parameters do
not require gradients (so the forward pass up to the Grad-CAM layer records no graph), and
Captum's hooks exist. Afterwards every submodule's train/eval mode and every parameter's
``requires_grad`` are what they were and no hook is left, also when the call fails. The input
is not modified.

Methods: Grad-CAM (``LayerGradCam`` on the layer; ReLU'd unless signed), and for 2D images
Guided Grad-CAM, Integrated Gradients and Occlusion (both against a baseline image).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.models.architectures import gradcam_layer_of
from core.models.registry import LoadedModel

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
#: Pixel-level maps have a few extreme pixels that would make the rest invisible: they are
#: scaled by their 99.5th percentile instead of their maximum.
ROBUST_METHODS: Final = frozenset({GUIDED_GRAD_CAM, INTEGRATED_GRADIENTS})


@dataclass(frozen=True, eq=False)
class Attribution:
    """One :meth:`Explainer.attribute` call's result.

    ``heat`` is float32 (N, *grid) on the CPU, one map per item of the batch (per time point
    for the survival model, whose CNN reads every X-ray of the series), not yet scaled.
    ``outputs`` is the network's output (N, K) of the same forward pass (after the call's
    ``output`` function, if any), float32 on the CPU; ``target`` the output index explained.
    """

    heat: torch.Tensor
    outputs: torch.Tensor
    target: int
    method: str

    def resampled(self, shape: tuple[int, ...], index: int = 0, *, signed: bool = False) -> np.ndarray:
        """Map ``index`` on the grid ``shape`` (2D bilinear or 3D trilinear, ``align_corners=False``),
        float32, divided by its largest magnitude: in [0, 1] (negative evidence clipped) or, when
        ``signed``, in [-1, 1]. An all-zero or non-finite map gives zeros."""
        heat = self.heat[index]
        if heat.ndim != len(shape) or heat.ndim not in (2, 3):
            raise ValueError(f"cannot resample a map of shape {tuple(heat.shape)} to {shape}")
        shape = tuple(int(s) for s in shape)
        if tuple(heat.shape) == shape:
            up = heat.clone()
        else:
            mode = "bilinear" if heat.ndim == 2 else "trilinear"
            up = F.interpolate(heat[None, None], size=shape, mode=mode, align_corners=False)[0, 0]
        # Interpolation weights are convex, so a map without negative values gives none, and the
        # map over its largest magnitude is within range: the passes over a 1024 px map that
        # clipping would cost are spent only where they change something.
        negative = bool(heat.min() < 0)
        if negative and not signed:
            up.clamp_(min=0.0)
        robust = self.method in ROBUST_METHODS
        if robust:
            magnitude = up.abs() if signed else up
            top = float(torch.quantile(magnitude.flatten()[:: max(1, up.numel() // 200_000)], 0.995))
        else:
            top = max(float(up.max()), -float(up.min()) if signed and negative else 0.0)
        if top <= 0.0 or not np.isfinite(top):
            return np.zeros(shape, dtype=np.float32)
        up.div_(top)
        if robust:
            up.clamp_(-1.0 if signed else 0.0, 1.0)
        return up.numpy()


class Explainer:
    """Captum attributions of one network at one layer, under the network's lock.

    Parameters
    ----------
    model
        A registered model (its module, device and lock; layer default: the card's
        ``gradcam_layer``) or a bare module (on its parameters' device; layer default: its
        ``gradcam_layer`` attribute).
    layer
        Dotted path of the Grad-CAM layer.
    lock
        Held around each call; default the registered model's lock, none for a bare module.
    """

    def __init__(
        self,
        model: LoadedModel | nn.Module,
        layer: str | None = None,
        *,
        lock: contextlib.AbstractContextManager | None = None,
    ) -> None:
        if isinstance(model, LoadedModel):
            self.module: nn.Module = model.module
            self.device = model.device
            default_layer, default_lock = model.card.gradcam_layer, model.lock
        else:
            self.module = model
            param = next(model.parameters(), None)
            self.device = param.device if param is not None else torch.device("cpu")
            default_layer, default_lock = getattr(model, "gradcam_layer", ""), contextlib.nullcontext()
        self.layer = gradcam_layer_of(self.module, default_layer if layer is None else layer)
        self.lock = default_lock if lock is None else lock

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """The lock held, the network in eval mode with frozen parameters; all given back after."""
        with self.lock:
            modes = [(m, m.training) for m in self.module.modules()]
            grads = [(p, p.requires_grad) for p in self.module.parameters()]
            try:
                self.module.eval()
                for p, _ in grads:
                    p.requires_grad_(False)
                yield
            finally:
                for m, mode in modes:
                    m.training = mode
                for p, flag in grads:
                    p.requires_grad_(flag)

    def attribute(
        self,
        x: torch.Tensor,
        target: int | None = None,
        *,
        method: str = GRAD_CAM,
        signed: bool = False,
        extra_args: tuple[object, ...] = (),
        output: Callable[[torch.Tensor], torch.Tensor] | None = None,
        baseline: torch.Tensor | None = None,
    ) -> Attribution:
        """Attribute output ``target`` (None: the first item's largest output) for the batch ``x``.

        Parameters
        ----------
        x
            The network's input; for the pixel methods one 2D image (1, C, H, W).
        method
            One of :data:`METHODS` (or a :data:`METHOD_ALIASES` name).
        signed
            Grad-CAM: keep the negative evidence (no ReLU).
        extra_args
            Further positional arguments of the network's forward (the survival model's lengths).
        output
            Applied to the network's output before the target is taken (e.g. ``torch.neg``: the
            survival model's risk of death is its negated logit). Grad-CAM only.
        baseline
            Integrated Gradients and Occlusion: the input that means "no evidence", like ``x``.
        """
        # Imported here: captum.attr brings matplotlib and IPython along, which took 2.6-4.7 s on
        # top of torch's 6-7 s (python -X importtime, loaded machine): every CLI command and page
        # would pay it at start-up, explained or not.
        from captum.attr import LayerGradCam

        method = METHOD_ALIASES.get(method, method)
        if method not in METHODS:
            raise ValueError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
        if method != GRAD_CAM and (output is not None or extra_args or x.ndim != 4 or x.shape[0] != 1):
            raise ValueError(f"{method} explains one 2D image (1, C, H, W) of a network's own outputs")
        if method in (INTEGRATED_GRADIENTS, OCCLUSION) and baseline is None:
            raise ValueError(f"{method} needs a baseline input")
        inp = x.detach().to(device=self.device, dtype=torch.float32, copy=True)
        seen: dict[str, torch.Tensor | int] = {}

        def target_output(batch: torch.Tensor, *args: object) -> torch.Tensor:
            out = self.module(batch, *args)
            if output is not None:
                out = output(out)
            index = int(out[0].argmax()) if target is None else target
            seen["outputs"], seen["target"] = out.detach().float().cpu(), index
            return out[:, index : index + 1]

        with self._held():
            if method == GRAD_CAM:
                attr = LayerGradCam(target_output, self.layer).attribute(
                    inp, target=0, additional_forward_args=extra_args or None, relu_attributions=not signed
                )
                heat = attr.sum(1)
            else:
                with torch.inference_mode():
                    target_output(inp)
                heat = self._pixel_map(inp, int(seen["target"]), method, baseline)
        outputs, index = seen["outputs"], seen["target"]
        assert isinstance(outputs, torch.Tensor) and isinstance(index, int)
        return Attribution(heat.detach().float().cpu(), outputs, index, method)

    def _pixel_map(self, x: torch.Tensor, index: int, method: str, baseline: torch.Tensor | None) -> torch.Tensor:
        """(1, H, W) map of a pixel-level method for output ``index`` of one image."""
        from captum.attr import GuidedGradCam, IntegratedGradients, Occlusion  # see attribute()

        if method == GUIDED_GRAD_CAM:
            with warnings.catch_warnings():
                # Captum announces its temporary ReLU hooks (removed after the call).
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                attr = GuidedGradCam(self.module, self.layer).attribute(x.requires_grad_(True), target=index)
            return attr.abs().sum(1)
        assert baseline is not None
        base = baseline.to(device=self.device, dtype=torch.float32)
        if method == INTEGRATED_GRADIENTS:
            attr = IntegratedGradients(self.module).attribute(
                x, baselines=base, target=index, n_steps=32, internal_batch_size=8
            )
            # Smooth the pixel-level map a little so the overlay reads as regions.
            return F.avg_pool2d(attr.abs().sum(1, keepdim=True), 5, stride=1, padding=2)[:, 0]
        size, channels = x.shape[-1], x.shape[1]
        window, stride = max(8, size // 7), max(4, size // 14)
        attr = Occlusion(self.module).attribute(
            x,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=base,
            target=index,
            perturbations_per_eval=16,
        )
        # Positive = hiding this patch lowers the target score: evidence for the class.
        return attr.mean(1)
