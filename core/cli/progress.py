"""A progress bar for commands that report ``progress(done, total)``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from tqdm import tqdm


class LazyBar:
    """A tqdm bar that appears with the first progress report, not before: an input refused at
    once gives its one error line and nothing else. Use as a context manager."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit = desc, unit
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = tqdm(desc=self.desc, unit=self.unit, total=total)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def __enter__(self) -> LazyBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
