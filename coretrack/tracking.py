"""The open-tracking hot path: verify a token, count the hit, keep the event.

A hit is counted by one atomic ``count = count + 1``, never a read-modify-write.
Concurrent hits of one process share one transaction (group commit): SQLite
takes one writer at a time, so a transaction per hit makes 32 concurrent
clients queue past any sensible busy timeout, while one per batch does not.
No ORM and nothing built per request.  The hit is never lost: when the
database cannot take it, it goes to a spool file on disk, and a replay thread
counts it (exactly once, by its id) within seconds of the database being back,
with no further traffic.  Nothing here raises into the request.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from . import tokens
from .config import Config
from .models import utcnow

log = logging.getLogger(__name__)

# The public path of the image, as coreBOS's mail carries it: mail sent by it keeps loading here.
TRACK_ACCESS_PATH = "/modules/Emails/TrackAccess.php"
# 1x1 transparent GIF89a.
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
GIF_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", "no-store, no-cache, must-revalidate, private"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]

# One valid token must not grow the event table without limit: past this many events in one
# minute, a recipient's further loads of that minute are folded into the minute's last event
# (its ``hits``), so the count and the sum of ``hits`` stay exact.
EVENTS_PER_RECIPIENT_PER_MINUTE = 10
# Hits per transaction when the spool is replayed: an outage's spool is counted in steps that
# hold the database's write lock briefly, not in one transaction as long as the outage.
REPLAY_BATCH = 500
# How often the replay thread tries again while hits wait in the spool.
REPLAY_INTERVAL = 1.0

# The event first, made from the recipient the token names: nothing while tracking is off (read
# inside the statement, so every Apache process sees the admin's switch at once), nothing for a hit
# already recorded (its id, when a spooled hit's first attempt had committed after all), and
# nothing past the recipient's events-per-minute bound (the hit is then folded, below).
_RECORD_EVENT = text(
    "INSERT INTO access_events (recipient_id, at, ip, user_agent, verdict, hit_id, hits) "
    "SELECT id, :at, :ip, :user_agent, :verdict, :hit_id, 1 FROM recipients WHERE token = :token "
    "AND NOT EXISTS (SELECT 1 FROM settings WHERE key = 'tracking_disabled' AND value = 'true') "
    "AND (SELECT count(*) FROM access_events e WHERE e.recipient_id = recipients.id "
    "AND e.at >= :minute AND e.at < :next_minute) < :events_per_minute "
    "ON CONFLICT (hit_id) DO NOTHING RETURNING recipient_id"
)
# No event was made: find out whether the hit is past the bound (then the minute's last event
# stands for it too) rather than unknown, switched off or already counted.
_EVENT_TO_FOLD_INTO = text(
    "SELECT recipients.id, (SELECT e.id FROM access_events e WHERE e.recipient_id = recipients.id "
    "AND e.at >= :minute AND e.at < :next_minute ORDER BY e.at DESC, e.id DESC LIMIT 1) "
    "FROM recipients WHERE token = :token "
    "AND NOT EXISTS (SELECT 1 FROM settings WHERE key = 'tracking_disabled' AND value = 'true') "
    "AND NOT EXISTS (SELECT 1 FROM access_events WHERE hit_id = :hit_id)"
)
_FOLD_HIT = text("UPDATE access_events SET hits = hits + 1 WHERE id = :event_id")
# Then the count, one atomic statement.  A replayed hit may be older than the last one counted:
# first and last access only ever move outwards.
_COUNT_HIT = text(
    "UPDATE recipients SET access_count = access_count + 1, "
    "first_access = CASE WHEN first_access IS NULL OR first_access > :at THEN :at ELSE first_access END, "
    "last_access = CASE WHEN last_access IS NULL OR last_access < :at THEN :at ELSE last_access END "
    "WHERE id = :recipient_id"
)
_IP_STORAGE = text("SELECT value FROM settings WHERE key = 'ip_storage'")

# Substrings of user agents, lower case, checked in order.
_VERDICTS = (
    ("mail_proxy", ("googleimageproxy", "ggpht.com", "yahoomailproxy", "outlook-image-proxy")),
    (
        "scanner",
        ("bot", "spider", "crawl", "scan", "curl/", "wget/", "python-", "go-http-client", "java/",
         "barracuda", "mimecast", "proofpoint", "symantec", "trendmicro", "libwww"),
    ),
)
# Apple Mail Privacy Protection fetches every image with this bare user agent.
_PRIVACY_PREFETCH_AGENTS = frozenset({"mozilla/5.0", ""})
# Control characters: PostgreSQL refuses NUL outright, and one hit the database refuses would
# fail its whole batch and, spooled, every replay of it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def classify(user_agent: str) -> str:
    agent = user_agent.strip().lower()
    for verdict, needles in _VERDICTS:
        if any(needle in agent for needle in needles):
            return verdict
    if agent in _PRIVACY_PREFETCH_AGENTS:
        return "privacy_prefetch"
    return "human"


def store_ip(ip: str, policy: str) -> str:
    """The address as the privacy option says: full, truncated (/24, /48) or none."""
    if policy == "none":
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if policy == "full":
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@dataclass(frozen=True)
class Hit:
    token: str
    at: datetime
    ip: str
    user_agent: str
    hit_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def now(cls, token: str, ip: str, user_agent: str) -> Hit:
        return cls(token, utcnow(), ip[:45], _CONTROL.sub("", user_agent)[:512])

    def as_line(self) -> str:
        return json.dumps({"token": self.token, "at": self.at.isoformat(), "ip": self.ip,
                           "user_agent": self.user_agent, "hit_id": self.hit_id}) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Hit:
        data = json.loads(line)
        return cls(data["token"], datetime.fromisoformat(data["at"]), data["ip"], data["user_agent"], data["hit_id"])


class GroupCommit:
    """Concurrent callers share one write: while one thread writes a batch, the hits arriving
    meanwhile gather in the next one, which one of their threads writes as soon as the first is
    done.  A lone hit is written at once; under load each transaction carries many hits.
    ``submit`` returns once its hit's batch is written (``write`` must not raise)."""

    @dataclass
    class _Batch:
        hits: list[Hit] = field(default_factory=list)
        written: bool = False

    def __init__(self, write: Callable[[list[Hit]], None]):
        self._write = write
        self._condition = threading.Condition()
        self._open = self._Batch()
        self._writing = False

    def submit(self, hit: Hit) -> None:
        with self._condition:
            batch = self._open
            batch.hits.append(hit)
            while self._writing and not batch.written:
                self._condition.wait()
            if batch.written:
                return
            self._writing = True
            self._open = self._Batch()
        try:
            self._write(batch.hits)
        finally:
            with self._condition:
                batch.written = True
                self._writing = False
                self._condition.notify_all()


