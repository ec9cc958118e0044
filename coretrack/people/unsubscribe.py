"""Unsubscribing: the signed link and the one-click List-Unsubscribe POST (RFC 8058) opt the
recipient's address out of email.

The recipient's own tracking token (tokens.py) identifies them: it is signed, so its MAC is
checked before any database work, and nothing in it says who it belongs to.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Recipient
from ..tracking import tokens
from . import suppression

UNSUBSCRIBE_PATH = "/email/unsubscribe"
# The token in the query is the authority; the POST's body only tells the page's button ("from=page"
# beside RFC 8058's "List-Unsubscribe=One-Click": 36 bytes) from a mail provider's one-click POST,
# kept as the opt-out's source.  More is refused unread.
MAX_BODY_BYTES = 1024
DEFAULT_FOOTER = "You are receiving this email because you are in our contacts. To receive no more email from us:"


def reason(recipient: Recipient) -> str:
    return f"unsubscribed with the link in email {recipient.email_id}"


def recipient_of(session: Session, secret: bytes, token: object) -> Recipient | None:
    """The recipient a signed token names, or None (forged, mangled, or its email deleted)."""
    if not tokens.verify(secret, token):
        return None
    return session.scalar(select(Recipient).where(Recipient.token == token))


def unsubscribe(session: Session, secret: bytes, token: object, source: str = suppression.LINK) -> bool:
    """Opt out the address of the recipient ``token`` names (``source``: the page's button or a
    one-click POST), and commit; False when the token names no recipient (nothing changed).  Asking
    again changes nothing more."""
    recipient = recipient_of(session, secret, token)
    if recipient is None:
        return False
    suppression.opt_out_recipient(session, recipient, source, reason(recipient))
    session.commit()
    return True
