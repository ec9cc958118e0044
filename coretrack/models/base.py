"""The declarative base every model derives from, its constraint naming, and how times are kept:
naive UTC (``utcnow``), written with a Z (``utc_iso``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def utc_iso(value: datetime) -> str:
    """A stored time (naive UTC) as the API and exports write it: ISO 8601 with a Z."""
    return value.isoformat() + "Z"


class Base(DeclarativeBase):
    # Named constraints, so migrations can alter them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
