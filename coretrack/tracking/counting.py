"""Counting hits: one transaction per batch, the rules applied to every hit, wherever it came from.

Hits are counted by atomic ``count = count + n`` updates, never a read-modify-write, with a
constant number of statements per batch sent straight to the driver.  The image's writer
(tracker.py), the hit log (ingester.py), the spool and a provider's opens all count here.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from ..db import MAX_ID
from ..people import consent, suppression
from ..webhooks.events import OPENED, Event, emit_on
from . import anonymous, corebos_images
from .driver import Driver, driver_on
from .hits import Hit
from .verdicts import PROXY_REASON_PATTERN, Loads, store_ip

# One valid token must not grow the event table without limit: past this many events in one
# minute, a recipient's further loads of that minute are folded into the minute's last event
# (its ``hits``), so the count and the sum of ``hits`` stay exact.
EVENTS_PER_RECIPIENT_PER_MINUTE = 10

# The counting statements, written for the drivers themselves (driver.py: "?" marks a parameter and
# "(?*)" a list of them).  The settings the rules read, as they are now:
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
# Nor is one whose reading is not measured (Recipient.tracked): their message carried no image of theirs,
# so a load of their token (copied from their unsubscribe link, say) stands for nothing they read.
# With what a webhook's first likely-human open reports (human_opens: whether it is the first).
_RECIPIENT_IDS = ("SELECT token, id, sent_at, delivery_at, address, human_opens, email_id, contact_id, account_id, "
                  "lead_id FROM recipients WHERE token IN (?*) AND tracked AND NOT erased ORDER BY id")
# The consent history of the batch's addresses: a hit made after a refusal or a withdrawal (by its own
# time), or before a withdrawal that deleted what was measured, records nothing (people/consent.Stops).
_CONSENT_CHANGES = ("SELECT addresses.address, consent_history.at, consent_history.state, "
                    "consent_history.measurements_deleted FROM consent_history "
                    "JOIN addresses ON addresses.id = consent_history.address_id "
                    "WHERE addresses.address IN (?*) ORDER BY consent_history.at, consent_history.id")
# The recipients imported from coreBOS that the batch's coreBOS images may name (by mailid; the
# crmid is matched in Python), with their own tokens.
_IMPORTED_PAIRS = "SELECT corebos_mailid, corebos_crmid, token FROM recipients WHERE corebos_mailid IN (?*)"
# Each recipient's latest load through a mail proxy (its reason names the proxy: verdicts.PROXY_REASONS), for
# the proxy's timing rule: whether the delivery fetch has been seen.
_LAST_PROXY_LOADS = ("SELECT recipient_id, max(at) FROM access_events WHERE recipient_id IN (?*) "
                     "AND reason LIKE ? GROUP BY recipient_id")
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


def count_hits(connection: Connection, hits: Sequence[Hit]) -> int:
    """Counts hits inside the caller's transaction; how many were counted.  The one place the
    rules live, for the image endpoint and the hit-log ingester alike: hits of unknown tokens or an
    erased person's, made while tracking was off (by the switch's history, at the hit's own time)
    or already recorded (by their id; the same hit twice in the batch counts once) count nothing,
    as do coreBOS images that name no recipient imported with them or carry another key
    (corebos_images.py); each recipient keeps at most EVENTS_PER_RECIPIENT_PER_MINUTE events a minute,
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
    with driver_on(connection) as driver:
        settings: dict[str, str] = dict(driver.rows(_CURRENT_SETTINGS))
        tracking_off = _tracking_switch(driver, hits, settings)
        personal: list[Hit] = []
        shared: list[Hit] = []  # loads of emails' anonymous images
        for hit in hits:
            (personal if anonymous.email_of(hit.token) is None else shared).append(hit)
        counted = anonymous.count_loads(driver, [hit for hit in shared if not tracking_off.at(hit.at)])
        return counted + _count(driver, personal, settings, tracking_off) if personal else counted


def fold_target(connection: Connection, table: str, recipient_id: int, at: datetime) -> int | None:
    """The per-minute bound of count_hits for one more event of a recipient at ``at`` in ``table``
    (access_events or click_events, each with its ``hits``): None when it gets a row of its own,
    else the id of the minute's last event, to add it to.  In the caller's transaction, which
    holds the recipient's row (so concurrent events of that recipient come one after another)."""
    with driver_on(connection) as driver:
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
            with driver_on(connection) as driver:
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


def _tracking_switch(driver: Driver, hits: Sequence[Hit], settings: dict[str, str]) -> _TrackingSwitch:
    """Whether tracking was off, for the times of the batch's hits."""
    first = driver.time(min(hit.at for hit in hits))
    return _TrackingSwitch([(driver.read_time(at), old, new) for at, old, new in driver.rows(
        _SWITCHES, (first, first))], settings.get("tracking_disabled") == "true")


