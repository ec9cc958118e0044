"""The reports by name (the name in their URL), and the senders their filter offers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Email, User
from .activity import ActivityReport
from .domains import DomainsReport
from .report import Report
from .tables import EmailsReport, RecipientsReport, RecordsReport

REPORTS: dict[str, Report] = {report.name: report for report in
                              (EmailsReport(), RecipientsReport(), RecordsReport(), DomainsReport(), ActivityReport())}


def senders(session: Session) -> list[str]:
    """Users who sent email, for the sender filter."""
    return list(session.scalars(
        select(User.name).where(User.id.in_(select(Email.sender_id).where(Email.sent_at.is_not(None))))
        .order_by(User.name)
    ))
