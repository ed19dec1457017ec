"""Fuzzing the model manifest (``weights/manifest.json``) as the registry reads it: every page
and command that uses a model opens :class:`core.models.registry.ModelRegistry` first.

Inputs: random JSON documents (nested lists, objects, numbers, strings, up to about 40 values);
documents shaped like a manifest whose entries are a valid entry with keys removed or given
random JSON values, extra keys, and odd ids and weights file names (``../``, a NUL, empty,
folders); and raw bytes (invalid UTF-8, a BOM, deeply nested brackets).

Property: the registry opens and then every card's plain accessors (``cards``, ``card``,
``domain_words``, ``ood``, ``multi_label``) and :meth:`ModelRegistry.load` give a result, or
they raise a :class:`DashboardError` whose message is one plain line (:mod:`tests.fuzz.plain`);
nothing else. No weights file exists, so ``load`` stops at the file check.

Bounds: every manifest is under 64 KiB; each example must finish within the profile's deadline
(5 s, :mod:`tests.fuzz.conftest`); memory stays at the size of the parsed JSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import DashboardError
from core.models.manifest import MANIFEST_NAME
from core.models.registry import ModelRegistry
from tests.fuzz.plain import assert_plain, result_or_plain_error

_VALID_ENTRY: dict[str, Any] = {
    "id": "cxr-fuzz",
    "version": "1",
    "architecture": "resnet18",
    "architecture_kwargs": {"num_classes": 3},
    "weights_file": "cxr-fuzz.pt",
    "sha256": "0" * 64,
    "input_kind": "xray",
    "input": {"size": 64, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
    "labels": ["COVID-19", "Normal", "Viral pneumonia"],
    "gradcam_layer": "layer4",
    "intended_use": "fuzzing",
    "temperature": 1.0,
    "thresholds": {"COVID-19": 0.5},
}

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)
_ODD_NAMES = st.sampled_from(["", "../up.pt", "/abs.pt", "a\x00b.pt", ".", "sub/", "line\nbreak", "x" * 300])


@st.composite
def entries(draw: st.DrawFn) -> Any:
    entry = dict(_VALID_ENTRY)
    for key in draw(st.lists(st.sampled_from(sorted(entry)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del entry[key]
        else:
            entry[key] = draw(_JSON)
    for key in draw(st.lists(st.sampled_from(["id", "weights_file"]), max_size=2, unique=True)):
        entry[key] = draw(_ODD_NAMES)
    if draw(st.booleans()):
        entry["input"] = {
            **_VALID_ENTRY["input"],
            draw(st.sampled_from(["size", "mean", "window", "depth"])): draw(_JSON),
        }
    entry.update(draw(st.dictionaries(st.sampled_from(["ood", "task", "domain", "extra"]), _JSON, max_size=2)))
    return entry


_DOCUMENTS = st.one_of(
    _JSON,
    st.fixed_dictionaries({"models": st.lists(entries(), max_size=3)}, optional={"schema_version": _JSON}),
    st.fixed_dictionaries({"models": _JSON}),
)


def check(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / MANIFEST_NAME).write_bytes(raw)
        registry = result_or_plain_error(lambda: ModelRegistry(folder, device=torch.device("cpu")))
        if isinstance(registry, DashboardError):
            return
        for card in registry.cards():
            assert isinstance(card.domain_words, str) and isinstance(card.multi_label, bool)
            assert card.ood is None or isinstance(card.ood, dict)
            assert registry.card(card.id) is card
            outcome = result_or_plain_error(lambda: registry.load(card.id))  # noqa: B023 (called at once)
            assert isinstance(outcome, DashboardError)  # no weights file exists
        for kind in ("xray", "ct-volume"):
            assert isinstance(registry.classifier_ids(kind), list)
        missing = result_or_plain_error(lambda: registry.card("no such model"))
        assert isinstance(missing, DashboardError)
        assert_plain(str(missing))


@given(_DOCUMENTS)
# Found by this test: a manifest that is not an object and an entry whose "input" is null
# (AttributeError), a weights file name with a line break (a message on two lines). An id that
# is an object, once shown as a Python dict in messages, is now refused.
@example(None)
@example({"models": [{**_VALID_ENTRY, "input": None}]})
@example({"models": [{**_VALID_ENTRY, "id": {"a": [1]}}]})
@example({"models": [{**_VALID_ENTRY, "weights_file": "line\nbreak"}]})
# Found by the long run: a weights file name too long for the file system (OSError).
@example({"models": [{**_VALID_ENTRY, "weights_file": "x" * 300}]})
def test_manifests_of_random_json_open_or_refuse_plainly(document: Any) -> None:
    check(json.dumps(document).encode())


@given(st.binary(max_size=256) | st.sampled_from([b"\xef\xbb\xbf{}", b'{"models": [}']))
# Found by this test: bytes that are not UTF-8 (UnicodeDecodeError) and brackets nested deeper
# than Python recurses (RecursionError).
@example(b"\x80")
@example(b"[" * 100_000)
def test_manifests_of_random_bytes_open_or_refuse_plainly(raw: bytes) -> None:
    check(raw)
