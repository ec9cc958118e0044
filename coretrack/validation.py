"""Validation shared by forms, the API and the CLI: one error per field, nothing half-saved.

Numbers and days from query strings, forms and JSON are read here too: ASCII digits only, within
bounds.

``str.isdigit()`` takes "²", which ``int()`` then refuses; ``int()`` itself takes "٣" (Arabic-Indic
three), "1_000" and more than 4,300 digits only to raise; ``re``'s ``\\d`` matches every script's
digits.  Each let odd input through or turned it into a 500, so every number a request carries is
read here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import SplitResult, urlsplit

# Practical address check: one @, no spaces or control characters, a dotted or local domain.
_ADDRESS = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_DIGITS = re.compile(r"[0-9]+")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Far enough from Python's year 1 and 9999 that range arithmetic (the day after the end, 30 days
# before it) never leaves them.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
DAY_MESSAGE = f"enter a date as YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}"


def web_address(value: str) -> SplitResult | None:
    """``value`` split, if it is an http(s) URL with a host and a valid port; None if not."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts


class ValidationError(ValueError):
    """Carries ``errors``: field name -> message, to show next to each field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def describe(char: str) -> str:
    """A character people can identify in a message: the troublesome ones are invisible."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be saved or mailed as UTF-8 text, or None (JSON can carry lone surrogates)."""
    for char in value:
        if char == "\x00":
            return f"it contains {describe(char)}"
        if "\ud800" <= char <= "\udfff":
            return f"it contains {describe(char)}, half of a UTF-16 pair, which is not a character"
    return None


def line_break(value: str) -> str | None:
    """The first line break in ``value``, or None.  A line break is whatever str.splitlines() splits
    on, because that is what the mail library refuses in a header: CR and LF, but also VT, FF,
    U+001C-U+001E, NEL, U+2028 and U+2029."""
    return next((char for char in value if len(f"a{char}a".splitlines()) > 1), None)


def line_problem(value: str) -> str | None:
    breaking = line_break(value)
    return f"it contains a line break ({describe(breaking)})" if breaking else None


def mail_problem(value: str) -> str | None:
    """Why a header of outgoing mail could not carry ``value`` exactly as it is, or None."""
    problem = line_problem(value) or text_problem(value)
    if problem:
        return problem
    # The mail library writes a literal "=?charset?q?text?=" as it is, and mail programs decode it.
    if "=?" in value and str(policy.SMTP.header_factory("Subject", value)) != value:
        return "it contains “=?…?=”, which mail programs would show as different text"
    return None


def check_text(value: str, *, field: str) -> str:
    """Text that is saved and mailed (bodies): ValueError naming the field if it is not text."""
    problem = text_problem(value or "")
    if problem:
        raise ValueError(f"the {field} cannot be used: {problem}")
    return value


def clean_address(value: str) -> str:
    """A bare email address, or ValueError with a message a user understands."""
    value = (value or "").strip()
    if not value:
        raise ValueError("an email address is required")
    if not value.isascii():
        # Sending such an address needs SMTPUTF8, which coretrack does not use.
        raise ValueError(f"{value!r}: addresses with non-ASCII characters are not supported")
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    try:
        Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError(f"{value!r} is not a valid email address") from None
    return value


def clean_header_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """One line of text (names, settings, subjects): a line break could inject a mail header."""
    value = (value or "").strip()
    breaking = line_break(value)
    if breaking in ("\r", "\n"):
        raise ValueError(f"the {field} must be a single line")
    if breaking:  # invisible: name it
        raise ValueError(f"the {field} must be a single line: {line_problem(value)}")
    check_text(value, field=field)
    if required and not value:
        raise ValueError(f"the {field} is required")
    if len(value) > max_length:
        raise ValueError(f"the {field} is longer than {max_length} characters")
    return value


def clean_mail_text(value: str, *, field: str, max_length: int = 998, required: bool = True) -> str:
    """One line for a header of outgoing mail (subject, names): recipients read exactly what was typed."""
    value = clean_header_text(value, field=field, max_length=max_length, required=required)
    problem = mail_problem(value)
    if problem:
        raise ValueError(f"the {field} cannot be put in an email: {problem}")
    return value


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
