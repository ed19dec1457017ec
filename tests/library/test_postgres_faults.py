"""What can go wrong with a PostgreSQL library, and what the user is told: a server that is not
there, a database that holds something else or nothing, connections the server dropped, an
address with a password (never shown)."""

from __future__ import annotations

import psycopg
import pytest

from core.cli.main import main
from core.library.base import LibraryError, MissingLibraryError
from core.library.postgres import PostgresLibrary, public_location
from core.library.store import open_library
from tests.browser import free_port
from tests.library.test_faults import one_error_line
from tests.pg import PostgresServer, run_sql

PASSWORD = "Sekr1t-pw"


def test_an_address_is_shown_without_its_password() -> None:
    assert public_location(f"postgresql://dr:{PASSWORD}@db.example:5433/lib") == "postgresql://dr@db.example:5433/lib"
    assert public_location("postgresql://dr@db.example/lib") == "postgresql://dr@db.example/lib"
    assert (
        public_location(f"postgresql://dr@db.example/lib?sslmode=require&password={PASSWORD}")
        == "postgresql://dr@db.example/lib?sslmode=require"
    )


def test_a_server_that_is_not_there_is_one_plain_line_without_the_password(capsys: pytest.CaptureFixture) -> None:
    url = f"postgresql://dr:{PASSWORD}@127.0.0.1:{free_port()}/lib"
    with pytest.raises(
        LibraryError, match=r"^The case library at postgresql://dr@127\.0\.0\.1:\d+/lib cannot be reached"
    ):
        open_library(url)
    assert main(["library", "stats", "--library", url]) != 0
    line = one_error_line(capsys)
    assert "cannot be reached" in line and PASSWORD not in line


def test_a_database_of_something_else_is_refused_untouched(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    try:
        run_sql(url, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total NUMERIC)")
        with pytest.raises(LibraryError, match="holds tables but is not a case library; it was left untouched"):
            open_library(url)
        tables = {r[0] for r in run_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"invoices"}
    finally:
        postgres_server.drop_later(url)


def test_an_empty_database_is_no_library_to_a_command_that_reads_one(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture
) -> None:
    url = postgres_server.create_database()
    try:
        with pytest.raises(MissingLibraryError):
            open_library(url, create=False)
        assert main(["library", "stats", "--library", url]) != 0
        assert "There is no case library in the database" in one_error_line(capsys)
        assert run_sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []  # nothing made
    finally:
        postgres_server.drop_later(url)


def test_connections_the_server_dropped_are_replaced_without_an_error(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    try:
        library = open_library(url)
        assert isinstance(library, PostgresLibrary)
        before = library.counts()
        # The server ends every session of the library (a restart, an administrator, a timeout).
        with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()) AS t",
                (url.rsplit("/", 1)[-1],),
            ).fetchone()[0]
        assert ended >= 1
        assert library.counts() == before  # the pool lends a new connection, the page goes on
        assert open_library(url).counts() == before
    finally:
        postgres_server.drop_later(url)
