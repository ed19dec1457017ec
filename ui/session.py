"""Per-session memo of expensive results, kept in ``st.session_state`` (memory only).

Uploaded images and their predictions never leave the session: nothing is written to disk
and nothing is shared with other sessions (unlike ``st.cache_data``). A 2048 px radiograph and
each of its attribution maps weigh 16 MB as float32, so the memo has a byte budget and
forgets the oldest entries beyond it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import streamlit as st

T = TypeVar("T")
_MEMO_KEY = "_memo"
MAX_BYTES = 512 * 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_bytes(value: Any) -> int:
    """Bytes held in NumPy arrays inside ``value`` (tuples, lists, dataclasses)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple | list):
        return sum(_array_bytes(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_array_bytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def memo(key: Hashable, compute: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return the session's stored value for ``key``, computing ``compute(*args, **kwargs)`` once."""
    store: dict[Hashable, tuple[Any, int]] = st.session_state.setdefault(_MEMO_KEY, {})
    if key in store:
        return store[key][0]
    value = compute(*args, **kwargs)
    store[key] = (value, _array_bytes(value))
    total = sum(size for _, size in store.values())
    for old in list(store):
        if total <= MAX_BYTES or old == key:
            break
        total -= store.pop(old)[1]
    return value


_SHARED_XRAYS = "shared_xrays"


def share_xrays(files: list[tuple[str, bytes]]) -> None:
    """Remember the X-ray page's current images (name, bytes) for other pages of this session."""
    st.session_state[_SHARED_XRAYS] = list(files)


def shared_xrays() -> list[tuple[str, bytes]]:
    """The X-ray page's current images in this session, if any (memory only)."""
    return list(st.session_state.get(_SHARED_XRAYS, []))


_SHARED_CT = "shared_ct"


def share_ct(files: list[tuple[str, bytes]]) -> None:
    """Remember the CT volume page's current upload (name, bytes per file) for other pages of
    this session (the Case review page adds it to a meeting); an empty list forgets it."""
    st.session_state[_SHARED_CT] = list(files)


def shared_ct() -> list[tuple[str, bytes]]:
    """The CT volume page's current upload in this session, if any (memory only)."""
    return list(st.session_state.get(_SHARED_CT, []))
