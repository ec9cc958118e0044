"""The anonymous image: one URL per email, shared by every recipient whose reading is not measured,
so its loads tell how often the email was opened overall and nothing about who opened it.

Its token is ``anon.<email id>.<mac>``, signed like recipients' tokens (with its own purpose, so
neither can be made from the other) and checked where the hit is read, before anything is queued.
count_hits adds its loads to the email's per-day total (anonymous_totals), keeping no address,
agent or time of day.  An email shares it only when at least the ``anonymous_minimum`` setting's
number of unmeasured recipients get it: a load among three recipients would point at one of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import date

from ..db import MAX_ID
from .driver import Driver
from .hits import Hit
from .verdicts import classify

PREFIX = "anon."
_MAC_BYTES = 16


def _mac(secret: bytes, email_id: int) -> str:
    digest = hmac.new(secret, b"coretrack-anonymous:" + str(email_id).encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode("ascii")


def token(secret: bytes, email_id: int) -> str:
    return f"{PREFIX}{email_id}.{_mac(secret, email_id)}"


def email_of(value: str) -> int | None:
    """The email a token names, by its form alone (count_hits: its signature was checked where the
    hit was read); None when it is not an anonymous token."""
    if not value.startswith(PREFIX):
        return None
    number, _, mac = value[len(PREFIX):].partition(".")
    if not (0 < len(number) <= 10 and number.isascii() and number.isdigit() and len(mac) == 22):
        return None
    email_id = int(number)
    return email_id if 0 < email_id <= MAX_ID else None


def verify(secret: bytes, value: str) -> bool:
    """True only for an anonymous token this install signed.  Never raises."""
    email_id = email_of(value) if isinstance(value, str) else None
    return email_id is not None and hmac.compare_digest(value.rpartition(".")[2], _mac(secret, email_id))


_EMAILS = "SELECT id FROM emails WHERE id IN (?*)"
# Per email and day: the totals only ever grow, by one atomic statement per row.
_ADD = ("INSERT INTO anonymous_totals (email_id, day, loads, human_loads, clicks) VALUES (?, ?, ?, ?, 0) "
        "ON CONFLICT (email_id, day) DO UPDATE SET loads = anonymous_totals.loads + excluded.loads, "
        "human_loads = anonymous_totals.human_loads + excluded.human_loads")


def count_loads(driver: Driver, hits: Sequence[Hit]) -> int:
    """Adds loads of anonymous images (made while tracking was on) to their emails' totals, in the
    caller's transaction; how many were counted.  Nothing of a load is kept but its day and whether
    its agent and network look like a person's.  A hit id seen twice in the batch counts once; with
    no event rows there is nothing to recognise a replayed hit by across batches (the spool replays
    only batches whose commit failed)."""
    by_email: dict[int, list[Hit]] = {}
    seen: set[str] = set()
    for hit in hits:
        email_id = email_of(hit.token)
        if email_id is not None and hit.hit_id not in seen:
            seen.add(hit.hit_id)
            by_email.setdefault(email_id, []).append(hit)
    if not by_email:
        return 0
    ids = sorted(by_email)
    known = {email_id for (email_id,) in driver.rows(_EMAILS, ids, len(ids))}
    totals: dict[tuple[int, str], list[int]] = {}
    for email_id in sorted(known):
        for hit in by_email[email_id]:
            total = totals.setdefault((email_id, hit.at.date().isoformat()), [0, 0])
            total[0] += 1
            total[1] += classify(hit)[0] == "human"
    driver.write(_ADD, [(email_id, day if driver.sqlite else date.fromisoformat(day), loads, human)
                        for (email_id, day), (loads, human) in sorted(totals.items())])
    return sum(loads for loads, _ in totals.values())
