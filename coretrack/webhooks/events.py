"""The outbox: the events a webhook reports, written in the transaction of the change they report, so an
event is never lost and never sent for a change that was rolled back.

Each place a change happens calls ``emit`` (or ``emit_on`` inside the hit path's own statements) once,
with all its events: one query for the types some active endpoint wants, then one INSERT of those
events.  No endpoint wanting a type: nothing is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.orm import Session

from ..db import changed_rows
from ..models import Recipient, WebhookEvent, utc_iso
from ..tracking.driver import Driver, driver_on

DELIVERED = "email.delivered"
BOUNCED = "email.bounced"
OPENED = "email.opened"  # the recipient's first likely-human open
CLICKED = "email.clicked"  # a likely-human click
UNSUBSCRIBED = "address.unsubscribed"
COMPLAINED = "address.complained"
CONSENT_GIVEN = "consent.given"
CONSENT_WITHDRAWN = "consent.withdrawn"
# In the order the endpoint form offers them, with its labels.
TYPES = {
    DELIVERED: "delivered",
    BOUNCED: "bounced",
    OPENED: "opened by a person (first likely-human open)",
    CLICKED: "clicked by a person (likely-human click)",
    UNSUBSCRIBED: "unsubscribed",
    COMPLAINED: "complained (reported as spam)",
    CONSENT_GIVEN: "consent given",
    CONSENT_WITHDRAWN: "consent withdrawn",
}

_WANTED = "SELECT events FROM webhook_endpoints WHERE active"
_ADD = "INSERT INTO webhook_events (event_id, type, at, data, fanned_out) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class Event:
    """One event to report: its type, when it happened, and what receivers get as its data."""

    type: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def recipient_event(type_: str, at: datetime, recipient: Recipient | None = None, **details: Any) -> Event:
    """An event of one recipient of one email: which email, address and CRM record, and ``details``."""
    data: dict[str, Any] = {}
    if recipient is not None:
        data = {"email_id": recipient.email_id, "recipient_id": recipient.id, "address": recipient.address,
                "contact_id": recipient.contact_id, "account_id": recipient.account_id, "lead_id": recipient.lead_id}
    return Event(type_, at, {**data, **details})


def emit(session: Session, events: Sequence[Event]) -> int:
    """Writes the events some active endpoint wants into the outbox, in the session's transaction; how many."""
    if not events:
        return 0
    with driver_on(session.connection()) as driver:
        return emit_on(driver, events)


def emit_on(driver: Driver, events: Sequence[Event]) -> int:
    """``emit`` through the hit path's driver: two statements whatever the number of events."""
    if not events:
        return 0
    wanted = {name for (names,) in driver.rows(_WANTED) for name in names.split()}
    rows = [(new_event_id(), event.type, driver.time(event.at), json.dumps(_jsonable(event.data), sort_keys=True),
             False) for event in events if event.type in wanted]
    driver.write(_ADD, rows)
    return len(rows)


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {key: utc_iso(value) if isinstance(value, datetime) else value for key, value in data.items()}


def forget(session: Session, address: str) -> int:
    """Erasure: the outbox's events about the address go, with their deliveries (sent or not); how many."""
    named = f'"address": {json.dumps(address.strip().lower())}'
    return changed_rows(session, delete(WebhookEvent).where(
        func.lower(WebhookEvent.data).contains(named, autoescape=True)))
