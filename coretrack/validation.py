"""Validation shared by forms, the API and the CLI: one error per field, nothing half-saved."""

from __future__ import annotations

import re
import unicodedata
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from urllib.parse import SplitResult, urlsplit

# Practical address check: one @, no spaces or control characters, a dotted or local domain.
_ADDRESS = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


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
