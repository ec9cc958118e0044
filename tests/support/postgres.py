"""PostgreSQL for the tests: the server scripts/test starts (``CORETRACK_TEST_POSTGRES_URL``; without
it the PostgreSQL runs are skipped), the migrated test database emptied before each test, fresh
databases and outages on that server, and the database parametrisation every ``config`` test runs."""

from __future__ import annotations

import os
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from coretrack.db import make_engine
from coretrack.schema import upgrade

POSTGRES_URL = os.environ.get("CORETRACK_TEST_POSTGRES_URL", "")
needs_postgresql = pytest.mark.skipif(
    not POSTGRES_URL, reason="no PostgreSQL: scripts/test starts one (or set CORETRACK_TEST_POSTGRES_URL)"
)
DATABASES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=needs_postgresql)]


@dataclass
class PostgresTestDatabase:
    """The PostgreSQL test database, migrated once; emptied before each test (measured: TRUNCATE
    ~30 ms, a database copied from a template ~100 ms)."""

    url: str

    def __post_init__(self):
        upgrade(self.url)
        self.engine = make_engine(self.url)
        with self.engine.connect() as connection:
            tables = connection.scalars(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )).all()
        self._truncate = text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    def empty(self) -> None:
        with self.engine.begin() as connection:
            # A connection a test left inside a transaction would block TRUNCATE: end them all
            # (ours only: autovacuum workers run as the superuser and must be left alone).  A backend
            # may end between the listing and the signal and its pid go to another role's process:
            # that one is not ours to stop, and is skipped.
            connection.execute(text(
                "DO $$ DECLARE backend int; BEGIN "
                "FOR backend IN SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND usename = current_user AND backend_type = 'client backend' LOOP "
                "BEGIN PERFORM pg_terminate_backend(backend); "
                "EXCEPTION WHEN insufficient_privilege THEN NULL; END; "
                "END LOOP; END $$"
            ))
            connection.execute(self._truncate)


class PostgresServer:
    """The PostgreSQL server scripts/test started, for tests that need their own database or must
    stop the server (outages).  Stopping needs its data directory (CORETRACK_TEST_POSTGRES_DATA)."""

    url = POSTGRES_URL
    data = os.environ.get("CORETRACK_TEST_POSTGRES_DATA", "")
    bin = os.environ.get("CORETRACK_TEST_POSTGRES_BIN", "")

    @classmethod
    @contextmanager
    def new_database(cls):
        """A fresh, empty database on the server; yields its URL, drops it afterwards."""
        name = f"coretrack_{uuid.uuid4().hex[:12]}"
        admin = make_engine(cls.url).execution_options(isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {name}"))
            yield cls.url.rsplit("/", 1)[0] + "/" + name
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        finally:
            admin.dispose()

    @classmethod
    def pg_ctl(cls, *arguments: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{cls.bin}/pg_ctl", "-D", cls.data, *arguments],
                       check=True, capture_output=True, timeout=60)

    @classmethod
    def stop(cls) -> None:
        cls.pg_ctl("-m", "fast", "-w", "stop")

    @classmethod
    def start(cls) -> None:
        cls.pg_ctl("-l", str(Path(cls.data).parent / "server.log"), "-w", "start")


can_stop_postgresql = pytest.mark.skipif(
    not (POSTGRES_URL and PostgresServer.data), reason="needs the PostgreSQL server that scripts/test starts"
)
