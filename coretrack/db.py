"""Database engines and sessions (upgrading the schema: schema.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Engine, Executable, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection

# Ids are Integer columns: 32 bits on PostgreSQL.  A larger number from a URL or a form names no
# row, and must not reach the driver (an overflow error there would be a 500).
MAX_ID = 2**31 - 1


def make_engine(url: str, *, fail_fast: bool = False) -> Engine:
    """An engine for the pages, the CLI and the worker; ``fail_fast`` for the image endpoint.

    The pages would rather wait a while for a busy database than fail.  The image endpoint must
    answer at once: a hit the database cannot take within about a second goes to the spool, and
    a hung database must not hold Apache's threads (every thread stuck on it is an image that
    does not load in someone's mail client).

    Every engine hides statement parameters from its error messages: they hold tracking tokens,
    addresses and password hashes, and those messages reach the logs.
    """
    if url.startswith("sqlite"):
        # timeout is SQLite's busy wait: concurrent writers queue.  Hits are written in batches,
        # one writer per process at a time, so the queue stays short under any load.
        busy_timeout = 1 if fail_fast else 10
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"timeout": busy_timeout, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:  # pragma: no cover
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args: dict[str, int | str] = {"connect_timeout": 10}
    if fail_fast:
        # libpq's shortest connect timeout is 2 s; a row or table lock held elsewhere waits 1 s at most.
        connect_args = {"connect_timeout": 2, "options": "-c lock_timeout=1000 -c statement_timeout=2000"}
    return create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         pool_timeout=2 if fail_fast else 30, connect_args=connect_args)


def changed_rows(session: Session, statement: Executable) -> int:
    """Runs an UPDATE or DELETE without refreshing the session's objects; how many rows it changed."""
    result = session.execute(statement, execution_options={"synchronize_session": False})
    return cast("CursorResult[Any]", result).rowcount


def insert_or_meet(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` in the form of the session's database, with its ON CONFLICT clause
    (``on_conflict_do_nothing``, ``on_conflict_do_update``): concurrent writers of one row meet there
    instead of one failing on the unique key."""
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
