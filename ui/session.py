"""Per-session memo of expensive results, kept in ``st.session_state`` (memory only).

Uploaded images and their predictions never leave the session: nothing is written to disk
and nothing is shared with other sessions (unlike ``st.cache_data``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
_MEMO_KEY = "_memo"
_MAX_ENTRIES = 256


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def memo(key: Hashable, compute: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return the session's stored value for ``key``, computing ``compute(*args, **kwargs)`` once."""
    store: dict[Hashable, object] = st.session_state.setdefault(_MEMO_KEY, {})
    if key not in store:
        if len(store) >= _MAX_ENTRIES:
            store.pop(next(iter(store)))
        store[key] = compute(*args, **kwargs)
    return store[key]  # type: ignore[return-value]
