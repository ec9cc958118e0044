"""What a bounce or complaint does to its recipient and address: the report is kept as evidence
(``mail_reports``: the raw message until the retention period ends), the recipient shows its
delivery state and bounce class, and the address is suppressed when the class says so: a hard
bounce at once, soft bounces by the stated rule (``SoftBounceRule``), a complaint at once.
Provider events (sendgrid.py) apply the same classes and rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from ..models import MailReport, Recipient, utcnow
from ..models.emails import SOFT_BOUNCED
from ..people import suppression
from . import classes, deliveries

DSN, ARF = "dsn", "arf"  # mail_reports.kind
# A raw report larger than this is cut (a bounce returning a whole message with its attachments).
MAX_RAW_CHARS = 256 * 1024


@dataclass(frozen=True)
class SoftBounceRule:
    """Suppress an address once ``limit`` of its messages soft-bounced within ``days`` (0: never)."""

    limit: int = 3
    days: int = 7

    def __str__(self) -> str:
        return f"{self.limit} in {self.days} days" if self.limit else "never"


def recipient_named(session: Session, tokens: tuple[str, ...]) -> Recipient | None:
    """The recipient the first of ``tokens`` that names one belongs to; an erased person's names no
    one (the report's detail would bring their address back)."""
    for token in tokens:
        found = session.scalar(select(Recipient).where(Recipient.token == token, ~Recipient.erased))
        if found is not None:
            return found
    return None


def keep(session: Session, kind: str, recipient: Recipient, raw: bytes, at: datetime, status: str,
         bounce_class: str, detail: str) -> MailReport:
    """The report as evidence, in the caller's transaction (flushed: its id is the opt-out's evidence)."""
    report = MailReport(kind=kind, recipient_id=recipient.id, at=at, received_at=utcnow(), status=status[:16],
                        bounce_class=bounce_class, detail=detail[:500],
                        raw=raw.decode("utf-8", "replace")[:MAX_RAW_CHARS].replace("\x00", ""))
    session.add(report)
    session.flush()
    return report


def record_bounce(session: Session, recipient: Recipient, action: str, status: str, detail: str, at: datetime,
                  raw: bytes, rule: SoftBounceRule) -> str:
    """A bounce (failed) or delay read from the mailbox: kept, shown on the recipient, and the address
    suppressed as its class says; the class."""
    bounce_class = classes.classify(action, status)
    report = keep(session, DSN, recipient, raw, at, status, bounce_class, detail)
    deliveries.record_delivery(session, recipient.id, "bounced" if action == "failed" else "deferred", detail, at,
                               bounce_class)
    suppress_by_class(session, recipient, bounce_class, f"bounced: {detail}", at, rule, suppression.BOUNCE,
                      suppression.Evidence(report_id=report.id))
    return bounce_class


def record_complaint(session: Session, recipient: Recipient, feedback_type: str, detail: str, at: datetime,
                     raw: bytes) -> bool:
    """An ARF complaint: kept, and the address suppressed as "complaint"; whether that changed it."""
    report = keep(session, ARF, recipient, raw, at, feedback_type, "", detail)
    return suppression.opt_out_recipient(session, recipient, suppression.COMPLAINT_REPORT, f"complained: {detail}",
                                         at, evidence=suppression.Evidence(report_id=report.id))


def suppress_by_class(session: Session, recipient: Recipient, bounce_class: str, reason: str, at: datetime,
                      rule: SoftBounceRule, source: str, evidence: suppression.Evidence) -> bool:
    """Suppresses the recipient's address for a hard bounce, or for soft bounces past the rule;
    whether it changed the address (``source``: where the bounce was read; ``reason``: the bounce's)."""
    if bounce_class == classes.HARD:
        return suppression.opt_out_recipient(session, recipient, source, reason, at,
                                             category=suppression.HARD_BOUNCE, evidence=evidence)
    if bounce_class not in classes.ESCALATING or rule.limit <= 0:
        return False
    count = soft_bounces(session, recipient.address, at - timedelta(days=rule.days))
    if count < rule.limit:
        return False
    return suppression.opt_out_recipient(
        session, recipient, suppression.SOFT_BOUNCES,
        f"{count} soft bounces within {rule.days} days (rule: {rule}); the last {reason}", at,
        category=suppression.SOFT_BOUNCE, evidence=evidence)


def soft_bounces(session: Session, address: str, since: datetime) -> int:
    """How many messages to ``address`` soft-bounced (failed with a soft class) since ``since``: each
    message once, however many reports it had."""
    return session.scalar(soft_bounces_query(address, since)) or 0


def soft_bounces_query(address: str, since: datetime) -> Select[int]:
    # The partial index's own condition, as text: the planner then uses it whatever the parameters.
    return select(func.count()).select_from(Recipient).where(
        text(SOFT_BOUNCED), func.lower(Recipient.address) == suppression.key(address),
        Recipient.delivery_status == "bounced", Recipient.delivery_at >= since)
