"""Shared fixtures. Tests never depend on the shipped demo weights unless marked ``demo_weights``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.library.migrate import migrate_library
from core.library.store import CaseLibrary, open_library
from tests.helpers import TINY_MODELS, register_tiny_model
from tests.pg import LIBRARY_BACKENDS, PostgresServer

#: Fixtures shared by several test folders (the ``deferred`` download recorder).
pytest_plugins = ["tests.report_helpers"]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per xdist worker (and in the processes tests start): with ``-n 2`` on a
    2-core machine, two workers of two threads each oversubscribe the cores, and torch's thread
    pool then runs about ten times slower (measured: the demo-weights tests took 240 s instead
    of 22 s)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with the three X-ray model ids, untrained, 64 px input."""
    folder = tmp_path_factory.mktemp("weights")
    for model_id in TINY_MODELS:
        register_tiny_model(folder, model_id)
    return folder


@pytest.fixture(scope="session")
def ct_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with a tiny untrained COVID3D and slice model (see tests/ct_helpers.py)."""
    from tests.ct_helpers import TINY_CT_MODELS, register_tiny_ct_model

    folder = tmp_path_factory.mktemp("ct-weights")
    for model_id in TINY_CT_MODELS:
        register_tiny_ct_model(folder, model_id)
    return folder


@pytest.fixture
def chest_png() -> bytes:
    """A 256 px chest X-ray phantom (COVID-19, severity 0.8) as PNG bytes."""
    from core.demo.xray_phantom import generate_xray

    phantom = generate_xray("COVID-19", 0.8, seed=7, size=256)
    return phantom.to_png()


#: Size of the demo cohort the tests build (the app's default is 200).
TEST_PATIENTS = 6


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A case library built from a small demo cohort, shared read-only by the session's tests."""
    from core.library.demo import build_demo_library

    root = tmp_path_factory.mktemp("demo-library")
    build_demo_library(root, TEST_PATIENTS, seed=0, workers=1)
    return root


@pytest.fixture(autouse=True)
def _never_the_real_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may build or touch the app's own library under data/: point it at a scratch folder."""
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(tmp_path / "scratch-library"))
    monkeypatch.setenv("DASHBOARD_DEMO_PATIENTS", "3")
    # No background warm-up behind a test that opens Home (tests/pages/test_warmup.py turns it on).
    monkeypatch.setenv("DASHBOARD_WARM_UP", "0")


@pytest.fixture
def library_copy(demo_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, writable copy of the demo library, and the app pointed at it."""
    root = tmp_path / "library"
    shutil.copytree(demo_library, root)
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(root))
    return root


@pytest.fixture
def cohen_dataset(tmp_path: Path) -> Path:
    """A small covid-chestxray-dataset folder with good and bad rows; see tests.datasets."""
    from tests.datasets import write_cohen_dataset

    return write_cohen_dataset(tmp_path)


# ----------------------------------------------------------------------------- library backends


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL server per test process (xdist worker), started when first needed."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=LIBRARY_BACKENDS)
def library_backend(request: pytest.FixtureRequest) -> str:
    """The store of the test's libraries: ``"sqlite"`` or ``"postgresql"`` (the test runs on each)."""
    return request.param


@pytest.fixture
def make_location(library_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """A factory ``make_location(name="lib") -> str``: where a fresh, empty library of the
    test's backend goes (a folder under tmp_path, or the URL of a new database). The same name
    gives the same location within a test; the databases are dropped after it (by the next)."""
    locations: dict[str, str] = {}
    server: PostgresServer | None = None

    def make(name: str = "lib") -> str:
        nonlocal server
        if name not in locations:
            if library_backend == "sqlite":
                locations[name] = str(tmp_path / name)
            else:
                server = server or request.getfixturevalue("postgres_server")
                locations[name] = server.create_database()
        return locations[name]

    yield make
    if server is not None:
        for url in locations.values():
            server.drop_later(url)


@pytest.fixture
def library_location(make_location: Callable[..., str]) -> str:
    """Where a fresh, empty library goes, on each backend in turn (see :func:`make_location`)."""
    return make_location("lib")


@pytest.fixture
def make_library(make_location: Callable[..., str]) -> Callable[..., CaseLibrary]:
    """A factory ``make_library(name="lib") -> CaseLibrary``: a new library of the test's backend
    (the same name opens the same library again; ``"lib"`` is the one at ``library_location``),
    for tests that need two libraries."""

    def make(name: str = "lib") -> CaseLibrary:
        return open_library(make_location(name))

    return make


@pytest.fixture(scope="session")
def postgres_demo_library(demo_library: Path, postgres_server: PostgresServer) -> str:
    """The session's demo library copied into a PostgreSQL database (``library migrate``: the
    same ids, secret and files), once per process; the template :func:`library_copy_location`
    copies. Tests never open it."""
    url = postgres_server.create_database()
    report = migrate_library(open_library(demo_library, create=False), open_library(url))
    assert report.ok, report.problems
    return url


@pytest.fixture
def library_copy_location(
    library_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A private, writable copy of the demo library on each backend in turn (a folder as
    :func:`library_copy` makes, or a copy of :func:`postgres_demo_library`), and the app
    pointed at it."""
    if library_backend == "sqlite":
        yield str(request.getfixturevalue("library_copy"))
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database(template=request.getfixturevalue("postgres_demo_library"))
    monkeypatch.setenv("DASHBOARD_LIBRARY", url)
    yield url
    server.drop_later(url)
