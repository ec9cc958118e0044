"""Complaints read from the bounce mailbox: a mailbox provider's feedback loop (Yahoo's, Microsoft's
JMRP, a hosting provider's) sends an Abuse Reporting Format report (RFC 5965) when a person marks
a message as spam.  The report returns the message (or its headers), whose VERP return path or
token names the recipient; the address is then suppressed as "complaint".

Only the feedback types a person's complaint sends count (``abuse``, ``fraud``); an authentication
failure report (RFC 6591, ``auth-failure``) or a ``not-spam`` report says nothing of the person and
is left in the folder, as any other message that is no bounce.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage, Message

from . import returned

COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
_FIELD_LENGTH = 100


@dataclass(frozen=True)
class Complaint:
    feedback_type: str  # abuse | fraud
    reporter: str  # the report's Reporting-MTA, else its User-Agent
    tokens: tuple[str, ...]  # signed tokens it names, VERP first
    at: datetime

    @property
    def detail(self) -> str:
        return f"{self.feedback_type} report from {self.reporter}" if self.reporter else f"{self.feedback_type} report"


def parse(raw: bytes, bounce_address: str, secret: bytes) -> Complaint | None:
    """The complaint an ARF report makes, or None for any other message."""
    message = message_from_bytes(raw, policy=policy.default)
    if message.get_content_type() != "multipart/report" or \
            str(message.get_param("report-type", "")).lower() != "feedback-report":
        return None
    fields = _feedback_fields(message)
    if fields is None:
        return None
    feedback_type = _field(fields, "Feedback-Type").lower()
    if feedback_type not in COMPLAINT_TYPES:
        return None
    reporter = _field(fields, "Reporting-MTA").partition(";")[2].strip() or _field(fields, "User-Agent")
    return Complaint(feedback_type, reporter, returned.tokens_in(message, raw, bounce_address, secret),
                     returned.date_of(message))


def _feedback_fields(message: EmailMessage) -> Message | None:
    """The machine-readable part (message/feedback-report): its fields, as headers."""
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]  # the library read the fields as a message's headers
        if isinstance(payload, str):
            return message_from_string(payload, policy=policy.default)
    return None


def _field(fields: Message, name: str) -> str:
    value = " ".join(str(fields.get(name, "")).split())
    return "".join(char for char in value if char.isprintable())[:_FIELD_LENGTH]
