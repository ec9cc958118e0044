"""Keeping what recipients did only as long as the install says (setting "retention_days"): the
events older than that are deleted, while the counts on recipients stay.

Run by ``coretrack purge`` and once a day by ``coretrack worker`` (``watch_retention``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..config import Config
from ..db import changed_rows
from ..models import AccessEvent, ClickEvent, DeliveryEvent, MailReport, WebhookEvent, utcnow
from ..settings import SettingsService

log = logging.getLogger(__name__)

# Each table of what one recipient did, with its column of when: one line per table.
# DeliveryEvent holds what SendGrid reported (opens, clicks with their URL) and recognises a repeated
# sg_event_id; SendGrid repeats a delivery for up to 24 hours, hence a period of at least 2 days.
EVENT_TABLES = (
    (AccessEvent, AccessEvent.at),
    (DeliveryEvent, DeliveryEvent.at),
    (ClickEvent, ClickEvent.at),
    # The webhooks' outbox names addresses and what they did; its deliveries go with each event.  Its
    # retries end within 27 hours, well inside the shortest period.
    (WebhookEvent, WebhookEvent.at),
)
DAY = 24 * 60 * 60.0
BATCH = 5000
RETRY = 10 * 60.0


def purge(session: Session, config: Config, batch: int = BATCH) -> dict[str, int] | None:
    """Delete every event older than the retention period, and empty the raw reports older than it;
    the rows deleted (or emptied) per table, or None when the period is empty (everything is kept).

    A batch per transaction: PostgreSQL connections stop a statement after 2 seconds (db.make_engine),
    and hits being counted meanwhile wait for no long lock."""
    days = SettingsService(session, config).retention_days()
    if days is None:
        return None
    cutoff = utcnow() - timedelta(days=days)
    deleted = {}
    for model, at in EVENT_TABLES:
        deleted[model.__tablename__] = 0
        while True:
            old = select(model.id).where(at < cutoff).limit(batch).scalar_subquery()
            count = changed_rows(session, delete(model).where(model.id.in_(old)))
            session.commit()
            deleted[model.__tablename__] += count
            if count < batch:
                break
    # The raw DSNs and complaint reports kept as evidence: emptied, their class, status and detail
    # kept (the suppression list shows them; the soft-bounce rule counts by the recipients' class).
    deleted[MailReport.__tablename__] = 0
    while True:
        kept = select(MailReport.id).where(MailReport.received_at < cutoff, MailReport.raw != "").limit(batch)
        count = changed_rows(session, update(MailReport).where(MailReport.id.in_(kept.scalar_subquery()))
                             .values(raw=""))
        session.commit()
        deleted[MailReport.__tablename__] += count
        if count < batch:
            break
    return deleted


def watch_retention(session_factory: Callable[[], Session], config: Config, stop: threading.Event,
                    interval: float = DAY) -> None:
    """Purges at start and then every ``interval`` seconds until ``stop`` (a thread of ``coretrack worker``)."""
    while not stop.is_set():
        wait = interval
        try:
            with session_factory() as session:
                deleted = purge(session, config)
            if deleted and any(deleted.values()):
                log.info("retention: deleted %s", deleted)
        except Exception:
            wait = min(interval, RETRY)  # the database was away: not a whole day until the next try
            log.exception("deleting old events failed; trying again in %s seconds", wait)
        stop.wait(wait)
