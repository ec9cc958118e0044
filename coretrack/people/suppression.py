"""What a person decided binds to their address, not to the records that held it that day.

An opt-out, from whichever source (the unsubscribe link or its one-click POST, a provider's
unsubscribe, spam report, hard bounce or drop, the bounce mailbox, staff, an import), goes through
``opt_out``: it lands on the address (``addresses``, one row per lower-case address) with when, from
where and why, and is kept in address_history, which is only ever added to.  Only ``lift_opt_out``,
a staff user's explicit action, takes it back.  Every send asks ``suppressed`` for its addresses:
records of any kind made later with the address are skipped as well as typed addresses.

The contacts, accounts and leads that hold an address show its opt-out in their own flag (their
pages and lists read it), kept in step here: set and cleared with the address, and taken over by
a record given the address later (``follow_addresses``).  Sending never reads the flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ..db import insert_or_meet
from ..models import Account, Address, AddressEvent, Contact, Lead, Recipient, Record, utcnow
from ..webhooks import events

# Where an opt-out came from (address_history.source, addresses.opt_out_source).
LINK = "link"  # the unsubscribe page's button
ONE_CLICK = "one-click"  # RFC 8058's List-Unsubscribe POST, sent by the recipient's mail provider
SENDGRID = "sendgrid"  # its unsubscribe, spam report, hard bounce or drop of the address
BOUNCE = "bounce"  # a hard bounce read from the bounce mailbox
STAFF = "staff"
IMPORT = "import"  # a CSV or coreBOS record imported as opted out
CARRIED_OVER = "records"  # a record's opt-out from before addresses kept them (migration 0021)

COMPLAINT_REPORT = "complaint"  # an ARF complaint (RFC 5965) read from the bounce mailbox
SOFT_BOUNCES = "soft-bounces"  # the soft-bounce rule: too many soft bounces in its days

# Why an address is suppressed, as the suppression list groups it (addresses.opt_out_category);
# "erasure" is the list's own: an erased person's address is not kept (people/erasure.py).
UNSUBSCRIBED, HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, PROVIDER_DROP, BY_STAFF, BY_IMPORT, ERASURE = (
    "unsubscribed", "hard_bounce", "soft_bounces", "complaint", "provider_drop", "staff", "import", "erasure")
CATEGORIES = {UNSUBSCRIBED: "Unsubscribed", HARD_BOUNCE: "Hard bounce", SOFT_BOUNCE: "Repeated soft bounces",
              COMPLAINT: "Complaint", PROVIDER_DROP: "Provider drop", BY_STAFF: "Staff", BY_IMPORT: "Import",
              ERASURE: "Erasure"}
# What a recipient did about the email they got, by the opt-out's category (recipients.opted_out_as:
# the email's unsubscribe and complaint rates); a complaint stays one whatever comes after it.
UNSUBSCRIBE = "unsubscribe"
_REACTION_OF = {UNSUBSCRIBED: UNSUBSCRIBE, COMPLAINT: COMPLAINT}
# A source's category when the caller names none (a provider's events name theirs).
_CATEGORY_OF = {LINK: UNSUBSCRIBED, ONE_CLICK: UNSUBSCRIBED, BOUNCE: HARD_BOUNCE, STAFF: BY_STAFF,
                IMPORT: BY_IMPORT, CARRIED_OVER: BY_IMPORT, COMPLAINT_REPORT: COMPLAINT, SOFT_BOUNCES: SOFT_BOUNCE}

OPTED_OUT, LIFTED = "opted_out", "opt_out_lifted"  # address_history.event
# How a provider's reports read in an opt-out's reason (sendgrid.py): which a webhook reports as what.
COMPLAINT_REASON = "reported the email as spam"
UNSUBSCRIBED_REASON = "unsubscribed through"
STAFF_REASON = "set by staff on the record"
_REASON_LENGTH = 200  # the columns'
# Addresses asked about in one statement: PostgreSQL takes at most 65,535 parameters a statement,
# SQLite (as built by default) 32,766.
_CHUNK = 10_000


def key(address: str) -> str:
    """The form an address is kept and compared in: letter case aside, as the records' lookups."""
    return address.strip().lower()


_ADDRESSES = cast(Table, Address.__table__)
_HISTORY = cast(Table, AddressEvent.__table__)
_FLAG_ATTRIBUTES = ("email_opt_out", "email_opt_out_at", "email_opt_out_reason")


@dataclass(frozen=True)
class Evidence:
    """What an opt-out rests on: the DSN or ARF report kept (mail_reports), or the provider's event."""

    report_id: int | None = None
    event_id: int | None = None


def opt_out(session: Session, address: str, source: str, reason: str, at: datetime | None = None,
            user_name: str = "", *, category: str = "", evidence: Evidence | None = None) -> bool:
    """Opts ``address`` out of email: every later send to it, whoever holds it, is skipped.  The
    one way an opt-out is recorded, from every source (``opt_out_many`` for many at once).  In the
    caller's transaction (it commits nothing); whether it changed anything.  An address already
    opted out keeps its first when and why: they say why sending stopped.  ``category``: the
    suppression list's (by default the source's)."""
    return bool(opt_out_many(session, [(address, reason, at)], source, user_name, category=category,
                             evidence=evidence))


