"""Every background job of an install, assembled in this one place: delivery and notifications
(worker.run_worker), the spool watch (hits spooled while the database was away), the bounce
mailbox, retention and outbound webhooks.  ``coretrack worker`` runs them beside Apache; ``coretrack serve`` runs
the same in threads of its own process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from .config import Config
from .delivery_reports.bounces import watch_mailbox
from .sending.worker import run_worker
from .tracking.retention import watch_retention
from .tracking.tracker import Tracker
from .webhooks.delivery import watch_webhooks

# How long `coretrack serve` waits at its exit for the message in hand and the watches to end.
STOP_TIMEOUT = 30.0


def _watches(session_factory: Callable[[], Session], config: Config,
             tracker: Tracker) -> dict[str, Callable[[threading.Event], None]]:
    """The jobs beside delivery, by thread name; each runs until the event is set."""
    return {
        # Hits spooled during an outage are counted within seconds of the database's return, also
        # those of Apache processes that have ended since.
        "coretrack-spool-watch": tracker.watch_spool,
        # The bounce mailbox every few minutes, and soon after its settings change.
        "coretrack-bounces": lambda stop: watch_mailbox(session_factory, config, stop),
        # Events past the retention period, at start and once a day.
        "coretrack-retention": lambda stop: watch_retention(session_factory, config, stop),
        # The outbox's events to the endpoints that want them, and their retries.
        "coretrack-webhooks": lambda stop: watch_webhooks(session_factory, config, stop),
    }


def run(session_factory: Callable[[], Session], config: Config, tracker: Tracker, stop: threading.Event, *,
        once: bool = False, interval: float = 5.0) -> int:
    """Every job until ``stop``; ``once``: replay the spool and deliver what is queued, then return.
    Returns the messages processed.  Delivery runs in this thread and ends after the message in hand."""
    tracker.replay_spool()
    watches = [] if once else [threading.Thread(target=job, args=(stop,), name=name, daemon=True)
                               for name, job in _watches(session_factory, config, tracker).items()]
    for watch in watches:
        watch.start()
    try:
        return run_worker(session_factory, config, once=once, interval=interval, stop=stop)
    finally:
        stop.set()
        for watch in watches:
            watch.join()


def start(session_factory: Callable[[], Session], config: Config, tracker: Tracker,
          interval: float = 5.0) -> Callable[[], None]:
    """Every job in threads of this process (``coretrack serve``); returns the function that stops
    them (waiting at most STOP_TIMEOUT)."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(session_factory, config, tracker, stop), kwargs={"interval": interval},
                              name="coretrack-jobs", daemon=True)
    thread.start()

    def stop_jobs() -> None:
        stop.set()
        thread.join(STOP_TIMEOUT)

    return stop_jobs
