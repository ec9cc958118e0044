"""The endpoints admins register: their URL, the event types they get, their secret (kept encrypted
with the install's key, as the SMTP password is: secretbox.py) and its rotation; each endpoint's log
of deliveries, and "send again".
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import secretbox
from ..models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from ..validation import ValidationError, text_problem, web_address
from . import signing
from .events import TYPES

# How long the replaced secret still signs after a rotation: a day to update the receivers.
ROTATION_WINDOW = timedelta(hours=24)
URL_LENGTH = 2000  # the column's
LOG_ROWS = 200  # deliveries an endpoint's page lists
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def _checked(url: str, types: Collection[str]) -> tuple[str, str]:
    """(the URL, the types as stored); ValidationError naming each field that is wrong."""
    url = url.strip()
    errors: dict[str, str] = {}
    if not url or len(url) > URL_LENGTH or text_problem(url) or web_address(url) is None:
        errors["url"] = f"enter an http:// or https:// URL with a host, at most {URL_LENGTH} characters"
    chosen = [name for name in TYPES if name in types]
    if not chosen or set(types) - set(TYPES):
        errors["events"] = "choose at least one of the events listed"
    if errors:
        raise ValidationError(errors)
    return url, " ".join(chosen)


def create(session: Session, key: bytes, url: str, types: Collection[str], user_name: str) -> WebhookEndpoint:
    """A new active endpoint with a new secret; commits."""
    url, chosen = _checked(url, types)
    endpoint = WebhookEndpoint(url=url, events=chosen, active=True, user_name=user_name, created_at=utcnow(),
                               secret=secretbox.encrypt(key, signing.new_secret()), previous_secret="")
    session.add(endpoint)
    session.commit()
    return endpoint


def change(session: Session, endpoint: WebhookEndpoint, url: str, types: Collection[str], active: bool) -> None:
    """Its URL, event types and whether it gets events; commits.  Events already made keep going to it."""
    endpoint.url, endpoint.events = _checked(url, types)
    endpoint.active = active
    session.commit()


def rotate(session: Session, key: bytes, endpoint: WebhookEndpoint, now: datetime | None = None) -> None:
    """A new secret; the one it replaces still signs for ROTATION_WINDOW (each delivery carries both
    signatures meanwhile).  Commits."""
    endpoint.previous_secret, endpoint.secret = endpoint.secret, secretbox.encrypt(key, signing.new_secret())
    endpoint.previous_until = (now or utcnow()) + ROTATION_WINDOW
    session.commit()


def delete(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries (the database cascades); commits."""
    session.delete(endpoint)
    session.commit()


def secret(key: bytes, endpoint: WebhookEndpoint) -> str:
    """The current secret in clear, for the admin who sets up the receiver."""
    return secretbox.decrypt(key, endpoint.secret)


def signing_secrets(key: bytes, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the replaced one within its window."""
    found = [secret(key, endpoint)]
    if endpoint.previous_secret and endpoint.previous_until is not None and now < endpoint.previous_until:
        found.append(secretbox.decrypt(key, endpoint.previous_secret))
    return [value for value in found if value]


def wants(endpoint: WebhookEndpoint) -> set[str]:
    return set(endpoint.events.split())


@dataclass(frozen=True)
class LogRow:
    """One delivery as the endpoint's page lists it."""

    delivery: WebhookDelivery
    event_id: str
    type: str
    at: datetime


def log(session: Session, endpoint: WebhookEndpoint, limit: int = LOG_ROWS) -> list[LogRow]:
    """The endpoint's latest deliveries, newest first."""
    return [LogRow(delivery, event_id, type_, at) for delivery, event_id, type_, at in session.execute(
        select(WebhookDelivery, WebhookEvent.event_id, WebhookEvent.type, WebhookEvent.at)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc()).limit(limit))]


def counts(session: Session, endpoint: WebhookEndpoint) -> dict[str, int]:
    """How many of its deliveries are pending, delivered and dead."""
    found = dict.fromkeys((PENDING, DELIVERED, DEAD), 0)
    for status, count in session.execute(select(WebhookDelivery.status, func.count()).where(
            WebhookDelivery.endpoint_id == endpoint.id).group_by(WebhookDelivery.status)):
        found[status] = count
    return found


def send_again(session: Session, delivery: WebhookDelivery, now: datetime | None = None) -> None:
    """Queues a delivery (a dead letter, or one delivered: the receiver lost it) for an attempt now, with
    a fresh retry schedule; the same event id, so a receiver that has it already can tell.  Commits."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(
        status=PENDING, attempts=0, next_attempt_at=now or utcnow(), last_error=""))
    session.commit()
