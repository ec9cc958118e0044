"""Which recipient a report read from the bounce mailbox names (a bounce, a complaint), and when it
was written.

Only signed tokens count: the VERP return path (``bounces+<token>@domain``), or the token in the
message the report returns (its X-SMTPAPI tag, its tracking image's URL).  An address a report
merely mentions names no one: anyone can write a report, nobody but the recipient holds the token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from ..models import utcnow
from ..tracking import tokens

_TOKEN = r"([A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22})"
# A token in a returned message: the tracking image's query (also quoted-printable: "=3D"), the
# X-SMTPAPI unique argument.
_RETURNED_TOKEN = re.compile(rf"(?:TrackAccess\.php\?t=(?:3D)?|\"coretrack_recipient\"\s*:\s*\"){_TOKEN}")


def tokens_in(message: EmailMessage, raw: bytes, bounce_address: str, secret: bytes) -> tuple[str, ...]:
    """Signed tokens the report names: its VERP address first, then any in the message it returns."""
    found: list[str] = []
    if bounce_address:
        local, _, domain = bounce_address.rpartition("@")
        verp = re.compile(rf"{re.escape(local)}\+{_TOKEN}@{re.escape(domain)}", re.IGNORECASE)
        for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "X-Postfix-Sender"):
            found += [match.group(1) for value in message.get_all(name, []) for match in verp.finditer(str(value))]
        found += [match.group(1) for match in verp.finditer(raw.decode("ascii", "replace"))]
    found += [match.group(1) for match in _RETURNED_TOKEN.finditer(raw.decode("ascii", "replace"))]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            try:
                content = str(part.get_content())
            except (LookupError, ValueError):
                continue
            found += [match.group(1) for match in _RETURNED_TOKEN.finditer(content)]
    return tuple(dict.fromkeys(token for token in found if tokens.verify(secret, token)))


def date_of(message: EmailMessage) -> datetime:
    """The report's Date in naive UTC (now, for a report without a readable one)."""
    try:
        date = parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return utcnow()
    if date.tzinfo is None:
        return date
    return date.astimezone(UTC).replace(tzinfo=None)

