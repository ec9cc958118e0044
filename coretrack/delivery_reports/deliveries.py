"""What the receiving side said of each recipient after the hand-over: a provider's events
(sendgrid.py) and bounce messages (bounces.py) both end here.

Reports arrive out of order (a provider's retries, a bounce read an hour after the delivery
event), so a recipient's delivery state only ever moves to a stronger one: a late "delivered"
never undoes a "bounced".  Of two reports of equal strength the later one (by its own time) wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, case, or_, update
from sqlalchemy.orm import Session

from ..db import changed_rows
from ..models import Recipient

DELIVERY_PRECEDENCE = {"": 0, "processed": 1, "deferred": 2, "delivered": 3, "bounced": 4, "dropped": 4}
_DETAIL_LENGTH = 500


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
    return changed_rows(session, statement) == 1

