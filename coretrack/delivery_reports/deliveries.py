"""What the receiving side said of each recipient after the hand-over: a provider's events
(sendgrid.py) and bounce messages (bounces.py) both end here.

Reports arrive out of order (a provider's retries, a bounce read an hour after the delivery
event), so a recipient's delivery state only ever moves to a stronger one: a late "delivered"
never undoes a "bounced".  Of two reports of equal strength the later one (by its own time) wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session

from ..db import changed_rows
from ..models import Recipient
from ..webhooks import events

DELIVERY_PRECEDENCE = {"": 0, "processed": 1, "deferred": 2, "delivered": 3, "bounced": 4, "dropped": 4}
_DETAIL_LENGTH = 500
# The delivery states a webhook reports, when a recipient first reaches them.
_REPORTED = {"delivered": events.DELIVERED, "bounced": events.BOUNCED}


def record_delivery(session: Session, recipient_id: int, status: str, detail: str, at: datetime,
                    bounce_class: str = "") -> bool:
    """Sets the recipient's delivery state (and a failure's class: classes.py) unless it already
    holds a stronger (or an equal, later) one; True when it changed.  One conditional UPDATE, so
    concurrent reports agree."""
    rank = DELIVERY_PRECEDENCE[status]
    current = case(DELIVERY_PRECEDENCE, value=Recipient.delivery_status, else_=0)
    statement = (
        update(Recipient)
        # Not an erased person's (checked on the locked row: an erasure committed meanwhile is seen).
        .where(Recipient.id == recipient_id, ~Recipient.erased,
               or_(current < rank,
                   and_(current == rank, or_(Recipient.delivery_at.is_(None), Recipient.delivery_at <= at))))
        .values(delivery_status=status, delivery_detail=detail[:_DETAIL_LENGTH], delivery_at=at,
                bounce_class=bounce_class)
    )
    before = session.scalar(select(Recipient.delivery_status).where(Recipient.id == recipient_id))
    changed = changed_rows(session, statement) == 1
    if changed and before != status and status in _REPORTED:
        events.emit(session, [events.recipient_event(_REPORTED[status], at, session.get(Recipient, recipient_id),
                                                     detail=detail[:_DETAIL_LENGTH])])
    return changed

