"""The public consent and withdrawal pages' use cases: a person, known only by the signed token of a
message sent to them, accepts or refuses having their reading measured, or withdraws (and may have
what was measured about them deleted).

The token is the authority, as on the unsubscribe page: it is signed (its MAC is checked before any
database work), and whoever holds it can only decide for the address it was sent to.  A forged or
mangled token, one naming no recipient, or an erased person's old one all get the same answer
(None) and change nothing.  Each answer is recorded through consent.record with its evidence: the
version of the consent text the page showed, the IP address as the IP policy keeps it, the user
agent, and the email the link came in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..models import ConsentText, Recipient
from ..tracking.verdicts import store_ip
from . import consent
from .measurements import Deleted, delete_measurements
from .unsubscribe import recipient_of

# The token in the query is the authority; a body carries at most the answer, the text version and
# the delete box (some 40 bytes).  More is refused unread.
MAX_BODY_BYTES = 1024
# The consent page's two buttons: accept, or decline (a refusal, or a withdrawal once granted).
ACCEPT, DECLINE = "accept", "decline"


class BadAnswer(consent.ConsentError):
    """An answer the page's buttons cannot have sent: no choice, or a consent text version that does
    not exist (a mangled or hand-made form).  Nothing is recorded."""


@dataclass(frozen=True)
class Visitor:
    """Who is answering, as the request shows them (the IP address before the IP policy cuts it)."""

    ip: str
    user_agent: str


@dataclass(frozen=True)
class Visit:
    """What a consent or withdrawal page shows: the person's recipient row (the message whose link
    was opened), their address's consent now, and the consent text's current version."""

    recipient: Recipient
    consent: str
    text: ConsentText


def person_of(session: Session, secret: bytes, token: object) -> Recipient | None:
    """The recipient a signed token names, unless erased (whose address is no longer theirs)."""
    recipient = recipient_of(session, secret, token)
    return None if recipient is None or recipient.erased else recipient


def visit(session: Session, secret: bytes, token: object) -> Visit | None:
    """What the page shows for ``token``; None for an invalid one.  Changes nothing: mail scanners and
    link previews open links."""
    recipient = person_of(session, secret, token)
    if recipient is None:
        return None
    return Visit(recipient, consent.state(session, recipient.address), consent.current_text(session))


def _evidence(recipient: Recipient, visitor: Visitor, ip_policy: str, text_version: int | None) -> consent.Evidence:
    return consent.Evidence(text_version=text_version, ip=store_ip(visitor.ip, ip_policy),
                            user_agent=visitor.user_agent, email_id=recipient.email_id)


def _shown_version(session: Session, posted: object) -> int:
    """The consent text version the page showed, as posted back: it must exist."""
    consent.current_text(session)  # a database made without the migrations' first version gets it now
    text = str(posted or "").strip()
    version = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
    if version is None or session.get(ConsentText, version) is None:
        raise BadAnswer("the text you answered is not one we know: please read it again and answer")
    return version


def answer(session: Session, secret: bytes, token: object, choice: object, text_version: object,
           visitor: Visitor, ip_policy: str) -> str | None:
    """Records the person's answer on the consent page (``choice``: ACCEPT or DECLINE) and commits;
    the state recorded (None for an invalid token: nothing changed).  Accepting grants consent;
    declining refuses it, or withdraws it when it was granted.  BadAnswer (nothing changed) for
    another choice, or a ``text_version`` that names no consent text."""
    recipient = person_of(session, secret, token)
    if recipient is None:
        return None
    if choice not in (ACCEPT, DECLINE):
        raise BadAnswer("choose Accept or Refuse")
    version = _shown_version(session, text_version)
    if choice == ACCEPT:
        new_state = consent.GRANTED
    else:
        granted = consent.state(session, recipient.address) == consent.GRANTED
        new_state = consent.WITHDRAWN if granted else consent.REFUSED
    consent.record(session, recipient.address, new_state, consent.PAGE,
                   evidence=_evidence(recipient, visitor, ip_policy, version))
    session.commit()
    return new_state


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal recorded: what was deleted with it (None when deleting was not asked)."""

    deleted: Deleted | None


def withdraw(session: Session, secret: bytes, token: object, delete: bool, visitor: Visitor,
             ip_policy: str) -> Withdrawal | None:
    """Withdraws the consent of the address ``token`` names, at once, and commits; with ``delete``,
    also deletes what was measured about it (measurements.delete_measurements), in the same
    transaction.  None for an invalid token (nothing changed).  Asking again records another
    withdrawal: each is proof of what the person asked, and a later one may ask for the deletion.

    Under the "everyone" policy this is the person's own opt-out of measuring: count_hits, clicks
    and providers' reports stop on a withdrawal whatever the policy."""
    recipient = person_of(session, secret, token)
    if recipient is None:
        return None
    # The withdrawal page shows no consent text, so the withdrawal names none.  It is recorded first:
    # from its time on hits record nothing, and the deletion then moves what was counted up to it.
    consent.record(session, recipient.address, consent.WITHDRAWN, consent.PAGE,
                   evidence=_evidence(recipient, visitor, ip_policy, None), measurements_deleted=delete)
    deleted = delete_measurements(session, recipient.address) if delete else None
    session.commit()
    return Withdrawal(deleted)
