"""Readers: bytes in memory -> typed data (:mod:`core.types`). Nothing here writes to disk."""

from __future__ import annotations

from core.io.images import read_xray

__all__ = ["read_xray"]
