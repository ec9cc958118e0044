"""Who sends which recipient: a batch is claimed by one atomic ``UPDATE ... WHERE status =
'pending'`` and its outcomes are recorded in one transaction, so two workers never send the same
message.  A recipient left in ``sending`` by a crash is marked failed ("delivery unknown") instead
of being sent again: a duplicate is worse than a message someone has to retry by hand."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import ColumnElement

from ..db import changed_rows
from ..models import Email, Recipient, utcnow
from ..people import suppression
from .compose import OPTED_OUT
from .measuring import Measuring

log = logging.getLogger(__name__)

INTERRUPTED = ("delivery unknown: the send was interrupted while this message was being handed to the mail "
               "server; it was not resent automatically to avoid a duplicate (retry to send it again)")
# A claim older than this belongs to a process that died mid-send.
STALE_AFTER = timedelta(minutes=5)
_RECIPIENTS = cast(Table, Recipient.__table__)
_RECORD = update(_RECIPIENTS).where(_RECIPIENTS.c.id == bindparam("rid")).values(
    status=bindparam("new_status"), reply=bindparam("new_reply"), attempts=_RECIPIENTS.c.attempts + 1)
_RECORD_SENT = _RECORD.values(sent_at=bindparam("new_sent_at"))

Claimed = tuple[int, str, str, str, bool]  # a claimed recipient: id, address, name, token, tracked


def _claim_statement() -> ReturningUpdate[tuple[int, str, str, str]]:
    # Materialized: PostgreSQL may otherwise run a LIMIT subquery once per row it updates, and
    # claim more than the batch.
    pending = _RECIPIENTS.alias("pending")
    candidates = (select(pending.c.id).where(pending.c.email_id == bindparam("eid"), pending.c.status == "pending")
                  .limit(bindparam("size")).with_for_update(skip_locked=True)
                  .cte("candidates").prefix_with("MATERIALIZED"))
    # Nothing of a paused email (guardrails.py): read in the claim itself, so a pause stops every worker.
    not_paused = select(Email.paused_at).where(Email.id == bindparam("eid")).scalar_subquery().is_(None)
    return (update(_RECIPIENTS).where(_RECIPIENTS.c.id.in_(select(candidates.c.id)), _RECIPIENTS.c.status == "pending",
                                      not_paused)
            .values(status="sending", claimed_at=bindparam("now"))
            .returning(_RECIPIENTS.c.id, _RECIPIENTS.c.address, _RECIPIENTS.c.name, _RECIPIENTS.c.token))


# Built once: the worker runs them for every batch.
_CLAIM = _claim_statement()
_MARK_TRACKED = update(_RECIPIENTS).where(_RECIPIENTS.c.id.in_(bindparam("ids", expanding=True))).values(
    tracked=bindparam("measured"))
_EMAIL_SENDING = (update(Email).where(Email.id == bindparam("eid"), Email.status == "queued")
                  .values(status="sending"))


def claim_batch(session: Session, email_id: int, size: int, measuring: Measuring) -> list[Claimed]:
    """Up to ``size`` of the email's pending recipients, now ``sending``, in one transaction, each
    with whether their message is tracked, decided now (``measuring``) and kept as Recipient.tracked.

    One conditional UPDATE, so any number of workers on any number of hosts never claim the same
    recipient: a row counts only while it is still pending (PostgreSQL re-checks a row another
    transaction changed meanwhile; SQLite has one writer at a time), and SKIP LOCKED lets
    concurrent workers take the next rows instead of waiting for each other's."""
    connection = session.connection()
    while claimed := connection.execute(_CLAIM, {"eid": email_id, "size": size, "now": utcnow()}).all():
        # Opted out since the email was written (a scheduled or queued send): skipped, not sent.
        stopped = suppression.suppressed(session, [row.address for row in claimed])
        if stopped:
            connection.execute(update(_RECIPIENTS).where(_RECIPIENTS.c.id.in_(
                [row.id for row in claimed if suppression.key(row.address) in stopped]))
                .values(status="skipped", reply=OPTED_OUT, claimed_at=None))
            claimed = [row for row in claimed if suppression.key(row.address) not in stopped]
        if claimed:
            connection.execute(_EMAIL_SENDING, {"eid": email_id})
            break
    measured = measuring.measured(session, [(row.id, row.address) for row in claimed])
    for tracked in (True, False):
        if ids := [row.id for row in claimed if (row.id in measured) == tracked]:
            connection.execute(_MARK_TRACKED, {"ids": ids, "measured": tracked})
    session.commit()
    return sorted((row.id, row.address, row.name, row.token, row.id in measured) for row in claimed)


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed recipient's message: sent (with the server's reply) or failed."""

    recipient_id: int
    status: str  # "sent" or "failed"
    reply: str
    sent_at: datetime | None = None

    def parameters(self) -> dict[str, object]:
        """As the parameters of _RECORD (_RECORD_SENT for a sent one)."""
        values: dict[str, object] = {"rid": self.recipient_id, "new_status": self.status, "new_reply": self.reply}
        if self.status == "sent":
            values["new_sent_at"] = self.sent_at
        return values


def record_batch(session: Session, email_id: int, outcomes: list[Outcome], unsent: list[int],
                 skipped: list[int]) -> None:
    """A batch's outcomes, its unsent recipients back to pending and the claims of those cancelled
    meanwhile released (see status.delete_email), in one transaction.

    Outcomes are written whatever the row says now: a message the server took is sent even if a
    cancel came while it was being handed over.  A failed write is tried again (PostgreSQL may pick
    this transaction as a deadlock victim against a cancel; SQLite's busy wait may run out)."""
    sent = [outcome.parameters() for outcome in outcomes if outcome.status == "sent"]
    failed = [outcome.parameters() for outcome in outcomes if outcome.status != "sent"]
    rows = sorted({*(outcome.recipient_id for outcome in outcomes), *unsent, *skipped})
    for attempt in (1, 2, 3):
        try:
            connection = session.connection()
            lock_in_order(session, Recipient.id.in_(rows))
            if sent:
                connection.execute(_RECORD_SENT, sent)
                connection.execute(update(Email).where(Email.id == email_id, Email.sent_at.is_(None))
                                   .values(sent_at=sent[0]["new_sent_at"]))
            if failed:
                connection.execute(_RECORD, failed)
            if unsent:
                connection.execute(update(Recipient).where(Recipient.id.in_(unsent), Recipient.status == "sending")
                                   .values(status="pending", claimed_at=None))
            if skipped:
                connection.execute(update(Recipient).where(Recipient.id.in_(skipped), Recipient.status == "cancelled")
                                   .values(claimed_at=None))
            session.commit()
            return
        except DBAPIError:
            session.rollback()
            if attempt == 3:
                raise
            log.warning("recording the outcome of %s messages failed; trying again", len(outcomes), exc_info=True)
            time.sleep(attempt)


def lock_in_order(session: Session, rows: ColumnElement[bool]) -> None:
    """Lock these recipient rows in id order (PostgreSQL; SQLite has one writer at a time).  A
    worker recording its batch and a cancel both write claimed rows: taking them in one order,
    neither can hold a row the other waits for while waiting for one the other holds."""
    session.execute(select(Recipient.id).where(rows).order_by(Recipient.id).with_for_update()).all()


def end_pending(session: Session, email_id: int, *, claimed: bool = False, **values: object) -> int:
    """Every recipient of the email not yet claimed by a worker gets ``values``; returns how many.
    ``claimed``: also those a live worker has claimed but not yet handed over (it checks each
    recipient just before handing it over, and leaves one that changed).

    A worker claims recipients with ``UPDATE ... WHERE status = 'pending'``, so one that had
    already listed them finds nothing left to claim."""
    selected = Recipient.status == "pending"
    if claimed:
        selected = or_(selected, and_(Recipient.status == "sending", Recipient.claimed_at >= utcnow() - STALE_AFTER))
        lock_in_order(session, and_(Recipient.email_id == email_id, selected))
    count = changed_rows(session, update(Recipient).where(Recipient.email_id == email_id, selected).values(**values))
    session.commit()
    return count


def fail_interrupted(session: Session, email_id: int | None = None) -> int:
    """Recipients claimed long ago and never finished: failed with "delivery unknown", not resent."""
    statement = update(Recipient).where(
        Recipient.status == "sending", Recipient.claimed_at < utcnow() - STALE_AFTER
    ).values(status="failed", reply=INTERRUPTED, attempts=Recipient.attempts + 1)
    if email_id is not None:
        statement = statement.where(Recipient.email_id == email_id)
    count = changed_rows(session, statement)
    session.commit()
    return count
