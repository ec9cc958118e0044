"""The in-process writer: a request verifies the token, queues the hit in memory and is answered.

It never waits for the database.  One writer thread per process counts what was
queued, at most every WRITE_INTERVAL (10 ms), in one transaction: SQLite takes
one writer at a time, and a commit per batch rather than per hit lets it keep
up under load.  A hit is thus counted within about 10 ms; one still queued
when its process is killed hard (SIGKILL, a crash) is lost, while a normal
exit (atexit, e.g. Apache's graceful restart) counts the queue first.  Apache's
log path (hitlog.py) has no such window.  No ORM and nothing built per request.
When the database cannot take a batch, it goes to a spool file on disk (as
does a hit past QUEUE_MAX), and a replay thread counts it (exactly once, by
its id) within seconds of the database being back, with no further traffic.
Nothing here raises into the request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

from sqlalchemy import Engine

from ..config import Config
from .counting import count_hits, write_transaction
from .hits import Hit
from .image import countable
from .spool import Spool

log = logging.getLogger(__name__)

# Hits per transaction at most, when the spool is replayed or a backlog queued in memory is
# counted: an outage's hits are counted in steps that hold the database's write lock briefly, not in
# one transaction as long as the outage.
REPLAY_BATCH = 500
# How often, at most, a process's writer thread counts the hits queued meanwhile.  A transaction's
# commit (on SQLite with its WAL checkpoint) costs about as much as counting eight hits: one per
# batch of whatever arrived in 10 ms keeps that cost small under load, whatever the number of
# request threads, while a hit still shows on the pages before anyone could look for it.  Longer
# would widen what a killed process can lose (the hits queued in it) for little more gain.
WRITE_INTERVAL = 0.01
# Hits a process holds in memory at most (a few MB).  Past it (the database slow or away and the
# writer waiting for it), a request appends its hit to the spool file itself: bounded memory, and
# still no hit lost.
QUEUE_MAX = 10_000
# How often the replay thread tries again while hits wait in the spool.
REPLAY_INTERVAL = 1.0


class Tracker:
    # How long the "anything spooled?" check is cached per process.
    CACHE_SECONDS = 5.0

    def __init__(self, engine: Engine, secret: bytes, spool: Spool):
        self.engine = engine
        self.secret = secret
        self.spool = spool
        self._next_spool_check = 0.0
        self._next_postponed_log = 0.0
        self._forget_threads()
        _trackers.add(self)

    def _forget_threads(self) -> None:
        """No writer, no replayer, nothing queued: for a new tracker, and in a forked child, where
        the parent's threads do not run (and the parent counts what it had queued)."""
        self._queued: list[Hit] = []
        self._queue_changed = threading.Condition(threading.Lock())  # guards _queued and _writer
        self._writer: threading.Thread | None = None
        self._replayer: threading.Thread | None = None
        self._replayer_lock = threading.Lock()

    @classmethod
    def for_install(cls, config: Config, engine: Engine) -> Tracker:
        return cls(engine, config.secret_key(), Spool(config.spool_dir, config.spool_max_bytes))

    def hit(self, token: str, ip: str, user_agent: str) -> None:
        """Record one load of the image: queued for this process's writer thread, which counts it
        within about WRITE_INTERVAL.  Never raises, never waits for the database; a bad token is
        silently ignored."""
        if not countable(self.secret, token):
            return
        hit = Hit.now(token, ip, user_agent)
        with self._queue_changed:
            queued = len(self._queued) < QUEUE_MAX
            if queued:
                self._queued.append(hit)
                self._queue_changed.notify()
            start_writer = queued and self._writer is None
        if not queued:
            self._spool([hit])
        elif start_writer:
            self._start_writer()
        if time.monotonic() >= self._next_spool_check:
            # Hits another process spooled before it stopped: this one counts them.
            self._next_spool_check = time.monotonic() + self.CACHE_SECONDS
            if self.spool.pending():
                self.start_replaying()

    def record(self, hits: list[Hit]) -> int:
        """Counts the hits in one transaction; how many were counted.  Raises on database errors."""
        with write_transaction(self.engine) as connection:
            return count_hits(connection, hits)

    def close(self) -> None:
        """Counts (or spools) every queued hit and stops the writer thread; a later hit starts
        another.  Run at the process's exit (mod_wsgi runs atexit handlers when a daemon process
        stops) and when the application is closed."""
        with self._queue_changed:
            writer, self._writer = self._writer, None
            self._queue_changed.notify_all()
        if writer is not None:
            writer.join()  # its batch in flight, bounded by the engine's timeouts
        self._count_queue()

    # -- the writer -----------------------------------------------------------------------------

    def _start_writer(self) -> None:
        writer = threading.Thread(target=self._write_queued, name="coretrack-hit-writer", daemon=True)
        with self._queue_changed:
            if self._writer is not None:
                return  # another request started one meanwhile
            self._writer = writer
            try:
                writer.start()
            except RuntimeError:  # no thread to be had (the interpreter stopping, or none left)
                self._writer = None
        if self._writer is None:
            self._count_queue()  # this request counts the queue itself

    def _write_queued(self) -> None:
        """The writer thread: counts what was queued, then again at most every WRITE_INTERVAL,
        until ``close`` replaces it (``close`` counts what is left)."""
        me = threading.current_thread()
        while True:
            with self._queue_changed:
                while not self._queued and self._writer is me:
                    self._queue_changed.wait()
                if self._writer is not me:
                    return
            self._count_or_spool(self._take())
            time.sleep(WRITE_INTERVAL)

    def _count_queue(self) -> None:
        """Counts (or spools) everything queued, in this thread."""
        while hits := self._take():
            self._count_or_spool(hits)

    def _take(self) -> list[Hit]:
        with self._queue_changed:
            hits = self._queued[:REPLAY_BATCH]
            del self._queued[:REPLAY_BATCH]
        return hits

    def _count_or_spool(self, hits: list[Hit]) -> None:
        try:
            self.record(hits)
        except Exception:
            # The engines hide statement parameters: the message names no token.
            log.warning("database unavailable, %d tracking hit(s) spooled", len(hits), exc_info=True)
            self._spool(hits)

    def _spool(self, hits: list[Hit]) -> None:
        try:
            kept = self.spool.append(hits)
        except OSError:
            # Disk and database both gone: nothing left to write to.  The token is never logged.
            log.error("%d tracking hit(s) lost: database unavailable and spool not writable", len(hits),
                      exc_info=True)
            return
        if kept < len(hits):
            log.error("%d tracking hit(s) lost: the spool is full (%d MB, CORETRACK_SPOOL_MAX_MB) and the "
                      "database unavailable", len(hits) - kept, self.spool.max_bytes // 2**20)
        if kept:
            self.start_replaying()

    # -- the spool ------------------------------------------------------------------------------

    def start_replaying(self) -> None:
        """A thread that replays the spool every second until it is empty (one per process)."""
        with self._replayer_lock:
            if self._replayer is None:
                self._replayer = threading.Thread(target=self._replay_until_empty, name="coretrack-spool-replay",
                                                  daemon=True)
                self._replayer.start()

    def _replay_until_empty(self) -> None:
        while True:
            time.sleep(REPLAY_INTERVAL)
            self.replay_spool()
            # Decided under the lock: a hit spooled meanwhile either sees this thread gone and
            # starts another, or is seen here.
            with self._replayer_lock:
                if not self.spool.pending():
                    self._replayer = None
                    return

    def watch_spool(self, stop: threading.Event, interval: float = REPLAY_INTERVAL) -> None:
        """Replays whatever is spooled until ``stop`` is set: for a process beside Apache (the
        worker), so hits spooled by a process that has since ended are counted too."""
        while not stop.wait(interval):
            if self.spool.pending():
                self.replay_spool()

    def replay_spool(self) -> int:
        """Replay every spooled hit exactly once; returns how many were counted or already known."""
        replayed = 0
        try:
            for path in self.spool.claim():
                for hits in self.spool.read(path, REPLAY_BATCH):
                    # A crash between two batches leaves the file: its replayed hits are known by id.
                    self.record(hits)
                    replayed += len(hits)
                self.spool.done(path)
        except Exception:
            if time.monotonic() >= self._next_postponed_log:  # once a minute, not once a second
                self._next_postponed_log = time.monotonic() + 60
                log.warning("spool replay postponed: database still unavailable", exc_info=True)
        return replayed


# Every tracker of the process, for its exit and for a forked child; weak, so an application
# dropped without being closed is not kept alive by them.
_trackers: weakref.WeakSet[Tracker] = weakref.WeakSet()


@atexit.register
def _close_trackers() -> None:
    for tracker in list(_trackers):
        tracker.close()


def _forget_threads_in_child() -> None:
    for tracker in list(_trackers):
        tracker._forget_threads()
        tracker.engine.dispose(close=False)  # the parent's connections stay the parent's


os.register_at_fork(after_in_child=_forget_threads_in_child)
