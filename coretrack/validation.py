"""Validation shared by forms, the API and the CLI: one error per field, nothing half-saved."""

from __future__ import annotations

import re
from email.errors import HeaderParseError
from email.headerregistry import Address

# Practical address check: one @, no spaces or control characters, a dotted or local domain.
_ADDRESS = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class ValidationError(ValueError):
    """Carries ``errors``: field name -> message, to show next to each field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def clean_address(value: str) -> str:
    """A bare email address, or ValueError with a message a user understands."""
    value = (value or "").strip()
    if not value:
        raise ValueError("an email address is required")
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not a valid email address")
    try:
        Address(addr_spec=value)
    except (HeaderParseError, ValueError, IndexError):
        raise ValueError(f"{value!r} is not a valid email address") from None
    return value


def clean_header_text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """One line of text for a mail header: CR/LF would let a user inject headers."""
    value = (value or "").strip()
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"the {field} must be a single line")
    if required and not value:
        raise ValueError(f"the {field} is required")
    if len(value) > max_length:
        raise ValueError(f"the {field} is longer than {max_length} characters")
    return value