def count_hits(connection: Connection, hits: Sequence[Hit]) -> int:
    """Counts hits inside the caller's transaction; how many were counted.  The one place the
    rules live, for the image endpoint and the hit-log ingester alike: hits already recorded (by
    their id), of unknown tokens or made while tracking was off count nothing.  Raises on database
    errors (the caller's transaction then counts nothing)."""
    policy = connection.execute(_IP_STORAGE).scalar() or "truncated"
    # In token order: concurrent batches (other processes) then take row locks in the same
    # order, and wait for each other briefly instead of deadlocking.
    return sum(_count_one(connection, hit, policy) for hit in sorted(hits, key=lambda hit: hit.token))


def _count_one(connection: Connection, hit: Hit, ip_policy: str) -> bool:
    minute = hit.at.replace(second=0, microsecond=0)
    window = {"token": hit.token, "minute": minute, "next_minute": minute + timedelta(minutes=1)}
    recipient_id = connection.execute(
        _RECORD_EVENT,
        {**window, "at": hit.at, "ip": store_ip(hit.ip, ip_policy), "user_agent": hit.user_agent,
         "verdict": classify(hit.user_agent), "hit_id": hit.hit_id,
         "events_per_minute": EVENTS_PER_RECIPIENT_PER_MINUTE},
    ).scalar()
    if recipient_id is None:
        row = connection.execute(_EVENT_TO_FOLD_INTO, {**window, "hit_id": hit.hit_id}).first()
        if row is None or row[1] is None:
            return False  # unknown recipient, tracking disabled, or this hit was counted already
        recipient_id = row[0]
        connection.execute(_FOLD_HIT, {"event_id": row[1]})
    connection.execute(_COUNT_HIT, {"recipient_id": recipient_id, "at": hit.at})
    return True


