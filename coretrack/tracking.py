"""The open-tracking hot path: verify a token, count the hit, keep the event.

Hits are counted by atomic ``count = count + n`` updates, never a read-modify-write.
A request verifies the token, queues the hit in memory and is answered: it
never waits for the database.  One writer thread per process counts what was
queued, at most every WRITE_INTERVAL (10 ms), in one transaction: SQLite takes
one writer at a time, and a commit per batch rather than per hit lets it keep
up under load.  A hit is thus counted within about 10 ms; one still queued
when its process is killed hard (SIGKILL, a crash) is lost, while a normal
exit (atexit, e.g. Apache's graceful restart) counts the queue first.  Apache's
log path (ingest.py) has no such window.  No ORM and nothing built per request.
When the database cannot take a batch, it goes to a spool file on disk (as
does a hit past QUEUE_MAX), and a replay thread counts it (exactly once, by
its id) within seconds of the database being back, with no further traffic.
Nothing here raises into the request.
"""

from __future__ import annotations

import atexit
import bisect
import fcntl
import functools
import ipaddress
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from . import legacy, tokens
from .config import Config
from .db import MAX_ID
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

# The counting statements, written for the drivers themselves: count_hits sends them straight to
# the DBAPI cursor, which costs a tenth of a Core statement's execution.  "?" marks a parameter and
# "(?*)" a list of them (see _sql).  The settings the rules read, as they are now:
_CURRENT_SETTINGS = ("SELECT key, value FROM settings "
                     "WHERE key IN ('ip_storage', 'tracking_disabled', 'corebos_app_key', 'corebos_tracking')")
# The tracking switch's history from the change in force at the batch's first hit on (all of it if
# there is none): enough to tell, for each hit, whether tracking was on when it was made.
_SWITCHES = (
    "SELECT at, old_value, new_value FROM setting_changes WHERE key = 'tracking_disabled' AND at >= "
    "COALESCE((SELECT max(at) FROM setting_changes WHERE key = 'tracking_disabled' AND at <= ?), ?) "
    "ORDER BY at, id"
)
# The batch's recipients, locked in id order on PostgreSQL (SQLite's transaction holds the one
# write lock already): a concurrent batch counting the same recipient waits here, then sees this
# one's events and hit ids.
# With the times the timing rules of classify need.  An erased person's recipient is not among them:
# their old image counts and keeps nothing (erasure sets the flag under the same row lock).
_RECIPIENT_IDS = ("SELECT token, id, sent_at, delivery_at FROM recipients WHERE token IN (?*) AND NOT erased "
                  "ORDER BY id")
