"""The send worker: delivers queued email and tells senders of opens (one of the background jobs:
jobs.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from ..config import Config
from ..notifications import notify
from .delivery import deliver, emails_to_deliver
from .smtp import SmtpPool

log = logging.getLogger(__name__)


def run_worker(session_factory: Callable[[], Session], config: Config, *, once: bool = False,
               interval: float = 5.0, stop: threading.Event | None = None, per_pass: int = 2000,
               on_progress: Callable[[int], None] | None = None) -> int:
    """Deliver queued email until nothing is pending (``once``) or forever; returns messages processed.
    Each pass also tells senders of their email's first likely-human opens (notifications.notify).

    Each email gets at most ``per_pass`` recipients a pass, so that a large send does not hold up
    the ones queued after it.  The SMTP connections stay open from batch to batch and email to
    email, and close when nothing is left to send."""
    stop = stop or threading.Event()
    processed = 0
    with SmtpPool() as pool:
        while not stop.is_set():
            done = 0
            try:
                with session_factory() as session:
                    email_ids = emails_to_deliver(session)
                for email_id in email_ids:
                    if stop.is_set():
                        break
                    try:
                        done += deliver(session_factory, config, email_id, limit=per_pass, on_progress=on_progress,
                                        pool=pool, stop=stop).processed
                    except Exception:
                        # One email's trouble must not hold up the ones queued after it.
                        log.exception("delivering email %s failed; going on with the others", email_id)
            except Exception:
                if once:
                    raise
                log.exception("worker pass failed; trying again in %s seconds", interval)
            try:
                notify(session_factory, config)
            except Exception:
                log.exception("telling senders of opens failed; trying again in %s seconds", interval)
            processed += done
            if done:
                continue  # more may be waiting: no pause between batches
            pool.close()  # idle: no connection held open while nothing is queued
            if once or stop.wait(interval):
                break
    return processed
