"""A record's timeline: what happened between the CRM and that person, newest first — the emails
sent to them, each open of those emails (with who or what opened it), each click (likely a person's
or a scanner's, and why), delivery reports, and their opt-out.  Read from the same rows the rest of
the app keeps; each kind is one bounded query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AccessEvent, ClickEvent, Email, EmailLink, Recipient, Record
from .records.related import recipient_condition
from .sending.merge_fields import readable

# The most entries shown: the newest of each kind are read, then the newest of all kept.
SHOWN = 100


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # sent | opened | clicked | delivery | opted_out
    text: str
    email_id: int | None = None


def timeline(session: Session, record: Record) -> list[Entry]:
    mine = recipient_condition(record.record_type, record.id)
    entries = [
        Entry(sent_at, "sent", f"Sent “{readable(subject)}” to {address}", email_id)
        for sent_at, subject, address, email_id in session.execute(
            select(Recipient.sent_at, Email.subject, Recipient.address, Email.id)
            .join(Email, Email.id == Recipient.email_id)
            .where(mine, Recipient.sent_at.is_not(None)).order_by(Recipient.sent_at.desc()).limit(SHOWN))
        if sent_at is not None
    ]
    entries += [
        Entry(at, "opened", f"“{readable(subject)}” opened{_how(verdict, hits)}", email_id)
        for at, verdict, hits, subject, email_id in session.execute(
            select(AccessEvent.at, AccessEvent.verdict, AccessEvent.hits, Email.subject, Email.id)
            .join(Recipient, Recipient.id == AccessEvent.recipient_id).join(Email, Email.id == Recipient.email_id)
            .where(mine).order_by(AccessEvent.at.desc()).limit(SHOWN))
    ]
    entries += [
        Entry(at, "clicked", f"Clicked {url} in “{readable(subject)}”{_clicked_by(verdict, reason, hits)}", email_id)
        for at, verdict, reason, hits, url, subject, email_id in session.execute(
            select(ClickEvent.at, ClickEvent.verdict, ClickEvent.reason, ClickEvent.hits, EmailLink.url,
                   Email.subject, Email.id)
            .join(EmailLink, EmailLink.id == ClickEvent.link_id)
            .join(Recipient, Recipient.id == ClickEvent.recipient_id).join(Email, Email.id == Recipient.email_id)
            .where(mine).order_by(ClickEvent.at.desc()).limit(SHOWN))
    ]
    entries += [
        Entry(at, "delivery", f"“{readable(subject)}”: {status}{f' ({detail})' if detail else ''}", email_id)
        for at, status, detail, subject, email_id in session.execute(
            select(Recipient.delivery_at, Recipient.delivery_status, Recipient.delivery_detail, Email.subject, Email.id)
            .join(Email, Email.id == Recipient.email_id)
            .where(mine, Recipient.delivery_at.is_not(None)).order_by(Recipient.delivery_at.desc()).limit(SHOWN))
        if at is not None
    ]
    if record.email_opt_out and record.email_opt_out_at:
        reason = f" ({record.email_opt_out_reason})" if record.email_opt_out_reason else ""
        entries.append(Entry(record.email_opt_out_at, "opted_out", f"Opted out of email{reason}"))
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:SHOWN]


def _how(verdict: str, hits: int) -> str:
    """How the open happened, in words: by a person, or by a proxy, a prefetch or a scanner."""
    by = "" if verdict == "human" else f" by a {verdict.replace('_', ' ')}"
    return by + (f", {hits} loads" if hits > 1 else "")


def _clicked_by(verdict: str, reason: str, hits: int) -> str:
    """Who or what clicked, in words: likely a person, or a scanner and why (each click event's verdict)."""
    by = ", likely by a person" if verdict == "human" else f" by a {verdict.replace('_', ' ')}"
    return by + (f" ({reason})" if reason and verdict != "human" else "") + (f", {hits} clicks" if hits > 1 else "")
