from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_torchvision_imports_and_builds_models_through_the_fix() -> None:
    out = _run(
        "from core.torchvision_compat import ensure_torchvision\n"
        "tv = ensure_torchvision()\n"
        "import torch\n"
        "m = tv.models.densenet121(weights=None).eval()\n"
        "print(tuple(m(torch.zeros(1, 3, 64, 64)).shape))\n"
    )
    assert out.strip() == "(1, 1000)"


def test_the_fix_defines_nothing_where_the_extension_loads() -> None:
    out = _run(
        "import core.torchvision_compat as compat\n"
        "compat._extension_loads = lambda: True\n"
        "try:\n"
        "    compat.ensure_torchvision()\n"
        "except RuntimeError:\n"
        "    pass  # this CPU torch cannot load the CUDA extension: the import fails, untouched\n"
        "print(compat._library is None)\n"
    )
    assert out.strip() == "True"
