"""The open-tracking hot path: verify a token, count the hit, keep the event.

Rules (DESIGN.md): one atomic ``count = count + 1`` per hit, never a
read-modify-write; no ORM and no per-request set-up; the hit is never lost:
when the database cannot take it, it goes to a spool file on disk and is
replayed exactly once later.  Nothing here raises into the request.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, text

from . import tokens
from .models import utcnow

log = logging.getLogger(__name__)

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

# The event first, made from the recipient the token names: nothing while tracking is off (read
# inside the statement, so every Apache process sees the admin's switch at once), and nothing for a
# hit already recorded (its id, when a spooled hit's first attempt had committed after all).
_RECORD_EVENT = text(
    "INSERT INTO access_events (recipient_id, at, ip, user_agent, verdict, hit_id) "
    "SELECT id, :at, :ip, :user_agent, :verdict, :hit_id FROM recipients WHERE token = :token "
    "AND NOT EXISTS (SELECT 1 FROM settings WHERE key = 'tracking_disabled' AND value = 'true') "
    "ON CONFLICT (hit_id) DO NOTHING RETURNING recipient_id"
)
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

    def as_line(self) -> str:
        return json.dumps({"token": self.token, "at": self.at.isoformat(), "ip": self.ip,
                           "user_agent": self.user_agent, "hit_id": self.hit_id}) + "\n"

    @classmethod
    def from_line(cls, line: str) -> "Hit":
        data = json.loads(line)
        return cls(data["token"], datetime.fromisoformat(data["at"]), data["ip"], data["user_agent"], data["hit_id"])


class Tracker:
    # How long the IP policy and the "anything spooled?" check are cached per process.
    CACHE_SECONDS = 5.0

    def __init__(self, engine: Engine, secret: bytes, spool_dir: Path):
        self.engine = engine
        self.secret = secret
        self.spool = Spool(Path(spool_dir))
        self._ip_policy = ("truncated", 0.0)
        self._next_spool_check = 0.0

    def hit(self, token: str, ip: str, user_agent: str) -> None:
        """Record one load of the image.  Never raises; a bad token is silently ignored."""
        if not tokens.verify(self.secret, token):
            return
        hit = Hit(token=token, at=utcnow(), ip=ip, user_agent=user_agent[:512])
        try:
            self._count(hit, self._ip_storage_policy())
        except Exception:
            log.warning("database unavailable, tracking hit spooled", exc_info=True)
            self._spool(hit)
            return
        if time.monotonic() >= self._next_spool_check:
            self._next_spool_check = time.monotonic() + self.CACHE_SECONDS
            self.replay_spool()

    def _count(self, hit: Hit, ip_policy: str) -> bool:
        with self.engine.begin() as connection:
            return self._count_on(connection, hit, ip_policy)

    @staticmethod
    def _count_on(connection, hit: Hit, ip_policy: str) -> bool:
        recipient_id = connection.execute(
            _RECORD_EVENT,
            {
                "token": hit.token,
                "at": hit.at,
                "ip": store_ip(hit.ip, ip_policy),
                "user_agent": hit.user_agent,
                "verdict": classify(hit.user_agent),
                "hit_id": hit.hit_id,
            },
        ).scalar()
        if recipient_id is None:
            return False  # unknown recipient, tracking disabled, or this hit was counted already
        connection.execute(_COUNT_HIT, {"recipient_id": recipient_id, "at": hit.at})
        return True

    def _ip_storage_policy(self) -> str:
        policy, expires = self._ip_policy
        if time.monotonic() < expires:
            return policy
        with self.engine.connect() as connection:
            policy = connection.execute(_IP_STORAGE).scalar() or "truncated"
        self._ip_policy = (policy, time.monotonic() + self.CACHE_SECONDS)
        return policy

    def _spool(self, hit: Hit) -> None:
        try:
            self.spool.append(hit)
        except OSError:
            # Disk and database both gone: nothing left to write to.  The token is never logged.
            log.error("tracking hit lost: database unavailable and spool not writable", exc_info=True)

    def replay_spool(self) -> int:
        """Replay every spooled hit exactly once; returns how many were counted or already known."""
        replayed = 0
        try:
            for name, hits in self.spool.claim():
                replayed += self._replay_file(name, hits)
        except Exception:
            log.warning("spool replay postponed: database still unavailable", exc_info=True)
        return replayed

    def _replay_file(self, name: str, hits: list[Hit]) -> int:
        """Counts a claimed file's hits in one transaction.  Replaying it again after a crash
        (committed, file not yet deleted) counts nothing twice: every hit carries its id."""
        policy = self._ip_storage_policy()
        with self.engine.begin() as connection:
            for hit in hits:
                self._count_on(connection, hit, policy)
        self.spool.done(name)
        return len(hits)


class Spool:
    """Append-only files of hits the database could not take.

    Writers append whole lines under an exclusive lock to ``hits.jsonl``; a
    replayer takes the lock and renames the file to ``claimed-<uuid>.jsonl``,
    so no line is written after it was read.  A claimed file is deleted only
    after its replay committed.
    """

    ACTIVE = "hits.jsonl"

    def __init__(self, directory: Path):
        self.directory = directory

    def append(self, hit: Hit) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / self.ACTIVE
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
                    os.write(fd, hit.as_line().encode("utf-8"))
                    os.fsync(fd)
                    return
            finally:
                os.close(fd)

    def pending(self) -> bool:
        try:
            return any(entry.name.endswith(".jsonl") for entry in os.scandir(self.directory))
        except FileNotFoundError:
            return False

    def claim(self):
        """Yields ``(name, hits)`` for each spooled file, oldest claims first."""
        if not self.pending():
            return
        active = self.directory / self.ACTIVE
        if active.exists():
            fd = os.open(active, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                claimed = self.directory / f"claimed-{int(time.time())}-{uuid.uuid4().hex}.jsonl"
                try:
                    os.rename(active, claimed)
                except FileNotFoundError:
                    pass
            finally:
                os.close(fd)
        for path in sorted(self.directory.glob("claimed-*.jsonl")):
            lock = os.open(path, os.O_RDONLY)
            try:
                # Another replayer holding this file: leave it to that one.
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if not path.exists():
                    continue
                yield path.name, self._read(path)
            finally:
                os.close(lock)

    @staticmethod
    def _read(path: Path) -> list[Hit]:
        hits = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                hits.append(Hit.from_line(line))
            except (ValueError, KeyError, TypeError):
                # Only a torn last line after a crash can look like this; it cannot be counted.
                log.error("spool file %s line %d unreadable, skipped", path.name, number)
        return hits

    def done(self, name: str) -> None:
        try:
            (self.directory / name).unlink()
        except FileNotFoundError:
            pass