def _count(driver: Driver, hits: Sequence[Hit], settings: dict[str, str], tracking_off: _TrackingSwitch) -> int:
    stored = driver.time
    # Each hit's recipient token: its own, or for a coreBOS image, the imported recipient's.
    token_of = {hit.token: hit.token for hit in hits}
    corebos_tokens = [token for token in token_of if corebos_images.is_token(token)]
    if corebos_tokens:
        token_of.update(_imported_tokens(driver, corebos_tokens, settings))
    batch_tokens = sorted(set(token_of.values()) - {""})
    if not batch_tokens:
        return 0
    recipient_of: dict[str, int] = {}
    times_of: dict[int, tuple[datetime | None, datetime | None]] = {}  # recipient id -> (sent, delivered)
    address_of: dict[str, str] = {}  # token -> lower-case address
    unopened: dict[int, dict[str, Any]] = {}  # recipients without a likely-human open yet: their webhook data
    for token, recipient_id, sent_at, delivered_at, address, human_opens, *ids in driver.rows(
            _RECIPIENT_IDS + driver.lock_rows, batch_tokens, len(batch_tokens)):
        recipient_of[token], address_of[token] = recipient_id, suppression.key(address)
        if not human_opens:
            unopened[recipient_id] = dict(zip(_WEBHOOK_IDS, [*ids, recipient_id, address], strict=True))
        times_of[recipient_id] = (None if sent_at is None else driver.read_time(sent_at),
                                  None if delivered_at is None else driver.read_time(delivered_at))
    addresses = sorted(set(address_of.values()))
    changes = driver.rows(_CONSENT_CHANGES, addresses, len(addresses)) if addresses else []
    stops = consent.Stops((address, driver.read_time(at), state, bool(deleted))
                          for address, at, state, deleted in changes)
    # In time order: events are made for a minute's first loads, later ones folded.  Hit ids break
    # ties, so concurrent batches holding the same hits insert them in the same order.
    candidates = sorted((hit for hit in hits if (token := token_of[hit.token]) in recipient_of
                         and not tracking_off.at(hit.at) and not stops.stopped(address_of[token], hit.at)),
                        key=lambda hit: (hit.at, hit.hit_id))
    if not candidates:
        return 0
    hit_ids = [hit.hit_id for hit in candidates]
    seen = {hit_id for (hit_id,) in driver.rows(_RECORDED, hit_ids, len(hit_ids))}
    recipient_ids = sorted({recipient_of[token_of[hit.token]] for hit in candidates})
    minutes = _minutes(driver, "access_events", recipient_ids, candidates[0].at, candidates[-1].at)
    last_proxy_load = {recipient_id: driver.read_time(at) for recipient_id, at in driver.rows(
        _LAST_PROXY_LOADS, [*recipient_ids, PROXY_REASON_PATTERN], len(recipient_ids))}
    # Each recipient's loads are judged in time order, with what the rules need of their earlier ones.
    loads = {recipient_id: Loads(*times_of[recipient_id], last_proxy_load.get(recipient_id))
             for recipient_id in recipient_ids}

    policy = settings.get("ip_storage") or "truncated"
    new_events: list[list[Any]] = []
    folded: dict[int, int] = {}  # existing event id -> loads folded into it
    counted: dict[int, _Count] = {}
    for hit in candidates:
        if hit.hit_id in seen:
            continue
        seen.add(hit.hit_id)
        recipient_id = recipient_of[token_of[hit.token]]
        verdict, reason = loads[recipient_id].judge(hit)
        minute = minutes.setdefault((recipient_id, _minute(hit.at)), _Minute())
        if minute.events < EVENTS_PER_RECIPIENT_PER_MINUTE:
            event = [recipient_id, stored(hit.at), store_ip(hit.ip, policy), hit.user_agent, verdict,
                     hit.hit_id, 1, corebos_images.is_token(hit.token), reason]
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
    emit_on(driver, [Event(OPENED, count.first_human, unopened[recipient_id])
                     for recipient_id, count in sorted(counted.items())
                     if count.first_human is not None and recipient_id in unopened])
    return sum(count.hits for count in counted.values())


_WEBHOOK_IDS = ("email_id", "contact_id", "account_id", "lead_id", "recipient_id", "address")


_EVENT_HITS = 6  # the place of "hits" in _RECORD_EVENT's values


def _imported_tokens(driver: Driver, legacy_tokens: list[str], settings: dict[str, str]) -> dict[str, str]:
    """Each coreBOS image token's imported recipient's own token; "" for one that counts nothing:
    legacy counting off, no key set or another key, or a pair that was not imported."""
    found = {token: "" for token in legacy_tokens}
    if settings.get("corebos_tracking") == "false":
        return found
    key = settings.get("corebos_app_key", "")
    keyed = {token: hit for token in legacy_tokens
             if (hit := corebos_images.parse(token)) and corebos_images.key_matches(hit, key)}
    mailids = sorted({hit.mailid for hit in keyed.values()})
    if mailids:
        imported = {(mailid, crmid): own for mailid, crmid, own in driver.rows(_IMPORTED_PAIRS, mailids, len(mailids))}
        found.update({token: imported.get((hit.mailid, hit.crmid), "") for token, hit in keyed.items()})
    return found


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _minutes(driver: Driver, table: str, recipient_ids: list[int], first: datetime,
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

