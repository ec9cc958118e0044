"""Statements sent straight to the DBAPI cursor: a tenth of the cost of a Core statement's
execution, for the counting of hits (counting.py, anonymous.py), which runs for every batch.

"?" marks a parameter and "(?*)" a list of them; ``Driver`` writes them in the driver's parameter
style and hands times over as the database keeps them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@functools.lru_cache(maxsize=512)
def sql(statement: str, sqlite: bool, items: int = 0) -> str:
    """The statement in the driver's parameter style, with ``items`` parameters for its list."""
    statement = statement.replace("(?*)", "(" + ", ".join(["?"] * items) + ")")
    return statement if sqlite else statement.replace("?", "%s")


@contextmanager
def driver_on(connection: Connection) -> Iterator[Driver]:
    """A Driver on the connection; the driver's errors raised as SQLAlchemy's DBAPIError."""
    driver = Driver(connection)
    try:
        yield driver
    except driver.dbapi_error as error:
        raise DBAPIError.instance(driver.statement, None, error, driver.dbapi_error, hide_parameters=True,
                                  dialect=connection.dialect) from error
    finally:
        driver.cursor.close()


class Driver:
    """The counting statements on the connection's DBAPI cursor, in its parameter style and with
    times as its database keeps them."""

    def __init__(self, connection: Connection):
        self.sqlite = connection.dialect.name == "sqlite"
        self.lock_rows = "" if self.sqlite else " FOR UPDATE"
        self.dbapi_error: type[Exception] = connection.dialect.loaded_dbapi.Error
        self.cursor = connection.connection.cursor()
        self.statement = ""  # the last one sent, for errors

    def rows(self, statement: str, parameters: Sequence[Any] = (), items: int = 0) -> list[Any]:
        self.statement = sql(statement, self.sqlite, items)
        self.cursor.execute(self.statement, parameters)
        return list(self.cursor.fetchall())

    def write(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.statement = sql(statement, self.sqlite)
            self.cursor.executemany(self.statement, rows)

    def time(self, at: datetime) -> object:
        # SQLite keeps times as text, in SQLAlchemy's form, and compares them as text.
        return at.isoformat(" ", "microseconds") if self.sqlite else at

    def read_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value) if self.sqlite else value