def opt_out_many(session: Session, opt_outs: Iterable[tuple[str, str, datetime | None]], source: str,
                 user_name: str = "", *, category: str = "", evidence: Evidence | None = None) -> int:
    """Opts out each (address, reason, when) from one source, a few statements per chunk of
    addresses (an import's batch); how many addresses were not opted out before.  The records that
    hold them show it (the session's copies are refreshed)."""
    now = utcnow()
    category = category or _CATEGORY_OF.get(source, "")
    evidence = evidence or Evidence()
    wanted: dict[str, tuple[str, datetime]] = {}
    for address, reason, at in opt_outs:
        if key(address):
            wanted.setdefault(key(address), (reason[:_REASON_LENGTH], at or now))
    set_opt_out = (update(_ADDRESSES).where(_ADDRESSES.c.id == bindparam("aid"), _ADDRESSES.c.opted_out_at.is_(None))
                   .values(opted_out_at=bindparam("at"), opt_out_source=source, opt_out_reason=bindparam("why"),
                           opt_out_category=category, evidence_report_id=evidence.report_id,
                           evidence_event_id=evidence.event_id))
    changed = 0
    reported: list[events.Event] = []
    for chunk in _chunks(wanted):
        add_addresses(session, chunk)
        fresh = dict(session.execute(select(_ADDRESSES.c.address, _ADDRESSES.c.id).where(
            _ADDRESSES.c.address.in_(chunk), _ADDRESSES.c.opted_out_at.is_(None))).all())
        if not fresh:
            continue
        changes = [{"aid": address_id, "at": wanted[address][1], "why": wanted[address][0]}
                   for address, address_id in fresh.items()]
        session.execute(set_opt_out, changes)
        session.execute(insert(_HISTORY), [
            {"address_id": change["aid"], "at": change["at"], "event": OPTED_OUT, "source": source,
             "reason": change["why"], "user_name": user_name, "category": category} for change in changes])
        for model in (Contact, Lead, Account):
            table = cast(Table, model.__table__)
            session.execute(update(table).where(func.lower(table.c.email) == bindparam("address"),
                                                table.c.email_opt_out.is_(False))
                            .values(email_opt_out=True, email_opt_out_at=bindparam("at"),
                                    email_opt_out_reason=bindparam("why")),
                            [{"address": address, "at": wanted[address][1], "why": wanted[address][0]}
                             for address in fresh])
        changed += len(fresh)
        reported += [events.Event(kind, wanted[address][1], {"address": address, "source": source,
                                                             "reason": wanted[address][0]})
                     for address in fresh if (kind := _webhook_type(category))]
    if changed:
        events.emit(session, reported)
        _refresh_holders(session)
    return changed


def _webhook_type(category: str) -> str | None:
    """The webhook event an opt-out is: the person's own unsubscribe or complaint (an ARF report or a
    provider's spam report); a bounce is reported by its delivery state, staff and imports by nothing."""
    return {UNSUBSCRIBED: events.UNSUBSCRIBED, COMPLAINT: events.COMPLAINED}.get(category)


def add_addresses(session: Session, addresses: Sequence[str]) -> None:
    """Rows for those of ``addresses`` (lower-case, at most a chunk) that have none, in one statement.
    Concurrent makers of one row (two webhook deliveries at once, an opt-out and a consent) find
    the one row instead of one failing on the unique key."""
    if addresses:
        session.execute(insert_or_meet(session, _ADDRESSES).on_conflict_do_nothing(
            index_elements=[_ADDRESSES.c.address]), [{"address": address} for address in addresses])


def _refresh_holders(session: Session) -> None:
    """The session's contacts, accounts and leads read their opt-out again (changed in the database)."""
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Contact | Lead | Account) and loaded not in session.dirty:
            session.expire(loaded, list(_FLAG_ATTRIBUTES))


def opt_out_recipient(session: Session, recipient: Recipient, source: str, reason: str,
                      at: datetime | None = None, *, category: str = "", evidence: Evidence | None = None) -> bool:
    """Opts out the address a recipient was sent to (its person asked, or their mailbox refuses
    mail); in the caller's transaction.  An unsubscribe or a complaint is kept on the recipient too:
    what this email made its person do."""
    reaction = _REACTION_OF.get(category or _CATEGORY_OF.get(source, ""), "")
    if reaction and recipient.opted_out_as != COMPLAINT:
        recipient.opted_out_as = reaction
    return opt_out(session, recipient.address, source, reason, at, category=category, evidence=evidence)


