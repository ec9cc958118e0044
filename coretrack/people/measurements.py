"""Deleting what was measured about a person, on their withdrawal ("and delete what was measured about
me"): their recipients' access and click events (and a provider's reports of their opens and clicks,
and their senders' notifications of them) go and their counts are zeroed, and what those
amounted to moves into the emails' anonymous totals, so each email's figures (measured plus anonymous)
stay what they were while nothing in them points at the person any more.

Per-link click counts stay (they never named anyone).  An erased person's recipients are left alone:
erasure already removed their events, and their address is no longer theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from ..db import changed_rows, insert_or_meet
from ..delivery_reports import sendgrid
from ..models import AccessEvent, AnonymousTotal, ClickEvent, DeliveryEvent, Notification, Recipient, utcnow

_TOTALS = cast(Table, AnonymousTotal.__table__)
_BULK = {"synchronize_session": False}  # rows changed in the database only: the session is expired after
_CHUNK = 500  # recipients a statement (a few hundred parameters)


@dataclass(frozen=True)
class Deleted:
    """What deleting one person's measurements removed."""

    recipients: int
    access_events: int
    click_events: int


@dataclass
class _DayTotal:
    loads: int = 0
    human_loads: int = 0
    clicks: int = 0


def delete_measurements(session: Session, address: str) -> Deleted:
    """Deletes the access and click events of every non-erased recipient sent to ``address`` (any
    letter case), zeroes their counts (access_count, human_opens, click_count, first and last access,
    first likely-human open) and adds what they amounted to into anonymous_totals, per email and per
    day of the events, in the caller's transaction (nothing committed).

    Counts no event stands for any more (events purged by retention, coreBOS's imported count) go to
    the day of the recipient's last access, else of its sending, else today: the email's totals stay
    exact.  Call it after recording the withdrawal in the same transaction: on SQLite the write lock is
    then held, and on PostgreSQL the recipients are locked here in id order, as count_hits locks them,
    so a hit being counted now is committed before its event is read and moved."""
    wanted = address.strip().lower()
    if not wanted:
        return Deleted(0, 0, 0)
    recipients = list(session.execute(
        select(Recipient.id, Recipient.email_id, Recipient.access_count, Recipient.human_opens,
               Recipient.click_count, Recipient.last_access, Recipient.sent_at)
        .where(func.lower(Recipient.address) == wanted, Recipient.erased.is_(False))
        .order_by(Recipient.id).with_for_update()))
    if not recipients:
        return Deleted(0, 0, 0)
    ids = [row[0] for row in recipients]
    email_of = {row[0]: row[1] for row in recipients}
    totals: dict[tuple[int, date], _DayTotal] = {}
    measured: dict[int, _DayTotal] = {}  # recipient id -> what its events stand for
    for chunk in _chunks(ids):
        for recipient_id, at, hits, verdict in session.execute(
                select(AccessEvent.recipient_id, AccessEvent.at, AccessEvent.hits, AccessEvent.verdict)
                .where(AccessEvent.recipient_id.in_(chunk))):
            for total in (totals.setdefault((email_of[recipient_id], at.date()), _DayTotal()),
                          measured.setdefault(recipient_id, _DayTotal())):
                total.loads += hits
                total.human_loads += hits if verdict == "human" else 0
        for recipient_id, at, hits in session.execute(
                select(ClickEvent.recipient_id, ClickEvent.at, ClickEvent.hits)
                .where(ClickEvent.recipient_id.in_(chunk))):
            for total in (totals.setdefault((email_of[recipient_id], at.date()), _DayTotal()),
                          measured.setdefault(recipient_id, _DayTotal())):
                total.clicks += hits
    for recipient_id, email_id, loads, human, clicks, last_access, sent_at in recipients:
        events = measured.get(recipient_id, _DayTotal())
        rest = _DayTotal(max(loads - events.loads, 0), max(human - events.human_loads, 0),
                         max(clicks - events.clicks, 0))
        if rest.loads or rest.human_loads or rest.clicks:
            total = totals.setdefault((email_id, _day_of(last_access or sent_at)), _DayTotal())
            total.loads += rest.loads
            total.human_loads += rest.human_loads
            total.clicks += rest.clicks
    _add_to_totals(session, ((email_id, day, total) for (email_id, day), total in sorted(totals.items())))
    access_events = click_events = 0
    for chunk in _chunks(ids):
        access_events += changed_rows(session, delete(AccessEvent).where(AccessEvent.recipient_id.in_(chunk)))
        click_events += changed_rows(session, delete(ClickEvent).where(ClickEvent.recipient_id.in_(chunk)))
        # SendGrid's own reports of their reading, and their senders' "opened" notifications, go too.
        session.execute(delete(DeliveryEvent).where(DeliveryEvent.recipient_id.in_(chunk),
                                                    DeliveryEvent.event.in_(sendgrid.READING_EVENTS)),
                        execution_options=_BULK)
        session.execute(delete(Notification).where(Notification.recipient_id.in_(chunk)), execution_options=_BULK)
        session.execute(update(Recipient).where(Recipient.id.in_(chunk))
                        .values(access_count=0, human_opens=0, click_count=0, human_clicks=0, first_access=None,
                                last_access=None, first_human_at=None, notified_at=None), execution_options=_BULK)
    session.expire_all()
    return Deleted(len(ids), access_events, click_events)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    return (ids[start:start + _CHUNK] for start in range(0, len(ids), _CHUNK))


def _day_of(at: datetime | None) -> date:
    return (at or utcnow()).date()


def _add_to_totals(session: Session, rows: Iterable[tuple[int, date, _DayTotal]]) -> None:
    """Adds to each (email, day)'s anonymous total, one atomic statement a row (a load counted into
    the same row meanwhile adds to it, it is not overwritten)."""
    for email_id, day, total in rows:
        statement = insert_or_meet(session, _TOTALS).values(email_id=email_id, day=day, loads=total.loads,
                                                   human_loads=total.human_loads, clicks=total.clicks)
        session.execute(statement.on_conflict_do_update(
            index_elements=[_TOTALS.c.email_id, _TOTALS.c.day],
            set_={"loads": _TOTALS.c.loads + statement.excluded.loads,
                  "human_loads": _TOTALS.c.human_loads + statement.excluded.human_loads,
                  "clicks": _TOTALS.c.clicks + statement.excluded.clicks}))
