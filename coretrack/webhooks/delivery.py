"""The webhook worker (a background job: jobs.py): each pass makes the outbox's new events into one
delivery per endpoint that wants them, then sends the deliveries that are due.

A delivery is a POST of the event as JSON, signed (signing.py).  A 2xx answer delivers it; a 4xx other
than 408 and 429 makes it a dead letter at once (the receiver refuses it: the same request would be
refused again); anything else (no answer, 3xx, 5xx, 408, 429) is tried again after RETRY_DELAYS, more
than a day in all, and then it is a dead letter.  Each attempt is claimed first (a lease on its time),
so two workers do not send it at once; receivers deduplicate by the event id all the same.

The clock is a parameter: tests drive a receiver's long outage in simulated time.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..config import Config
from ..db import changed_rows
from ..models import WebhookDelivery, WebhookEndpoint, WebhookEvent, utc_iso, utcnow
from . import endpoints, signing
from .endpoints import DEAD, DELIVERED, PENDING

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# After the first attempt and each failed one: 1, 2, 4 … 256 minutes, then every 6 hours; the last of
# 13 attempts comes 26.5 hours after the first.
RETRY_DELAYS = tuple(timedelta(minutes=min(2 ** n, 360)) for n in range(12))
# A receiver's answer within this, or the attempt failed (and is tried again).
TIMEOUT = 10.0
# An attempt's claim: another worker leaves it alone this long (longer than any attempt).
LEASE = timedelta(minutes=5)
FAN_OUT_BATCH = 500
SEND_BATCH = 100
WATCH_INTERVAL = 5.0
_ERROR_LENGTH = 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other that is not 2xx: it is not followed with the signed body."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def fan_out(session: Session, now: datetime) -> int:
    """One delivery per (new event, active endpoint that wants its type), due now, for up to
    FAN_OUT_BATCH new events; commits.  How many events it took (FAN_OUT_BATCH: there may be more)."""
    new = session.execute(select(WebhookEvent.id, WebhookEvent.type).where(~WebhookEvent.fanned_out)
                          .order_by(WebhookEvent.id).limit(FAN_OUT_BATCH)).all()
    if not new:
        return 0
    ids = [event_id for event_id, _ in new]
    # Marked first: a concurrent worker marking the same events makes this one give way.
    if changed_rows(session, update(WebhookEvent).where(WebhookEvent.id.in_(ids), ~WebhookEvent.fanned_out)
                    .values(fanned_out=True)) != len(ids):
        session.rollback()
        return 0
    wanting = [(endpoint.id, endpoints.wants(endpoint))
               for endpoint in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.active))]
    rows = [{"event_id": event_id, "endpoint_id": endpoint_id, "status": PENDING, "attempts": 0,
             "next_attempt_at": now, "last_error": ""}
            for event_id, type_ in new for endpoint_id, types in wanting if type_ in types]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    session.commit()
    return len(new)


def deliver_due(session_factory: Callable[[], Session], key: bytes, clock: Clock = utcnow) -> int:
    """One pass: the new events fanned out, then each delivery due sent once (after an endpoint fails,
    its other due deliveries wait for the next pass: one attempt a pass at a receiver that is down).
    How many were delivered."""
    with session_factory() as session:
        while fan_out(session, clock()) == FAN_OUT_BATCH:
            pass
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.endpoint_id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= clock())
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(SEND_BATCH)).all()
    delivered = 0
    failing: set[int] = set()
    for delivery_id, endpoint_id, due_at in due:
        if endpoint_id in failing:
            continue
        assert due_at is not None  # a pending delivery has its time
        with session_factory() as session:
            outcome = _attempt(session, key, delivery_id, due_at, clock)
        if outcome == DELIVERED:
            delivered += 1
        elif outcome is not None:
            failing.add(endpoint_id)
    return delivered


def _attempt(session: Session, key: bytes, delivery_id: int, due_at: datetime, clock: Clock) -> str | None:
    """Claims the delivery, sends it and records the answer; its new status, None if another worker had it."""
    at = clock()
    if not changed_rows(session, update(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at == due_at).values(next_attempt_at=at + LEASE)):
        session.rollback()
        return None
    session.commit()
    delivery, event, endpoint = session.execute(
        select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id)).one()
    body = payload(event)
    timestamp = int(at.replace(tzinfo=UTC).timestamp())
    status, error = post(endpoint.url, body, signing.headers(event.event_id, endpoints.signing_secrets(
        key, endpoint, at), timestamp, body))
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": at, "last_status": status,
                              "last_error": error[:_ERROR_LENGTH]}
    if status is not None and 200 <= status < 300:
        values.update(status=DELIVERED, next_attempt_at=None, delivered_at=at)
    elif is_refusal(status) or attempts > len(RETRY_DELAYS):
        values.update(status=DEAD, next_attempt_at=None)
    else:
        values.update(next_attempt_at=at + RETRY_DELAYS[attempts - 1])
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
    session.commit()
    if values.get("status") is None:
        log.info("webhook delivery %s to endpoint %s failed (%s); trying again", delivery_id, endpoint.id,
                 error or status)
    return str(values.get("status", PENDING))


def is_refusal(status: int | None) -> bool:
    """A 4xx answer but 408 (timeout) and 429 (too many requests): the receiver will not take it."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)


def payload(event: WebhookEvent) -> bytes:
    """The JSON body: the event id (for deduplication), its type, its time (UTC) and its data."""
    return json.dumps({"id": event.event_id, "type": event.type, "time": utc_iso(event.at),
                       "data": json.loads(event.data)}, sort_keys=True).encode("utf-8")


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(the HTTP status, or None without an answer; what went wrong, "" when it was 2xx)."""
    request = urllib.request.Request(url, data=body, headers={**headers, "User-Agent": "coretrack-webhooks"},
                                     method="POST")
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            response.read(65536)
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, f"no answer: {reason}"


def watch_webhooks(session_factory: Callable[[], Session], config: Config, stop: threading.Event,
                   interval: float = WATCH_INTERVAL) -> None:
    """Passes until ``stop`` (a thread of ``coretrack worker``)."""
    while not stop.is_set():
        try:
            deliver_due(session_factory, config.secret_key())
        except Exception:
            log.exception("sending webhooks failed; trying again in %s seconds", interval)
        stop.wait(interval)
