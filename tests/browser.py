"""What the browser tests and the load benchmark share: Debian's Chromium, its flags, a free port,
and a ``streamlit run app.py`` server on the loopback interface that stops with its test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type: the load benchmark uses Playwright's async API
    from playwright.sync_api import Page


#: The project root, where ``app.py`` is (not tests.helpers.ROOT: that module imports torch).
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: True once Streamlit has finished running the page and no element of an earlier run is left.
RUN_FINISHED_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-stale="true"]');
}
"""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_run_finished(page: Page, timeout_ms: float = 60_000) -> None:
    """Wait until Streamlit is not running ``page``'s script and every element is from the last run."""
    page.wait_for_function(RUN_FINISHED_JS, timeout=timeout_ms)


@dataclass(frozen=True)
class StreamlitServer:
    """A running ``streamlit run app.py``: the address it answers on and its process id."""

    url: str
    pid: int


@contextmanager
def streamlit_server(
    env: Mapping[str, str], log: Path, *, port: int = 0, start_timeout_s: float = 60.0
) -> Iterator[StreamlitServer]:
    """Run ``streamlit run app.py`` headless on the loopback interface with ``env`` and yield the
    server once its health check answers; it is stopped on leaving, its output in ``log``.

    ``port`` 0 takes a free one. Source files are not watched: other work in the same checkout
    must not rerun a page mid-test. A server that exits or does not answer within
    ``start_timeout_s`` is a RuntimeError with the last lines of its log.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless=true",
                f"--server.port={port}",
                "--server.address=127.0.0.1",
                "--server.fileWatcherType=none",
                "--browser.gatherUsageStats=false",
            ],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(url, proc, log, start_timeout_s)
            yield StreamlitServer(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


@contextmanager
def streamlit_app(env: Mapping[str, str], log: Path, *, start_timeout_s: float = 60.0) -> Iterator[str]:
    """:func:`streamlit_server` on a free port, yielding only its address (what a browser test needs)."""
    with streamlit_server(env, log, start_timeout_s=start_timeout_s) as server:
        yield server.url


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Return once ``url``'s health endpoint answers 200; a plain error (with the server's last
    lines) when the server exits first or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer within {timeout_s:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server log, for a failure message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
