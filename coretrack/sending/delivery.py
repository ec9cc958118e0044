"""Delivering a composed email: its pending recipients in batches (claims.py) over one or more SMTP
connections, each batch's messages built by messages.py, sent, and recorded; in the request for a
small send (send_or_queue), else by the worker (worker.py) in turns, so that one large send does not
hold up the ones queued after it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, or_, select
from sqlalchemy.orm import Session

from ..config import Config
from ..delivery_reports.bounces import verp_address
from ..models import Email, Recipient, utcnow
from ..settings import SettingsService
from . import guardrails
from .claims import STALE_AFTER, Claimed, Outcome, claim_batch, end_pending, fail_interrupted, record_batch
from .measuring import Measuring, anonymous_image
from .messages import Messages, messages_for
from .mime import MessageError, MessageTemplate
from .smtp import DeliveryError, SmtpPool, SmtpSender
from .status import refresh_status

log = logging.getLogger(__name__)

# One email's turn of the worker (see deliver): long enough that the SMTP round trips, not the
# turns, set a large send's pace; short enough that an email queued behind it goes within seconds.
TURN_SECONDS = 10.0
# Recipients claimed in one transaction and recorded in one: a worker that dies mid-batch leaves at
# most this many per connection in "sending", later failed as "delivery unknown", never resent.
BATCH_SIZE = 100
# A batch still going after this long (a slow server) gives its unsent recipients back, so that a
# live worker's claim never gets near STALE_AFTER.
HOLD_CLAIM_SECONDS = 60.0
_STATUS_OF = f"SELECT status FROM {Recipient.__tablename__} WHERE id = ?"


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0

    @property
    def processed(self) -> int:
        return self.sent + self.failed


def deliver(
    session_factory: Callable[[], Session],
    config: Config,
    email_id: int,
    *,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    pool: SmtpPool | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Send the email's pending recipients (up to ``limit``) in batches, over as many connections as
    the settings say (``pool`` keeps them open for the next call; without one they close at the end).
    ``stop`` ends the delivery after the message in hand, giving the rest of the batch back.

    A call with a ``limit`` is one turn of the worker, which goes round the emails due: the turn
    also ends after TURN_SECONDS (building the message included; one message at least), so an email
    that is slow to build or send holds up the ones queued after it by one turn, not by all of it."""
    report = DeliveryReport()
    turn_ends = time.monotonic() + TURN_SECONDS if limit is not None else None
    with session_factory() as session:
        fail_interrupted(session, email_id)
        email = session.get(Email, email_id)
        if email is None or not is_due(email.send_at):
            return report
        pending = select(Recipient.id).where(Recipient.email_id == email_id, Recipient.status == "pending")
        messages: Messages | None = None
        measuring = Measuring.of(session, config, email)
        if session.scalar(pending.limit(1)) is not None:
            try:
                messages = messages_for(session, config, email, anonymous_image(session, email, measuring))
            except MessageError as exc:
                # Saved before validation refused such values: this email fails, the others go on.
                report.failed += end_pending(session, email_id, status="failed", reply=f"not sent: {exc}",
                                              attempts=Recipient.attempts + 1)
        settings = SettingsService(session, config)
        server, connections = settings.smtp_server(), settings.get("smtp_connections")
        signer = settings.dkim_signer(email.from_address)  # for the From it goes out with
        from_address, bounce_address = email.from_address, settings.get("bounce_address")
        guard = guardrails.Thresholds.of(settings) if email.mass_send else None
    if messages is not None:
        with ExitStack() as closing:
            if pool is None:
                pool = closing.enter_context(SmtpPool())
            senders = pool.senders_for(server, connections, signer)
            delivery = _Delivery(session_factory, config, email_id, from_address, bounce_address, messages, measuring,
                                 limit, on_progress, stop or threading.Event(), turn_ends, guard)
            for part in delivery.run(senders):
                report.sent += part.sent
                report.failed += part.failed
    with session_factory() as session:
        refresh_status(session, email_id)
    return report



