"""Make ``import torchvision`` work on a CPU-only torch.

The registry's torchvision 0.28.0 wheel is a CUDA build. Its compiled extension cannot load
against the CPU build of torch 2.13.0, and torchvision's ``_meta_registrations`` then tries to
register fake kernels for ``torchvision::nms`` / ``torchvision::qnms``, operators that were never
defined, so the import fails with ``RuntimeError: operator torchvision::nms does not exist``
(upstream pytorch/vision#9085).

:func:`ensure_torchvision` defines those two operator schemas with ``torch.library`` *only when
the extension fails to load*, before torchvision is first imported. Models, transforms and most
ops then work; ``torchvision.ops.nms`` and ``torchvision.io`` do not (this project reads images
with Pillow and pydicom). On a machine where the extension loads (a CUDA torch with a matching
torchvision) this module does nothing.

Import torchvision in this project only through :func:`ensure_torchvision`.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the torch.library.Library alive for the process


def _extension_loads() -> bool:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob("_C.*")):
            if candidate.suffix not in {".so", ".pyd"}:
                continue
            try:
                torch.ops.load_library(str(candidate))
            except (OSError, RuntimeError):
                return False
            return True
    return False


def ensure_torchvision() -> ModuleType:
    """Import and return ``torchvision``, defining missing op schemas first when needed."""
    global _library
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import torch

    if not _extension_loads() and _library is None:
        logger.info("torchvision extension does not load on this torch; defining op schemas")
        _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901
        for schema in _SCHEMAS.values():
            _library.define(schema)
    import torchvision

    return torchvision
