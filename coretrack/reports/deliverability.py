"""The deliverability panel: an email's rates, or the install's over its recent sends, beside what
Gmail and Yahoo ask of bulk senders (complaints under 0.3%, Gmail asks under 0.1%; few bounces;
one-click unsubscribes honoured within two days) and the guardrails' own thresholds.

The counts are the rates' (reports/rates.py); the shares here have two decimals, since the limits
that matter are tenths of a percent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from ..models import Email, Recipient, utcnow
from ..settings import SettingsService
from .rates import counts, hard_bounced

# The install's panel looks at the emails sent in this many days: what providers judge a sender by
# (Google's Postmaster Tools shows 30 days too).
INSTALL_DAYS = 30
# Gmail and Yahoo block bulk senders at or above this complaint rate; Gmail asks to stay under the second.
COMPLAINTS_BLOCKED, COMPLAINTS_ASKED = Decimal("0.3"), Decimal("0.1")


@dataclass(frozen=True)
class Line:
    """One row of the panel: a count as a share of its base, and how it stands against the limits."""

    key: str
    label: str
    count: int
    base: int
    base_name: str
    asked: str  # what providers (or the guardrails) ask, in words
    verdict: str  # "ok", "warn", "bad", or "" (nothing to judge it by, or no base yet)

    @property
    def percent(self) -> float | None:
        return round(100 * self.count / self.base, 2) if self.base else None


def _verdict(count: int, base: int, warn: Decimal | None, bad: Decimal | None) -> str:
    """"bad" at or above ``bad`` percent, "warn" at or above ``warn``, else "ok" ("" without a base)."""
    if not base:
        return ""
    if bad and 100 * count >= bad * base:
        return "bad"
    if warn and 100 * count >= warn * base:
        return "warn"
    return "ok"


def lines(numbers: dict[str, int], settings: SettingsService) -> list[Line]:
    """The panel's rows for these counts (``sent``, ``delivered``, ``bounced``, ``hard_bounced``,
    ``complained``, ``unsubscribed``)."""
    sent, delivered = numbers["sent"], numbers["delivered"]
    bounce_limit = Decimal(settings.get("guardrail_bounce_percent"))
    complaint_limit = Decimal(settings.get("guardrail_complaint_percent"))
    guard = f"; the guardrails pause a mass send at {bounce_limit}%" if bounce_limit else ""
    return [
        Line("delivered", "Delivered", delivered, sent, "handed over", "as many as possible: the rest bounced",
             _verdict(sent - delivered, sent, Decimal(2), Decimal(5))),
        Line("hard_bounced", "Hard bounces", numbers["hard_bounced"], sent, "handed over",
             "Gmail and Yahoo: mail only addresses that exist (no published figure; under 2% is the usual rule)"
             + guard,
             _verdict(numbers["hard_bounced"], sent, bounce_limit or Decimal(2), Decimal(5))),
        Line("bounced", "All bounces", numbers["bounced"], sent, "handed over",
             "hard, soft and blocked together: a rising share means a provider is refusing the mail",
             _verdict(numbers["bounced"], sent, Decimal(5), Decimal(10))),
        Line("complained", "Spam complaints", numbers["complained"], delivered, "delivered",
             f"under {COMPLAINTS_BLOCKED}% (Gmail and Yahoo); Gmail asks for under {COMPLAINTS_ASKED}%"
             + (f"; the guardrails pause a mass send at {complaint_limit}%" if complaint_limit else ""),
             _verdict(numbers["complained"], delivered, COMPLAINTS_ASKED, COMPLAINTS_BLOCKED)),
        Line("unsubscribed", "Unsubscribes", numbers["unsubscribed"], delivered, "delivered",
             "one-click unsubscribe honoured within two days (Gmail and Yahoo): coretrack opts the address out at once",
             "ok" if delivered else ""),
    ]


_SUMS = ("sent", "delivered", "bounced", "complained", "unsubscribed")


def _numbers(session: Session, *where: ColumnElement[bool]) -> dict[str, int]:
    sums = counts(all_loads=False)
    row = session.execute(select(*(sums[key].label(key) for key in _SUMS), hard_bounced().label("hard_bounced"))
                          .select_from(Recipient).join(Email, Email.id == Recipient.email_id)
                          .where(*where)).mappings().one()
    return {key: int(value) for key, value in row.items()}


def email_panel(session: Session, settings: SettingsService, email_id: int) -> list[Line]:
    """The panel of one email."""
    return lines(_numbers(session, Recipient.email_id == email_id), settings)


def install_panel(session: Session, settings: SettingsService) -> list[Line]:
    """The panel of every email sent in the last INSTALL_DAYS days."""
    since = utcnow() - timedelta(days=INSTALL_DAYS)
    return lines(_numbers(session, Email.sent_at >= since), settings)
