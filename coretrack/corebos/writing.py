"""Writing the import's recipients and events a batch at a time, the fastest way each database takes.

PostgreSQL: ids reserved from the table's sequence, then COPY (an INSERT of many rows spends most of its
time in the driver building the statement).  SQLite: one INSERT of the batch (its executemany is the
driver's own loop), then the recipients' ids read back by their tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from ..models import AccessEvent, Recipient

RECIPIENT_COLUMNS = ("id", "email_id", "address", "name", "kind", "token", "tracked", "status", "reply", "attempts",
                     "sent_at", "access_count", "human_opens", "first_access", "last_access", "corebos_crmid",
                     "corebos_mailid", "contact_id", "account_id", "lead_id", "delivery_status", "delivery_detail")
EVENT_COLUMNS = ("recipient_id", "at", "ip", "user_agent", "verdict", "reason", "hits", "legacy", "time_known")
# What a recipient or an event imported from coreBOS has where the import says nothing.
_RECIPIENT_DEFAULTS = {"kind": "to", "tracked": True, "reply": "", "attempts": 0, "human_opens": 0,
                       "contact_id": None, "account_id": None, "lead_id": None, "delivery_status": "",
                       "delivery_detail": ""}
_LOOKUP = 500  # tokens a query (SQLite's parameters a statement are few on old versions)
_EVENT_DEFAULTS = {"ip": "", "user_agent": "", "verdict": "human", "reason": "", "hits": 1, "legacy": True}


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _copy(session: Session, table: str, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    raw: Any = session.connection().connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


def write_recipients(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Writes ``rows`` (Recipient's attributes) as recipients; their ids, in order."""
    rows = [{**_RECIPIENT_DEFAULTS, **row} for row in rows]
    if not _postgresql(session):
        # One INSERT for all (RETURNING in order would make SQLite take them one by one), then the ids
        # by their unique tokens.
        session.execute(insert(cast(Table, Recipient.__table__)), rows)
        tokens = [row["token"] for row in rows]
        found: dict[str, int] = {}
        for start in range(0, len(tokens), _LOOKUP):
            chunk = tokens[start:start + _LOOKUP]
            found.update((token, recipient_id) for recipient_id, token in session.execute(
                select(Recipient.id, Recipient.token).where(Recipient.token.in_(chunk))))
        return [found[token] for token in tokens]
    ids = list(session.scalars(text("SELECT nextval(pg_get_serial_sequence('recipients', 'id')) "
                                    "FROM generate_series(1, :n)"), {"n": len(rows)}))
    for row, recipient_id in zip(rows, ids, strict=True):
        row["id"] = recipient_id
    _copy(session, "recipients", RECIPIENT_COLUMNS, rows)
    return ids


def write_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Writes ``rows`` (recipient_id, at, time_known) as legacy access events."""
    if not rows:
        return
    rows = [{**_EVENT_DEFAULTS, **row} for row in rows]
    if _postgresql(session):
        _copy(session, "access_events", EVENT_COLUMNS, rows)
    else:
        # The table's own INSERT: the ORM's bulk path would look at every row's attributes again.
        session.execute(insert(cast(Table, AccessEvent.__table__)), rows)