def opt_out_record(session: Session, record: Record, source: str, reason: str, at: datetime | None = None,
                   user_name: str = "") -> bool:
    """Opts a record out, and with it its address (an import's or the new-record form's opted-out
    record; one without an address keeps the flag alone).  The record may be new, not yet added:
    nothing is flushed meanwhile, so one still being built (linked to an account) is not written half-made."""
    changed = mark_opted_out(record, reason, at)
    if record.email.strip():
        with session.no_autoflush:
            changed = opt_out(session, record.email, source, reason, at, user_name) or changed
    return changed


def lift_opt_out(session: Session, address: str, user_name: str, reason: str) -> bool:
    """Takes back the address's opt-out: a staff user's explicit action, kept in the history with
    who and why.  The records that hold it no longer show it.  Commits; whether it changed."""
    wanted = key(address)
    # As the database has it now: opt_out changes the row without the session's copy.
    found = session.scalar(select(Address).where(Address.address == wanted).execution_options(populate_existing=True))
    if found is None or found.opted_out_at is None:
        return False
    category = found.opt_out_category
    found.opted_out_at, found.opt_out_source, found.opt_out_reason, found.opt_out_category = None, "", "", ""
    found.evidence_report_id = found.evidence_event_id = None
    session.add(AddressEvent(address_id=found.id, at=utcnow(), event=LIFTED, source=STAFF,
                             reason=reason[:_REASON_LENGTH], user_name=user_name, category=category))
    for record in holders(session, [wanted]):
        record.email_opt_out, record.email_opt_out_at, record.email_opt_out_reason = False, None, ""
    session.commit()
    return True


def mark_opted_out(record: Record, reason: str, at: datetime | None = None) -> bool:
    """The record's own flag, with when and why, for a record not yet added (an import's): its
    address follows with ``follow_addresses``.  Whether it changed."""
    if record.email_opt_out:
        return False
    _flag(record, at or utcnow(), reason[:_REASON_LENGTH])
    return True


def _flag(record: Record, at: datetime, reason: str) -> None:
    record.email_opt_out, record.email_opt_out_at, record.email_opt_out_reason = True, at, reason


def _chunks(addresses: Iterable[str]) -> Iterable[list[str]]:
    wanted = sorted({key(address) for address in addresses} - {""})
    for start in range(0, len(wanted), _CHUNK):
        yield wanted[start:start + _CHUNK]


def opted_out(session: Session, addresses: Iterable[str]) -> dict[str, Address]:
    """lower-case address -> its row, for those of ``addresses`` opted out (one query a chunk)."""
    found: dict[str, Address] = {}
    for chunk in _chunks(addresses):
        found.update((row.address, row) for row in session.scalars(
            select(Address).where(Address.address.in_(chunk), Address.opted_out_at.is_not(None))))
    return found


def suppressed(session: Session, addresses: Iterable[str]) -> set[str]:
    """The lower-case forms of those of ``addresses`` that must get no email: what every send asks."""
    found: set[str] = set()
    for chunk in _chunks(addresses):
        found.update(session.scalars(
            select(Address.address).where(Address.address.in_(chunk), Address.opted_out_at.is_not(None))))
    return found


def state(session: Session, address: str) -> Address | None:
    """The address's row (opted out or not, with its when and why); None for one never opted out."""
    return session.scalar(select(Address).where(Address.address == key(address))) if key(address) else None


def history(session: Session, address: str) -> list[AddressEvent]:
    """What happened to the address, newest first."""
    return list(session.scalars(select(AddressEvent).join(Address).where(Address.address == key(address))
                                .order_by(AddressEvent.at.desc(), AddressEvent.id.desc())))


def follow_addresses(session: Session, records: Sequence[Record], source: str, user_name: str = "") -> None:
    """Records just made or given an address, in step with it: one whose address is opted out shows
    it; one opted out itself opts its address out (``source``: how it came to be).  A few statements
    per chunk of addresses, whatever the number of records."""
    found = opted_out(session, [record.email for record in records])
    opting_out = []
    for record in records:
        address = found.get(key(record.email))
        if address is not None and not record.email_opt_out:
            assert address.opted_out_at is not None
            _flag(record, address.opted_out_at, address.opt_out_reason)
        elif address is None and record.email_opt_out and record.email.strip():
            opting_out.append((record.email, record.email_opt_out_reason or STAFF_REASON, record.email_opt_out_at))
    if opting_out:
        opt_out_many(session, opting_out, source, user_name)


def holders(session: Session, addresses: Iterable[str]) -> list[Record]:
    """Contacts, then leads, then accounts whose email is one of ``addresses`` (letter case aside)."""
    found: list[Record] = []
    for chunk in _chunks(addresses):
        for model in (Contact, Lead, Account):
            found.extend(session.scalars(select(model).where(func.lower(model.email).in_(chunk)).order_by(model.id)))
    return found


def forget(session: Session, address: str) -> None:
    """Erasure: the address's row and history go, its consent history with them (the database
    cascades; sending skips an erased address by its digest)."""
    found = state(session, address)
    if found is not None:
        session.delete(found)
