"""Clicks per link of one email: all clicks and the likely-human ones (the links' own counters), and the
people who clicked it (distinct recipients, from click events by ix_click_events_link_recipient, which
covers them: only this email's links' entries are read); each link's share of the email's clicks."""

from __future__ import annotations

from sqlalchemy import ScalarSelect, distinct, func, select
from sqlalchemy.orm import Session

from ..models import ClickEvent, EmailLink
from .rates import percent
from .report import Column, Row, number_column, rate_column

COLUMNS = (
    number_column("link", "#"),
    Column("url", "URL"),
    number_column("clicks", "Clicks"),
    number_column("human_clicks", "Likely-human clicks"),
    rate_column("human_share", "Likely-human share", base="total_human_clicks"),
    rate_column("share", "Share", base="total_clicks"),
    number_column("human_people", "People (likely-human)"),
    number_column("people", "People (any click)"),
)


def _people(human: bool) -> ScalarSelect[int]:
    events = select(func.count(distinct(ClickEvent.recipient_id))).where(ClickEvent.link_id == EmailLink.id)
    if human:
        events = events.where(ClickEvent.verdict == "human")
    return events.scalar_subquery()


def link_rows(session: Session, email_id: int) -> list[Row]:
    """One row per stored link of the email, in document order (``link`` counts from 1)."""
    rows = [dict(row) for row in session.execute(
        select(EmailLink.position, EmailLink.url, EmailLink.click_count.label("clicks"),
               EmailLink.human_clicks.label("human_clicks"), _people(True).label("human_people"),
               _people(False).label("people"))
        .where(EmailLink.email_id == email_id).order_by(EmailLink.position)
    ).mappings()]
    total_clicks = sum(row["clicks"] for row in rows)
    total_human = sum(row["human_clicks"] for row in rows)
    for row in rows:
        row.update(link=row.pop("position") + 1, total_clicks=total_clicks, total_human_clicks=total_human,
                   share=percent(row["clicks"], total_clicks), human_share=percent(row["human_clicks"], total_human))
    return rows
