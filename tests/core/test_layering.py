"""The one-way layers of ``core``: a package imports only packages below it, and no module
imports itself back through others. Module-level and function-level imports count alike.

The order is :data:`LAYERS`, lowest first, with the reason where the code gave one; README
"Architecture" describes it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.helpers import ROOT

CORE = ROOT / "core"

#: Lowest first. A package (or top-level module) of core may import only those before it.
LAYERS: tuple[str, ...] = (
    "errors",
    "console",  # what the console shows of other libraries' logging and warnings: standard library only
    "types",
    "deployment",  # the data roots typed paths are confined to, and read-only mode: errors only
    "labels",  # every label vocabulary and the datasets' spellings
    "torchvision_compat",
    "ood",  # the OOD reference: numpy and torch only; the registry loads one with each model
    "models",
    "preprocess",
    "io",
    "demo",
    "report",  # the HTML document writer (no case logic): evaluation reports use it
    "explain",
    "findings",
    "inference",
    "library",
    "datasets",  # readers and splits of training data; the Cohen CT reader uses the library's importer
    "ct",
    "search",
    "trajectory",
    "evaluation",  # metrics, calibration, and a model's figures on its test split (uses ct's patient score)
    "survival",  # its risk check reports evaluation's binary metrics
    "text",  # the pages' wording; km_summary writes p-values as the survival figures do
    "case_reports",  # a page's case report, assembled from the analyses above and written by report
    "pacs",  # find, retrieve and send to an archive: results drawn as the case reports draw them
    "review",  # case-review meetings, reads and agreement statistics: may use the analyses and case reports
    "training",  # a trainer fits, then evaluates what it ships
    "cli",
    "__main__",
)


def _package(path: Path) -> str:
    rel = path.relative_to(CORE).with_suffix("")
    return rel.parts[0]


def _module(path: Path) -> str:
    name = ".".join(("core", *path.relative_to(CORE).with_suffix("").parts))
    return name.removesuffix(".__init__")


def _imports() -> list[tuple[Path, int, str]]:
    """(file, line, imported core module or name) for every import in core, at any depth."""
    out = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("core"):
                out += [(path, node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
                out.append((path, node.lineno, node.module or ""))
            elif isinstance(node, ast.Import):
                out += [(path, node.lineno, alias.name) for alias in node.names if alias.name.startswith("core")]
    return out


def test_every_part_of_core_has_a_place_in_the_order() -> None:
    parts = {_package(p) for p in CORE.rglob("*.py")} - {"__init__"}
    assert parts - set(LAYERS) == set(), "add the new package to LAYERS, where its imports put it"
    assert set(LAYERS) - parts == set(), "LAYERS names a package that no longer exists"


def test_no_package_imports_one_above_it() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for path, line, target in _imports():
        parts = target.split(".")
        if len(parts) < 2 or parts[1] not in rank:
            continue
        source = _package(path)
        if rank.get(parts[1], -1) > rank.get(source, len(LAYERS)):
            upward.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target} ({parts[1]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(set(upward)))


def test_no_module_imports_itself_back() -> None:
    modules = {_module(p) for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for path, _, target in _imports():
        if target in modules and target != _module(path):
            graph[_module(path)].add(target)
    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_core_never_imports_streamlit_or_the_ui() -> None:
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("streamlit", "ui", "pages")
            ]
    assert not offenders, offenders
