"""The compose preview with merge fields: the prepared email as one of its recipients gets it, and
what it warns of (fields not offered, empty ones, fallbacks used)."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import User
from . import merge_fields
from .compose import PlannedRecipient, PreparedEmail


@dataclass
class Preview:
    """The message as one recipient gets it, and what the preview warns of."""

    recipient: PlannedRecipient
    subject: str
    html: str
    text: str
    unknown: list[str]  # merge fields not offered: they come out empty for everyone
    empty: list[str]  # fields this recipient has no value for
    fallbacks: list[str]  # fields this recipient gets the fallback of


def chosen_recipient(prepared: PreparedEmail, preview_as: str) -> PlannedRecipient:
    """The recipient named (by address); by default the first one sent to that has a record."""
    chosen = [planned for planned in prepared.recipients if not planned.skip_reason] or prepared.recipients
    wanted = preview_as.strip().lower()
    return next((planned for planned in chosen if planned.address.lower() == wanted), None) or next(
        (planned for planned in chosen if planned.record is not None), chosen[0])


def as_recipient(prepared: PreparedEmail, sender: User, recipient: PlannedRecipient) -> Preview:
    """The prepared email with ``recipient``'s merge values (and the sender's) filled in."""
    rendered = merge_fields.render(prepared.subject, prepared.html, prepared.text, merge_fields.values_for(
        recipient.record, merge_fields.sender_values(sender)))
    return Preview(recipient, rendered.subject, rendered.html, rendered.text, rendered.unknown, rendered.empty,
                   rendered.fallbacks)


def preview(prepared: PreparedEmail, sender: User, preview_as: str) -> Preview | None:
    """With merge fields: the prepared email as the recipient named gets it (``chosen_recipient``).
    None without fields: every recipient gets the same."""
    if not merge_fields.has_fields(prepared.subject, prepared.html, prepared.text):
        return None
    return as_recipient(prepared, sender, chosen_recipient(prepared, preview_as))
