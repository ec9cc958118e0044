"""Numbers and days from query strings, forms and JSON: ASCII digits only, within bounds.

``str.isdigit()`` takes "²", which ``int()`` then refuses; ``int()`` itself takes "٣" (Arabic-Indic
three), "1_000" and more than 4,300 digits only to raise; ``re``'s ``\\d`` matches every script's
digits.  Each let odd input through or turned it into a 500, so every number a request carries is
read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

_DIGITS = re.compile(r"[0-9]+")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Far enough from Python's year 1 and 9999 that range arithmetic (the day after the end, 30 days
# before it) never leaves them.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
DAY_MESSAGE = f"enter a date as YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"


def whole_number(raw: str | None, minimum: int, maximum: int, *, clamp: bool = False) -> int:
    """``raw`` as a whole number from ``minimum`` to ``maximum`` (``minimum`` >= 0), or ValueError
    with a message for the user.  ``clamp``: a number out of range becomes the nearest bound instead."""
    text = (raw or "").strip()
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"enter a whole number from {minimum} to {maximum}")
    significant = text.lstrip("0") or "0"
    # Longer than the bound is past it: no need to ask int() (which refuses 4,300 digits and more).
    number = int(significant) if len(significant) <= len(str(maximum)) else maximum + 1
    if minimum <= number <= maximum:
        return number
    if clamp:
        return min(max(number, minimum), maximum)
    raise ValueError(f"enter a whole number from {minimum} to {maximum}")


def day(raw: str | None) -> date | None:
    """A YYYY-MM-DD day from FIRST_DAY to LAST_DAY, None for nothing, or ValueError with DAY_MESSAGE."""
    text = (raw or "").strip()
    if not text:
        return None
    try:
        if _DAY.fullmatch(text) and FIRST_DAY <= (value := date.fromisoformat(text)) <= LAST_DAY:
            return value
    except ValueError:
        pass
    raise ValueError(DAY_MESSAGE)


def day_range(args: Mapping[str, str], errors: dict[str, str]) -> tuple[date | None, date | None]:
    """The ``from`` and ``to`` days of a query string, each optional.  A bad day, or an end before the
    start, is an error for its field in ``errors`` and reads as None."""
    days: dict[str, date | None] = {}
    for key in ("from", "to"):
        try:
            days[key] = day(args.get(key))
        except ValueError as error:
            errors[key] = str(error)
            days[key] = None
    start, end = days["from"], days["to"]
    if start and end and start > end:
        errors["to"] = "the end of the range is before its start"
        end = None
    return start, end