class Tracker:
    # How long the "anything spooled?" check is cached per process.
    CACHE_SECONDS = 5.0

    def __init__(self, engine: Engine, secret: bytes, spool: Spool):
        self.engine = engine
        self.secret = secret
        self.spool = spool
        self._next_spool_check = 0.0
        self._group = GroupCommit(self._count_or_spool)
        self._replayer: threading.Thread | None = None
        self._replayer_lock = threading.Lock()
        self._next_postponed_log = 0.0

    @classmethod
    def for_install(cls, config: Config, engine: Engine) -> Tracker:
        return cls(engine, config.secret_key(), Spool(config.spool_dir, config.spool_max_bytes))

    def hit(self, token: str, ip: str, user_agent: str) -> None:
        """Record one load of the image.  Never raises; a bad token is silently ignored."""
        if not tokens.verify(self.secret, token):
            return
        self._group.submit(Hit.now(token, ip, user_agent))
        if time.monotonic() >= self._next_spool_check:
            # Hits another process spooled before it stopped: this one counts them.
            self._next_spool_check = time.monotonic() + self.CACHE_SECONDS
            if self.spool.pending():
                self.start_replaying()

    def record(self, hits: list[Hit]) -> int:
        """Counts the hits in one transaction; how many were counted.  Raises on database errors."""
        with self.engine.begin() as connection:
            return count_hits(connection, hits)

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


@dataclass(frozen=True)
class SpoolState:
    hits: int
    size: int


class Spool:
    """Append-only files of hits the database could not take, at most ``max_bytes`` in all.

    Writers append whole lines under an exclusive lock to ``hits.jsonl``; a
    replayer takes the lock and renames the file to ``claimed-<time>-<uuid>.jsonl``,
    so no line is written after it was read.  A claimed file is deleted only
    after all its hits were replayed.
    """

    ACTIVE = "hits.jsonl"

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def append(self, hits: list[Hit]) -> int:
        """Writes the hits that fit under the size bound; returns how many."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / self.ACTIVE
        lines = [hit.as_line().encode("utf-8") for hit in hits]
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A replayer may have renamed the file while we waited for the lock.
                try:
                    same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same_file = False
                if same_file:
                    room = self.max_bytes - self.state(count_hits=False).size
                    kept = []
                    for line in lines:
                        room -= len(line)
                        if room < 0:
                            break
                        kept.append(line)
                    if kept:
                        os.write(fd, b"".join(kept))
                        os.fsync(fd)
                    return len(kept)
            finally:
                os.close(fd)

    def _files(self) -> list[Path]:
        try:
            return sorted(Path(entry.path) for entry in os.scandir(self.directory) if entry.name.endswith(".jsonl"))
        except FileNotFoundError:
            return []

    def pending(self) -> bool:
        return self.state(count_hits=False).size > 0

    def state(self, count_hits: bool = True) -> SpoolState:
        hits = size = 0
        for path in self._files():
            try:
                size += path.stat().st_size
                if count_hits:
                    with open(path, "rb") as handle:
                        hits += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue  # replayed meanwhile
        return SpoolState(hits, size)

    def claim(self) -> Iterator[Path]:
        """Yields each spooled file, renamed away from writers and locked against other
        replayers while the caller reads it, oldest claims first."""
        active = self.directory / self.ACTIVE
        if active.exists():
            fd = os.open(active, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                claimed = self.directory / f"claimed-{int(time.time()):012d}-{uuid.uuid4().hex}.jsonl"
                try:
                    os.rename(active, claimed)
                except FileNotFoundError:
                    pass
            finally:
                os.close(fd)
        for path in sorted(self.directory.glob("claimed-*.jsonl")):
            try:
                lock = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                # Another replayer holding this file: leave it to that one.
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if path.exists():
                    yield path
            finally:
                os.close(lock)

    @staticmethod
    def read(path: Path, batch: int) -> Iterator[list[Hit]]:
        """The file's hits, ``batch`` at a time, read as they are needed."""
        hits: list[Hit] = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    hits.append(Hit.from_line(line))
                except (ValueError, KeyError, TypeError):
                    # Only a torn last line after a crash can look like this; it cannot be counted.
                    log.error("spool file %s line %d unreadable, skipped", path.name, number)
                    continue
                if len(hits) == batch:
                    yield hits
                    hits = []
        if hits:
            yield hits

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)