@dataclass
class _Delivery:
    """One email's delivery over one or more connections, each claiming and recording its own batches."""

    session_factory: Callable[[], Session]
    config: Config
    email_id: int
    from_address: str
    bounce_address: str  # "": bounces go to the From address
    messages: Messages
    measuring: Measuring
    limit: int | None  # recipients still to claim (None: all)
    on_progress: Callable[[int], None] | None
    stop: threading.Event
    turn_ends: float | None  # time.monotonic() when this turn is over (None: when all are sent)
    guard: guardrails.Thresholds | None  # a mass send's (None: not judged)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.next_check = 0.0  # time.monotonic() when the guardrails judge the email again

    def _paused(self, session: Session) -> bool:
        """Whether the guardrails paused the email (judged again at most every CHECK_SECONDS, by one connection)."""
        with self.lock:
            if self.guard is None or time.monotonic() < self.next_check:
                return False
            self.next_check = time.monotonic() + guardrails.CHECK_SECONDS
        return guardrails.judge(session, self.config, self.email_id, self.guard)

    def run(self, senders: Sequence[SmtpSender]) -> list[DeliveryReport]:
        if len(senders) == 1:
            return [self.over(senders[0])]
        reports: list[DeliveryReport] = []
        errors: list[BaseException] = []

        def connection(sender: SmtpSender) -> None:
            try:
                report = self.over(sender)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)
            else:
                reports.append(report)

        threads = [threading.Thread(target=connection, args=(sender,), name=f"coretrack-smtp-{number}")
                   for number, sender in enumerate(senders, start=1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return reports

    def _take(self, most: int) -> int:
        with self.lock:
            if self.limit is None:
                return most
            taken = min(most, self.limit)
            self.limit -= taken
            return taken

    def _give_back(self, count: int) -> None:
        with self.lock:
            if self.limit is not None:
                self.limit += count

    def _turn_over(self) -> bool:
        return self.turn_ends is not None and time.monotonic() >= self.turn_ends

    def _progress(self) -> None:
        if self.on_progress is not None:
            with self.lock:  # a progress bar is not made for several threads
                self.on_progress(1)

    def over(self, sender: SmtpSender) -> DeliveryReport:
        """Claim, send and record batches over this connection until none is left."""
        report = DeliveryReport()
        with self.session_factory() as session:
            # The check before each message reads outside any transaction: while the mail server
            # takes its time, none of ours stays open to hold up a schema change (which waits for
            # every open transaction on its table, and makes all other queries wait behind it) or
            # VACUUM.  The session opens one only to claim a batch and to record it.
            with session.get_bind().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as checks:
                while not self.stop.is_set() and not self._paused(session):
                    size = self._take(BATCH_SIZE)
                    batch = claim_batch(session, self.email_id, size, self.measuring) if size else []
                    self._give_back(size - len(batch))
                    if not batch:
                        break
                    self._send_batch(session, checks, sender, batch, report)
                    if self._turn_over():  # (after one batch at least: a turn always sends something)
                        break
        return report

    def _send_batch(self, session: Session, checks: Connection, sender: SmtpSender, batch: list[Claimed],
                    report: DeliveryReport) -> None:
        outcomes: list[Outcome] = []
        handled: set[int] = set()
        started = time.monotonic()
        message_of = self.messages.for_batch(session, [claimed[0] for claimed in batch])
        session.commit()  # what was read is in hand
        # The driver's own cursor: this check runs before every message, and SQLAlchemy's layers
        # would cost it several times what the database does.
        cursor = checks.connection.cursor()
        status_of = _STATUS_OF.replace("?", "%s") if checks.dialect.paramstyle != "qmark" else _STATUS_OF
        try:
            for recipient_id, address, name, token, tracked in batch:
                # (One message at least per batch, so a slow server still gets them all in the end.)
                if self.stop.is_set() or handled and (time.monotonic() - started > HOLD_CLAIM_SECONDS
                                                      or self._turn_over()):
                    break
                handled.add(recipient_id)
                # Cancelled since the claim (or declared interrupted): no longer this worker's to send.
                cursor.execute(status_of, (recipient_id,))
                if cursor.fetchone() != ("sending",):
                    continue
                # The envelope sender: each recipient's own signed return path when bounces are read.
                return_path = verp_address(self.bounce_address, token) if self.bounce_address else self.from_address
                try:
                    template = message_of(recipient_id, tracked)
                except MessageError as exc:  # this recipient's own fields cannot go into a message
                    outcome = Outcome(recipient_id, "failed", f"not sent: {exc}")
                else:
                    outcome = _send_one(sender, template, return_path, recipient_id, address, name, token)
                outcomes.append(outcome)
                if outcome.status == "sent":
                    report.sent += 1
                else:
                    report.failed += 1
                self._progress()
        finally:
            cursor.close()
            unsent = [claimed[0] for claimed in batch if claimed[0] not in handled]
            skipped = list(handled.difference(outcome.recipient_id for outcome in outcomes))
            record_batch(session, self.email_id, outcomes, unsent, skipped)


def _send_one(sender: SmtpSender, template: MessageTemplate, from_address: str, recipient_id: int, address: str,
              name: str, token: str) -> Outcome:
    """Hand one message over; its outcome."""
    try:
        reply = sender.send(from_address, address, template.render(address, name, token))
    except DeliveryError as exc:
        return Outcome(recipient_id, "failed", str(exc))
    except MessageError as exc:
        return Outcome(recipient_id, "failed", f"not sent: {exc}")
    except Exception as exc:  # a bug must not leave the recipient claimed forever
        log.exception("sending to recipient %s failed", recipient_id)
        return Outcome(recipient_id, "failed", f"internal error: {exc.__class__.__name__}")
    return Outcome(recipient_id, "sent", reply, utcnow())


def is_due(send_at: datetime | None) -> bool:
    return send_at is None or send_at <= utcnow()


def send_or_queue(session_factory: Callable[[], Session], config: Config, email_id: int, pending: int,
                  send_at: datetime | None = None) -> bool:
    """Small sends go out within the request; larger and scheduled ones stay queued for the worker.
    True if sent now."""
    if pending == 0 or pending > config.inline_send_limit or not is_due(send_at):
        return False
    deliver(session_factory, config, email_id)
    return True

def emails_to_deliver(session: Session) -> list[int]:
    """Emails with pending or interrupted recipients, or a status that no longer matches them."""
    now = utcnow()
    stale = and_(Recipient.status == "sending", Recipient.claimed_at < now - STALE_AFTER)
    due = or_(Email.send_at.is_(None), Email.send_at <= now)
    # A paused email's pending recipients wait for an admin (guardrails.py); its stale claims do not.
    with_work = (select(Recipient.email_id).join(Email, Email.id == Recipient.email_id)
                 .where(or_(and_(Recipient.status == "pending", Email.paused_at.is_(None)), stale), due))
    unfinished = select(Email.id).where(Email.status.in_(("queued", "sending")), due)
    return sorted(set(session.scalars(with_work.distinct())) | set(session.scalars(unfinished)))
