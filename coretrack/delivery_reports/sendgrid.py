"""SendGrid: the SMTP relay's per-recipient tag, and its signed Event Webhook.

Each message sent through the SendGrid preset carries ``X-SMTPAPI`` with one unique argument, the
recipient's signed token (never a sequential id); SendGrid copies it into every event of that
message.  ``signature_of`` judges the signature and timestamp headers before the body is read;
``receive`` checks the webhook's ECDSA signature (P-256, SHA-256 over the timestamp header followed
by the raw body), then applies a batch of events in one transaction: each event once (by
``sg_event_id``), to the recipient its token names.  A malformed event in a batch is skipped and
logged; the others are applied.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import DeliveryEvent, Email, Recipient, utcnow
from ..people import consent, suppression
from ..tracking import tokens
from ..tracking.counting import MinuteBound, count_hits
from ..tracking.hits import Hit
from . import classes, deliveries, mail_reports

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# The unique argument SendGrid copies into every event of a message.
UNIQUE_ARG = "coretrack_recipient"
# A signed delivery older than this is refused.  SendGrid retries a delivery that got no 2xx "at
# increasing intervals for up to 24 hours after the event occurs" (its Event Webhook documentation,
# "Getting started" and "Troubleshooting"), and nowhere says that a retry is signed afresh: its
# security page says only how to verify the timestamp and signature headers.  So a retry may carry
# its first attempt's timestamp, and a 10-minute window would refuse every retry after the tenth
# minute until SendGrid dropped it.  The window covers the retry period instead.  A captured delivery
# replayed within it changes nothing: each event is applied once, by its stored sg_event_id, which
# retention keeps at least 2 days past the event (retention.py).
MAX_AGE_SECONDS = 24 * 3600
# Clocks differ a little; a timestamp further ahead than this was not made by SendGrid now.
MAX_AHEAD_SECONDS = 300
# The most a delivery's body may hold; more is refused (413) before it is read.  SendGrid posts a
# batch "within approximately 30 seconds or when the batch size reaches 768 kilobytes" (its Event
# Webhook documentation), so a batch passes 768 KB by its last event at most (measured: a delivered
# event with our tag is about 520 bytes, a click about 550 plus its URL; a full batch, about 1,500
# events).  1 MiB holds every batch SendGrid makes; anything bigger is not SendGrid's.
MAX_BODY_BYTES = 1024 * 1024
# An ECDSA P-256 signature (DER) is at most 72 bytes: 96 characters of base64.
_MAX_SIGNATURE_CHARS = 96
MACHINE_OPEN = "SendGrid sg_machine_open"
# Events that set the opt-out, by their reason.  Drops: SendGrid refuses the address itself
# (invalid, or already on its bounce, unsubscribe or spam lists); other drops say nothing of it.
_OPT_OUT_DROPS = frozenset({"invalid", "bounced address", "unsubscribed address", "spam reporting address"})
# SendGrid's own open and click tracking: measurements of a person's reading, kept only for those measured.
READING_EVENTS = frozenset({"open", "click"})
_DELIVERY_EVENTS = {"processed": "processed", "deferred": "deferred", "delivered": "delivered",
                    "bounce": "bounced", "dropped": "dropped"}


class Refused(Exception):
    """Not a delivery SendGrid signed just now: answered 403 without saying why."""


class Malformed(ValueError):
    """A signed body that is not a list of events: answered 400 with the reason."""


def smtpapi_header(token: str) -> str:
    """The ``X-SMTPAPI`` header line naming one recipient."""
    return "X-SMTPAPI: " + json.dumps({"unique_args": {UNIQUE_ARG: token}}, separators=(",", ":")) + "\r\n"


def verification_key(text: str) -> ec.EllipticCurvePublicKey:
    """The webhook's public key from its base64 form (as SendGrid shows it), or ValueError saying why."""
    try:
        key = load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError("paste the verification key SendGrid shows for the signed Event Webhook "
                         "(base64, as shown)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("this is not an ECDSA P-256 key, which SendGrid signs its events with")
    return key


def signature_of(signature: str, timestamp: str, now: float | None = None) -> bytes:
    """The signature the headers carry (the values of SIGNATURE_HEADER and TIMESTAMP_HEADER), or
    Refused when they are missing, malformed or the timestamp is out of its window: judged from the
    headers alone, before the key is read or a byte of the body."""
    if not signature or len(signature) > _MAX_SIGNATURE_CHARS or not timestamp.isascii() \
            or not timestamp.isdigit() or len(timestamp) > 12:
        raise Refused
    age = (time.time() if now is None else now) - int(timestamp)
    if not -MAX_AHEAD_SECONDS <= age <= MAX_AGE_SECONDS:
        raise Refused
    try:
        return base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise Refused from None


def verify(key_text: str, signature: bytes, timestamp: str, body: bytes) -> None:
    """Returns only for a body signed with the configured key (``signature`` as signature_of gave it)."""
    if not key_text:
        raise Refused
    try:
        verification_key(key_text).verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise Refused from None


def parse_events(body: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The well-formed events of a signed body (a JSON object each, with a string ``event`` and
    ``sg_event_id`` and a Unix ``timestamp``), and why each other one is not; Malformed for a
    body that is not a JSON list at all."""
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(items, list):
        raise Malformed("the body is not a list of events")
    events: list[dict[str, Any]] = []
    skipped: list[str] = []
    for number, event in enumerate(items, start=1):
        fault = _fault(event)
        if fault:
            skipped.append(f"event {number}{_id_of(event)} {fault}")
        else:
            events.append(event)
    return events, skipped


def _fault(event: object) -> str:
    if not isinstance(event, dict):
        return "is not an object"
    for field in ("event", "sg_event_id"):
        value = event.get(field)
        if not isinstance(value, str) or not 0 < len(value) <= 100 or "\x00" in value:
            return f"has no valid {field}"
    stamp = event.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 < stamp < 2**33:
        return "has no valid timestamp"
    return ""


def _id_of(event: object) -> str:
    """The event's sg_event_id for the log, when it has a plain one: SendGrid's opaque id (its own
    search finds the event), never the address, token or URL."""
    value = event.get("sg_event_id") if isinstance(event, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 100 and value.isascii() and value.isprintable():
        return f" ({value})"
    return ""


def receive(session: Session, secret: bytes, key_text: str, signature: bytes, timestamp: str,
            body: bytes, rule: mail_reports.SoftBounceRule | None = None) -> list[str]:
    """Verifies and applies one webhook delivery in one transaction; Refused or Malformed before
    anything is stored.  Returns why each malformed event was skipped, which is also logged (its
    position, sg_event_id and fault only): SendGrid would send it alike again, and refusing the
    delivery would have SendGrid retry the good events with it until it dropped them all."""
    verify(key_text, signature, timestamp, body)
    events, skipped = parse_events(body)
    apply_events(session, secret, events, rule)
    session.commit()
    for fault in skipped:
        log.warning("SendGrid event webhook: %s; skipped, the rest of the delivery applied", fault)
    return skipped


def _text(value: object, length: int = 500) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return "".join(char for char in text if char.isprintable())[:length]


def apply_events(session: Session, secret: bytes, events: list[dict[str, Any]],
                 rule: mail_reports.SoftBounceRule | None = None) -> int:
    """Stores and applies each event not seen before, in the caller's transaction (``rule``: the
    soft-bounce rule; by default, the default one)."""
    fresh: dict[str, dict[str, Any]] = {}
    for event in events:
        fresh.setdefault(event["sg_event_id"], event)
    if fresh:
        known = session.scalars(select(DeliveryEvent.event_id).where(DeliveryEvent.event_id.in_(list(fresh))))
        for event_id in known:
            del fresh[event_id]
    signed = {event[UNIQUE_ARG] for event in fresh.values() if tokens.verify(secret, event.get(UNIQUE_ARG))}
    # With whether their email is tracked: an email sent untracked counts no open, whoever saw it.
    # Locked (on PostgreSQL), so an erasure is either seen here or waits until these events are in.
    recipients = {recipient.token: (recipient, tracked) for recipient, tracked in session.execute(
        select(Recipient, Email.tracking).join(Email).where(Recipient.token.in_(sorted(signed)))
        .order_by(Recipient.id).with_for_update(of=Recipient))} if signed else {}
    stops = consent.Stops.of(session, [recipient.address for recipient, _ in recipients.values()])
    # SendGrid's clicks count nothing (clicks are counted at coretrack's own redirect, which SendGrid's
    # leads to): kept while a recipient has fewer than EVENTS_PER_RECIPIENT_PER_MINUTE events in that
    # minute, as coretrack's own clicks and loads are, so a link clicked in a loop grows no table.
    clicks = [event for event in fresh.values() if event["event"] == "click"]
    clicked = sorted({recipients[token][0].id for event in clicks
                      if isinstance(token := event.get(UNIQUE_ARG), str) and token in recipients})
    clicks_kept = MinuteBound(session.connection(), "delivery_events", clicked, [_at(event) for event in clicks])
    opens: list[Hit] = []
    # In their own time order: of two reports of equal strength the later one is kept.
    for event_id, event in sorted(fresh.items(), key=lambda item: (item[1]["timestamp"], item[0])):
        token = event.get(UNIQUE_ARG)
        recipient, tracked = recipients.get(token, (None, False)) if isinstance(token, str) else (None, False)
        if recipient is not None and recipient.erased:
            continue  # an erased person's: nothing of it is kept (its detail may name them), nothing applied
        at = _at(event)
        kind = event["event"]
        if kind in READING_EVENTS and recipient is not None and not (
                tracked and recipient.tracked and not stops.stopped(suppression.key(recipient.address), at)):
            # SendGrid's own open or click of someone whose reading is not measured (or no longer, by the
            # event's time): nothing of it is kept, even as a delivery report.
            continue
        if kind == "click" and recipient is not None and not clicks_kept.admits(recipient.id, at):
            continue
        detail = _detail(event)
        stored = DeliveryEvent(provider="sendgrid", event_id=event_id, event=kind[:32], at=at, detail=detail,
                               recipient_id=recipient.id if recipient else None, received_at=utcnow())
        session.add(stored)
        if recipient is None:
            continue  # another sender's mail on the same SendGrid account, or a forged token
        bounce_class = _bounce_class(event)
        if kind in _DELIVERY_EVENTS:
            deliveries.record_delivery(session, recipient.id, _DELIVERY_EVENTS[kind], detail, at, bounce_class)
        reason, category = _opt_out_reason(event)
        if reason or bounce_class in (classes.HARD, *classes.ESCALATING):
            session.flush()  # the event's id: the opt-out's evidence
            evidence = suppression.Evidence(event_id=stored.id)
            if bounce_class:
                mail_reports.suppress_by_class(session, recipient, bounce_class, f"bounced (SendGrid): {detail}", at,
                                               rule or mail_reports.SoftBounceRule(), suppression.SENDGRID, evidence)
            elif reason:
                suppression.opt_out_recipient(session, recipient, suppression.SENDGRID, reason, at,
                                              category=category, evidence=evidence)
        if kind == "open":
            opens.append(Hit(recipient.token, at, _text(event.get("ip"), 45), _text(event.get("useragent"), 512),
                             hit_id="sg" + hashlib.sha256(event_id.encode()).hexdigest()[:30],
                             provider_verdict=MACHINE_OPEN if event.get("sg_machine_open") is True else ""))
    # The events' rows first: on SQLite that takes the write lock, so count_hits reads what it writes over.
    session.flush()
    if opens:
        count_hits(session.connection(), opens)
    return len(fresh)


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(event["timestamp"], UTC).replace(tzinfo=None)


def _detail(event: Mapping[str, Any]) -> str:
    """What the event says beyond its kind: a status code and reason, a server's response, a click's URL."""
    if event["event"] == "click":
        return _text(event.get("url"), 2000)
    parts = [_text(event.get(field)) for field in ("status", "reason", "response", "type")]
    if event.get("asm_group_id") is not None:
        parts.append(f"group {_text(event.get('asm_group_id'))}")
    return " ".join(part for part in parts if part)[:500]


def _bounce_class(event: Mapping[str, Any]) -> str:
    """A bounce's or deferral's class (classes.py); "" for the other events."""
    if event["event"] not in ("bounce", "deferred"):
        return ""
    return classes.classify_sendgrid(event["event"], _text(event.get("status")), _text(event.get("type")),
                                     _text(event.get("bounce_classification")))


def _opt_out_reason(event: Mapping[str, Any]) -> tuple[str, str]:
    """Why an event other than a bounce suppresses its address, and the suppression list's category."""
    kind = event["event"]
    if kind == "dropped" and _text(event.get("reason")).strip().lower() in _OPT_OUT_DROPS:
        return f"dropped by SendGrid: {_text(event.get('reason'))}", suppression.PROVIDER_DROP
    if kind == "unsubscribe":
        return f"{suppression.UNSUBSCRIBED_REASON} SendGrid", suppression.UNSUBSCRIBED
    if kind == "group_unsubscribe":
        return (f"{suppression.UNSUBSCRIBED_REASON} SendGrid (group {_text(event.get('asm_group_id'))})",
                suppression.UNSUBSCRIBED)
    if kind == "spamreport":
        return f"{suppression.COMPLAINT_REASON} (SendGrid)", suppression.COMPLAINT
    return "", ""