# The recipients imported from coreBOS that the batch's coreBOS images may name (by mailid; the
# crmid is matched in Python), with their own tokens.
_IMPORTED_PAIRS = "SELECT corebos_mailid, corebos_crmid, token FROM recipients WHERE corebos_mailid IN (?*)"
_RECORDED = "SELECT hit_id FROM access_events WHERE hit_id IN (?*)"
# For each (recipient, minute) the batch falls in: its last event (by time; by id too on
# PostgreSQL: SQLite gives the row of max(at), any one of equal times) and how many it has, for
# the per-minute bound.  Summed up in the database: a busy recipient has the bound's number of
# events in each of those minutes, which every batch would otherwise fetch one by one.  Of
# access_events, of click_events for clicks (fold_target), of delivery_events for a provider's
# clicks (MinuteBound).
_EVENTS_IN_MINUTES = {
    True: "SELECT recipient_id, max(at), id, count(*) FROM {table} "
          "WHERE recipient_id IN (?*) AND at >= ? AND at < ? GROUP BY recipient_id, substr(at, 1, 16)",
    False: "SELECT recipient_id, max(at), (array_agg(id ORDER BY at DESC, id DESC))[1], count(*) FROM {table} "
           "WHERE recipient_id IN (?*) AND at >= ? AND at < ? GROUP BY recipient_id, date_trunc('minute', at)",
}
_BOUNDED_TABLES = frozenset({"access_events", "click_events", "delivery_events"})
# No ON CONFLICT: a hit id another transaction recorded meanwhile fails the batch, which is then
# spooled and replayed (and the hit known by its id), rather than counted twice.
_RECORD_EVENT = ("INSERT INTO access_events (recipient_id, at, ip, user_agent, verdict, hit_id, hits, legacy, reason) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_FOLD = "UPDATE access_events SET hits = hits + ? WHERE id = ?"
# One atomic update per recipient.  A replayed hit may be older than the last one counted: first
# and last access only ever move outwards.
_COUNT = (
    "UPDATE recipients SET access_count = access_count + ?, human_opens = human_opens + ?, "
    "first_access = CASE WHEN first_access IS NULL OR first_access > ? THEN ? ELSE first_access END, "
    "last_access = CASE WHEN last_access IS NULL OR last_access < ? THEN ? ELSE last_access END, "
    # The batch's earliest likely-human load (NULL when it has none: the column is left as it is).
    "first_human_at = CASE WHEN first_human_at IS NULL THEN ? WHEN ? < first_human_at THEN ? "
    "ELSE first_human_at END "
    "WHERE id = ?"
)


@functools.lru_cache(maxsize=512)
def _sql(statement: str, sqlite: bool, items: int = 0) -> str:
    """The statement in the driver's parameter style, with ``items`` parameters for its list."""
    statement = statement.replace("(?*)", "(" + ", ".join(["?"] * items) + ")")
    return statement if sqlite else statement.replace("?", "%s")


# Substrings of user agents, lower case, checked in order, with the reason each gives.
_AGENTS = (
    ("mail_proxy", "Google image proxy", ("googleimageproxy", "ggpht.com")),
    ("mail_proxy", "Yahoo image proxy", ("yahoomailproxy",)),
    ("mail_proxy", "Outlook image proxy", ("outlook-image-proxy", "outlookimageproxy")),
    (
        "scanner",
        "security scanner's agent",
        ("bot", "spider", "crawl", "scan", "curl/", "wget/", "python-", "go-http-client", "java/",
         "barracuda", "mimecast", "proofpoint", "symantec", "trendmicro", "libwww"),
    ),
)
# Apple Mail Privacy Protection fetches every image with this bare user agent ...
_PRIVACY_PREFETCH_AGENTS = frozenset({"mozilla/5.0", ""})
# ... from Apple's own address block.
_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
# A load this soon after the send is a security scanner's (gateways fetch images as the message
# passes them); no person opens a message this fast.
SCANNER_WINDOW = timedelta(seconds=10)
# A load this soon after delivery (the provider's report, else the send) is Apple's prefetch,
# which fetches images as the message reaches the device, before anyone looks at it.
PREFETCH_WINDOW = timedelta(seconds=60)
# Control characters: PostgreSQL refuses NUL outright, and one hit the database refuses would
# fail its whole batch and, spooled, every replay of it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def classify(hit: Hit, sent_at: datetime | None = None, delivered_at: datetime | None = None) -> tuple[str, str]:
    """The hit's verdict (human | mail_proxy | privacy_prefetch | scanner) and the reason for it,
    from its full address (before the storage policy truncates it), agent and timing.  The one
    place the rules live: count_hits applies it to every hit, from the image, the hit log or a
    provider."""
    if hit.provider_verdict:
        return "mail_proxy", hit.provider_verdict
    verdict = by_agent(hit.user_agent)
    if verdict[0] != "human":
        return verdict
    if _in_apple_network(hit.ip):
        return "privacy_prefetch", "Apple address block (17.0.0.0/8)"
    if sent_at is not None and hit.at - sent_at < SCANNER_WINDOW:
        return "scanner", "loaded within seconds of the send"
    delivered = delivered_at or sent_at
    if delivered is not None and hit.at - delivered < PREFETCH_WINDOW:
        return "privacy_prefetch", "loaded right at delivery"
    return verdict


# Few distinct agents and addresses make most hits (mail proxies, the same reader's opens): each
# is worked out once per process.
@functools.lru_cache(maxsize=4096)
def by_agent(user_agent: str) -> tuple[str, str]:
    agent = user_agent.strip().lower()
    for verdict, reason, needles in _AGENTS:
        if any(needle in agent for needle in needles):
            return verdict, reason
    if agent in _PRIVACY_PREFETCH_AGENTS:
        return "privacy_prefetch", "Apple Mail Privacy Protection's bare agent"
    return "human", ""


@functools.lru_cache(maxsize=4096)
def _in_apple_network(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in _APPLE_NETWORK
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)
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


class _HitIds:
    """Hit ids unique across processes and time without a system call per hit: a random prefix
    per process (made again in a forked child) and a counter.  uuid4 reads os.urandom, which lets
    go of the GIL: getting it back behind busy request threads cost the image up to milliseconds."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = os.urandom(10).hex()  # 80 random bits
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"  # 32 characters in all


_new_hit_id = _HitIds()


@dataclass(frozen=True)
class Hit:
    token: str
    at: datetime
    ip: str
    user_agent: str
    hit_id: str = field(default_factory=_new_hit_id)
    # A machine-open reason a mail provider gave (e.g. "SendGrid sg_machine_open"); hits from the
    # image carry none, so spool and log lines leave it out.
    provider_verdict: str = ""

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


def token_of_query(secret: bytes, query: str) -> str:
    """The token a load of the image stands for, from its query string: the first ``t``; without
    one, the token for coreBOS's ``record``, ``mailid`` and ``app_key`` (see legacy.py)."""
    if query.startswith("t=") and "&" not in query and "%" not in query and "+" not in query:
        return query[2:]  # what the mail carries: nothing to decode
    first: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        first.setdefault(key, value)
    if "t" in first or "app_key" not in first:
        return first.get("t", "")
    return legacy.token(secret, first.get("record", ""), first.get("mailid", ""), first["app_key"])


def countable(secret: bytes, token: str) -> bool:
    """Whether a hit may be queued for count_hits: a token this install signed, or one standing for
    a coreBOS image (whose key and recipient only count_hits can check, against the database)."""
    return tokens.verify(secret, token) or legacy.parse(token) is not None


def count_hits(connection: Connection, hits: Sequence[Hit]) -> int:
    """Counts hits inside the caller's transaction; how many were counted.  The one place the
    rules live, for the image endpoint and the hit-log ingester alike: hits of unknown tokens or an
    erased person's, made while tracking was off (by the switch's history, at the hit's own time)
    or already recorded (by their id; the same hit twice in the batch counts once) count nothing,
    as do coreBOS images that name no recipient imported with them or carry another key
    (legacy.py); each recipient keeps at most EVENTS_PER_RECIPIENT_PER_MINUTE events a minute,
    further loads folded into the minute's last event.  A constant number of statements whatever
    the batch's size (up to ten thousand hits or so: SQLite takes 32,766 parameters a statement).

    On SQLite, open the transaction with ``write_transaction``: its reads are then consistent with
    its writes.  Raises SQLAlchemy's DBAPIError on database errors, among them IntegrityError for a
    hit id another transaction recorded meanwhile: the caller's transaction then counts nothing.
    """
    if not hits:
        return 0
    if not connection.in_transaction():
        connection.begin()  # what goes to the driver below is committed with the caller's transaction
    with _driver(connection) as driver:
        return _count(driver, hits)


def fold_target(connection: Connection, table: str, recipient_id: int, at: datetime) -> int | None:
    """The per-minute bound of count_hits for one more event of a recipient at ``at`` in ``table``
    (access_events or click_events, each with its ``hits``): None when it gets a row of its own,
    else the id of the minute's last event, to add it to.  In the caller's transaction, which
    holds the recipient's row (so concurrent events of that recipient come one after another)."""
    with _driver(connection) as driver:
        minute = _minutes(driver, table, [recipient_id], at, at).get((recipient_id, _minute(at)))
    if minute is None or minute.events < EVENTS_PER_RECIPIENT_PER_MINUTE:
        return None
    assert isinstance(minute.last, int)  # a stored event's id
    return minute.last


class MinuteBound:
    """The per-minute bound for events that are kept or not, with nothing to fold into (a
    provider's clicks, which count nothing): ``admits`` those that keep a recipient's events in
    ``table`` within EVENTS_PER_RECIPIENT_PER_MINUTE a minute, for events of these recipients at
    these times."""

    def __init__(self, connection: Connection, table: str, recipient_ids: list[int], times: list[datetime]) -> None:
        found: dict[tuple[int, datetime], _Minute] = {}
        if recipient_ids and times:
            with _driver(connection) as driver:
                found = _minutes(driver, table, recipient_ids, min(times), max(times))
        self._events = {key: minute.events for key, minute in found.items()}

    def admits(self, recipient_id: int, at: datetime) -> bool:
        """Whether one more event of the recipient at ``at`` is kept (and counted against the bound)."""
        key = (recipient_id, _minute(at))
        events = self._events.get(key, 0)
        if events >= EVENTS_PER_RECIPIENT_PER_MINUTE:
            return False
        self._events[key] = events + 1
        return True


@contextmanager
def _driver(connection: Connection) -> Iterator[_Driver]:
    """A _Driver on the connection; the driver's errors raised as SQLAlchemy's DBAPIError."""
    driver = _Driver(connection)
    try:
        yield driver
    except driver.dbapi_error as error:
        raise DBAPIError.instance(driver.statement, None, error, driver.dbapi_error, hide_parameters=True,
                                  dialect=connection.dialect) from error
    finally:
        driver.cursor.close()


class _Driver:
    """count_hits's statements on the connection's DBAPI cursor, in its parameter style and with
    times as its database keeps them."""

    def __init__(self, connection: Connection):
        self.sqlite = connection.dialect.name == "sqlite"
        self.lock_rows = "" if self.sqlite else " FOR UPDATE"
        self.dbapi_error: type[Exception] = connection.dialect.loaded_dbapi.Error
        self.cursor = connection.connection.cursor()
        self.statement = ""  # the last one sent, for errors

    def rows(self, statement: str, parameters: Sequence[Any] = (), items: int = 0) -> list[Any]:
        self.statement = _sql(statement, self.sqlite, items)
        self.cursor.execute(self.statement, parameters)
        return list(self.cursor.fetchall())

    def write(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.statement = _sql(statement, self.sqlite)
            self.cursor.executemany(self.statement, rows)

    def time(self, at: datetime) -> object:
        # SQLite keeps times as text, in SQLAlchemy's form, and compares them as text.
        return at.isoformat(" ", "microseconds") if self.sqlite else at

    def read_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value) if self.sqlite else value


def _count(driver: _Driver, hits: Sequence[Hit]) -> int:
    stored = driver.time
    settings: dict[str, str] = dict(driver.rows(_CURRENT_SETTINGS))
    first = stored(min(hit.at for hit in hits))
    tracking_off = _TrackingSwitch([(driver.read_time(at), old, new) for at, old, new in driver.rows(
        _SWITCHES, (first, first))], settings.get("tracking_disabled") == "true")
    # Each hit's recipient token: its own, or for a coreBOS image, the imported recipient's.
    token_of = {hit.token: hit.token for hit in hits}
    if any(legacy.is_token(token) for token in token_of):
        token_of.update(_imported_tokens(driver, [token for token in token_of if legacy.is_token(token)], settings))
    batch_tokens = sorted(set(token_of.values()) - {""})
    if not batch_tokens:
        return 0
    recipient_of: dict[str, int] = {}
    times_of: dict[int, tuple[datetime | None, datetime | None]] = {}  # recipient id -> (sent, delivered)
    for token, recipient_id, sent_at, delivered_at in driver.rows(_RECIPIENT_IDS + driver.lock_rows, batch_tokens,
                                                                  len(batch_tokens)):
        recipient_of[token] = recipient_id
        times_of[recipient_id] = (None if sent_at is None else driver.read_time(sent_at),
                                  None if delivered_at is None else driver.read_time(delivered_at))
    # In time order: events are made for a minute's first loads, later ones folded.  Hit ids break
    # ties, so concurrent batches holding the same hits insert them in the same order.
    candidates = sorted((hit for hit in hits if token_of[hit.token] in recipient_of and not tracking_off.at(hit.at)),
                        key=lambda hit: (hit.at, hit.hit_id))
    if not candidates:
        return 0
    hit_ids = [hit.hit_id for hit in candidates]
    seen = {hit_id for (hit_id,) in driver.rows(_RECORDED, hit_ids, len(hit_ids))}
    recipient_ids = sorted({recipient_of[token_of[hit.token]] for hit in candidates})
    minutes = _minutes(driver, "access_events", recipient_ids, candidates[0].at, candidates[-1].at)

    policy = settings.get("ip_storage") or "truncated"
    new_events: list[list[Any]] = []
    folded: dict[int, int] = {}  # existing event id -> loads folded into it
    counted: dict[int, _Count] = {}
    for hit in candidates:
        if hit.hit_id in seen:
            continue
        seen.add(hit.hit_id)
        recipient_id = recipient_of[token_of[hit.token]]
        verdict, reason = classify(hit, *times_of[recipient_id])
        minute = minutes.setdefault((recipient_id, _minute(hit.at)), _Minute())
        if minute.events < EVENTS_PER_RECIPIENT_PER_MINUTE:
            event = [recipient_id, stored(hit.at), store_ip(hit.ip, policy), hit.user_agent, verdict,
                     hit.hit_id, 1, legacy.is_token(hit.token), reason]
            new_events.append(event)
            minute.add_new(hit.at, event)
        elif isinstance(minute.last, list):
            minute.last[_EVENT_HITS] += 1  # an event of this batch: it is written with its hits
        else:
            assert minute.last is not None  # a full minute has a last event
            folded[minute.last] = folded.get(minute.last, 0) + 1
        human = hit.at if verdict == "human" else None
        count = counted.get(recipient_id)
        if count is None:
            counted[recipient_id] = _Count(1, hit.at, hit.at, human, int(human is not None))
        else:
            count.add(hit.at, human)

    driver.write(_RECORD_EVENT, [tuple(event) for event in new_events])
    driver.write(_FOLD, [(loads, event_id) for event_id, loads in sorted(folded.items())])
    # In id order, as the rows were locked.
    driver.write(_COUNT, [(count.hits, count.human, *[stored(count.first)] * 2, *[stored(count.last)] * 2,
                           *[None if count.first_human is None else stored(count.first_human)] * 3, recipient_id)
                          for recipient_id, count in sorted(counted.items())])
    return sum(count.hits for count in counted.values())


_EVENT_HITS = 6  # the place of "hits" in _RECORD_EVENT's values


def _imported_tokens(driver: _Driver, legacy_tokens: list[str], settings: dict[str, str]) -> dict[str, str]:
    """Each coreBOS image token's imported recipient's own token; "" for one that counts nothing:
    legacy counting off, no key set or another key, or a pair that was not imported."""
    found = {token: "" for token in legacy_tokens}
    if settings.get("corebos_tracking") == "false":
        return found
    key = settings.get("corebos_app_key", "")
    keyed = {token: hit for token in legacy_tokens if (hit := legacy.parse(token)) and legacy.key_matches(hit, key)}
    mailids = sorted({hit.mailid for hit in keyed.values()})
    if mailids:
        imported = {(mailid, crmid): own for mailid, crmid, own in driver.rows(_IMPORTED_PAIRS, mailids, len(mailids))}
        found.update({token: imported.get((hit.mailid, hit.crmid), "") for token, hit in keyed.items()})
    return found


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _minutes(driver: _Driver, table: str, recipient_ids: list[int], first: datetime,
             last: datetime) -> dict[tuple[int, datetime], _Minute]:
    """The recipients' events in ``table`` by (recipient id, minute), from ``first``'s minute to ``last``'s."""
    if table not in _BOUNDED_TABLES:
        raise ValueError(f"{table!r} is no event table with a per-minute bound")
    minutes: dict[tuple[int, datetime], _Minute] = {}
    for recipient_id, at, event_id, events in driver.rows(
        _EVENTS_IN_MINUTES[driver.sqlite].format(table=table),
        [*recipient_ids, driver.time(_minute(first)), driver.time(_minute(last) + timedelta(minutes=1))],
        len(recipient_ids),
    ):
        at = driver.read_time(at)
        minutes[recipient_id, _minute(at)] = _Minute(events, at, event_id)
    return minutes


class _TrackingSwitch:
    """Whether tracking was off at a given time: the value the latest change at or before that time
    set; before the first change, the value that change replaced; with no change, the setting now."""

    def __init__(self, changes: Sequence[tuple[datetime, str, str]], off_now: bool):
        self._times = [at for at, _, _ in changes]
        self._off_after = [new == "true" for _, _, new in changes]
        self._off_before = changes[0][1] == "true" if changes else off_now

    def at(self, when: datetime) -> bool:
        index = bisect.bisect_right(self._times, when)
        return self._off_after[index - 1] if index else self._off_before


class _Minute:
    """One recipient's events in one minute: how many, and the last (by time, then id), which
    stands for the loads past the bound: an existing event's id or an event this batch makes."""

    __slots__ = ("events", "last", "_last_at")

    def __init__(self, events: int = 0, last_at: datetime | None = None, last_id: int | None = None) -> None:
        """A minute with ``events`` events already stored, the last of them ``last_id`` at ``last_at``."""
        self.events = events
        self.last: int | list[Any] | None = last_id
        self._last_at = None if last_at is None or last_id is None else (last_at, last_id)

    def add_new(self, at: datetime, event: list[Any]) -> None:
        # Inserted after the existing events, it has the highest id so far: it wins ties.
        self.events += 1
        if self._last_at is None or at >= self._last_at[0]:
            self.last, self._last_at = event, (at, MAX_ID)


@dataclass(slots=True)
class _Count:
    hits: int
    first: datetime
    last: datetime
    first_human: datetime | None  # the earliest likely-human load
    human: int  # likely-human loads

    def add(self, at: datetime, human: datetime | None) -> None:
        self.hits += 1
        self.human += human is not None
        self.first = min(self.first, at)
        self.last = max(self.last, at)
        if human is not None and (self.first_human is None or human < self.first_human):
            self.first_human = human


def write_transaction(engine: Engine) -> AbstractContextManager[Connection]:
    """A transaction for ``count_hits``: on SQLite it takes the write lock at once (BEGIN
    IMMEDIATE), so its reads see what its writes build on, and a concurrent writer makes it wait
    (busy timeout) instead of failing at its first write."""
    return _immediate(engine) if engine.dialect.name == "sqlite" else engine.begin()


@contextmanager
def _immediate(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:  # rolled back on leaving, unless committed
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


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
