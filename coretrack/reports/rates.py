"""Rates, each a share of a base it names: delivered and bounced of the messages sent; opened and clicked
of the measured recipients it was delivered to; click-to-open of those who opened; unsubscribes and
complaints of the recipients it was delivered to.

Opens and clicks are the likely-human ones (first_human_at, human_clicks) unless the filters ask for
all loads (``?loads=all``: access_count, click_count, proxies and scanners too).  Every count comes
from the recipients' own columns through ix_recipients_email_stats (covering them): no event is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from ..delivery_reports.classes import HARD
from ..models import Email, Recipient
from ..people.suppression import COMPLAINT, UNSUBSCRIBE
from .report import IS_DELIVERED, IS_MEASURED, Row, count_if

# What a mail server or provider reported after accepting the message: it never reached the mailbox.


@dataclass(frozen=True)
class RateDefinition:
    key: str  # the rate's row key (and the CSV column, the JSON field)
    label: str
    count: str  # the key of what it counts
    base: str  # the key of its base
    base_name: str  # what the base is, in words ("x% of N <base_name>")


# Whose counts (SQL below) and bases: the order the pages show them in.
RATES = (
    RateDefinition("delivery_rate", "Delivery rate", "delivered", "sent", "sent"),
    RateDefinition("open_rate", "Open rate", "opened", "measured", "measured delivered recipients"),
    RateDefinition("click_rate", "Click rate", "clicked", "measured", "measured delivered recipients"),
    RateDefinition("click_to_open", "Click-to-open", "clicked", "opened", "who opened"),
    RateDefinition("unsubscribe_rate", "Unsubscribe rate", "unsubscribed", "delivered", "delivered"),
    RateDefinition("bounce_rate", "Bounce rate", "bounced", "sent", "sent"),
    RateDefinition("complaint_rate", "Complaint rate", "complained", "delivered", "delivered"),
)
COUNTS = ("sent", "delivered", "bounced", "measured", "opened", "clicked", "unsubscribed", "complained")


# Handed to the mail server: accepted (sent) or refused by it (failed).
HANDED_OVER = Recipient.status.in_(("sent", "failed"))


def counts(all_loads: bool) -> dict[str, ColumnElement[int]]:
    """The COUNTS as SQL sums over recipients (to group by email, by domain)."""
    sent = HANDED_OVER
    delivered, measured = IS_DELIVERED, IS_MEASURED
    opened = Recipient.access_count > 0 if all_loads else Recipient.first_human_at.is_not(None)
    clicked = Recipient.click_count > 0 if all_loads else Recipient.human_clicks > 0
    return {
        "sent": count_if(sent), "delivered": count_if(delivered),
        "bounced": count_if(and_(sent, ~delivered)), "measured": count_if(measured),
        "opened": count_if(and_(measured, opened)), "clicked": count_if(and_(measured, clicked)),
        "unsubscribed": count_if(and_(delivered, Recipient.opted_out_as == UNSUBSCRIBE)),
        "complained": count_if(and_(delivered, Recipient.opted_out_as == COMPLAINT)),
    }


def hard_bounced() -> ColumnElement[int]:
    """Of the bounced, those whose class is hard (the address does not exist, the domain takes no mail):
    what the guardrails (sending/guardrails.py) and the deliverability panel count, beside COUNTS."""
    return count_if(and_(HANDED_OVER, ~IS_DELIVERED, Recipient.bounce_class == HARD))


def percent(count: int, base: int) -> float | None:
    """``count`` as a percentage of ``base`` to one decimal; None without a base (no share of nothing)."""
    return round(100 * count / base, 1) if base else None


@dataclass(frozen=True)
class Rate:
    definition: RateDefinition
    count: int
    base: int

    @property
    def percent(self) -> float | None:
        return percent(self.count, self.base)

    @property
    def base_text(self) -> str:
        """``of 3 measured delivered recipients``, or, without a base, that there is none."""
        name = self.definition.base_name
        if self.base:
            return f"of {self.base} {name}"
        return "nobody opened" if name == "who opened" else f"none {name}" if name in ("sent", "delivered") \
            else f"no {name}"


@dataclass
class Rates:
    """One email's counts and rates (or a domain's: ``key`` is then its name)."""

    key: Any
    all_loads: bool
    numbers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    @property
    def rates(self) -> list[Rate]:
        return [Rate(definition, self.numbers[definition.count], self.numbers[definition.base])
                for definition in RATES]

    def row(self) -> Row:
        """The counts and the rates (percent, None without a base) as one row, for CSV and JSON."""
        return {"loads": "all" if self.all_loads else "human", **self.numbers,
                **{rate.definition.key: rate.percent for rate in self.rates}}


def email_rates(session: Session, email_ids: Iterable[int], all_loads: bool = False) -> dict[int, Rates]:
    """Each email's Rates, in one query over its recipients."""
    ids = list(email_ids)
    found = {email_id: Rates(email_id, all_loads) for email_id in ids}
    if not ids:
        return found
    sums = counts(all_loads)
    statement = (select(Recipient.email_id, *(total.label(key) for key, total in sums.items()))
                 .where(Recipient.email_id.in_(ids)).group_by(Recipient.email_id))
    for row in session.execute(statement).mappings():
        found[row["email_id"]].numbers = {key: int(row[key]) for key in COUNTS}
    return found


def sent_emails(session: Session, email_ids: Iterable[int]) -> dict[int, Email]:
    """The emails of ``email_ids`` that exist, by id."""
    return {email.id: email for email in session.scalars(select(Email).where(Email.id.in_(list(email_ids))))}
