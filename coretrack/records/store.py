"""CRM records: contacts, accounts and leads.

Lists with search and pagination, validated create and update (one error per
field, nothing written on error; record_import.py imports with the same checks), the emails sent to a record,
and what the compose page needs to address a record.  ``record_type`` is one
of ``models.RECORD_TYPES``: "contact", "account", "lead".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, delete, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, contains_eager

from ..db import MAX_ID
from ..inputs import whole_number
from ..models import RECORD_MODELS, Account, Contact, Email, Lead, Recipient, Record, User
from ..paging import Page, paginate
from ..people import suppression
from ..validation import ValidationError, clean_address, clean_header_text, web_address


@dataclass(frozen=True)
class FieldDef:
    name: str  # the form field and the CSV column
    label: str
    kind: str = "text"  # text | email | url | checkbox | account
    required: bool = False
    max_length: int = 200


_EMAIL = FieldDef("email", "Email", "email", max_length=254)
_PHONE = FieldDef("phone", "Phone", max_length=64)
_OPT_OUT = FieldDef("email_opt_out", "Email opt-out", "checkbox")
# No tracking image (nor rewritten links) in email to this person: sent and counted as sent all the same.
_DO_NOT_TRACK = FieldDef("do_not_track", "Do not track", "checkbox")
_FIRST_NAME = FieldDef("first_name", "First name", required=True, max_length=100)
_LAST_NAME = FieldDef("last_name", "Last name", required=True, max_length=100)

FIELDS: dict[str, tuple[FieldDef, ...]] = {
    "contact": (_FIRST_NAME, _LAST_NAME, _EMAIL, _PHONE, FieldDef("account", "Account", "account"), _OPT_OUT,
                _DO_NOT_TRACK),
    "account": (FieldDef("name", "Name", required=True), _EMAIL, _PHONE, FieldDef("website", "Website", "url"),
                _OPT_OUT),
    "lead": (_FIRST_NAME, _LAST_NAME, FieldDef("company", "Company"), _EMAIL, _PHONE, _OPT_OUT, _DO_NOT_TRACK),
}
NOUNS = {"contact": ("contact", "contacts"), "account": ("account", "accounts"), "lead": ("lead", "leads")}

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# Each word is a condition on every searched column: SQLite refuses an expression 1,000 deep, PostgreSQL
# runs out of stack, and SQLite refuses a LIKE pattern of 50,000 bytes.
MAX_SEARCH_WORDS, MAX_SEARCH_CHARACTERS = 10, 200
_TRUE = frozenset({"on", "true", "yes", "y", "1"})
_FALSE = frozenset({"", "off", "false", "no", "n", "0"})


def _model(record_type: str) -> type[Account] | type[Contact] | type[Lead]:
    try:
        return RECORD_MODELS[record_type]
    except KeyError:
        raise ValueError(f"unknown record type {record_type!r}") from None


# -- lists ---------------------------------------------------------------------------


def _search(record_type: str, query: str) -> Select[Record]:
    """Records matching every word of ``query`` in a name, the email or the account/company, in name order.

    ValueError with a message for the user when the search is too long."""
    words = query.split()
    if len(words) > MAX_SEARCH_WORDS or len(query) > MAX_SEARCH_CHARACTERS:
        raise ValueError(f"a search takes at most {MAX_SEARCH_WORDS} words and {MAX_SEARCH_CHARACTERS} characters")
    model = _model(record_type)
    statement: Select[Record] = select(model)
    columns: tuple[InstrumentedAttribute[str], ...]
    order: tuple[InstrumentedAttribute[str] | InstrumentedAttribute[int], ...]
    if record_type == "contact":
        statement = statement.outerjoin(Contact.account).options(contains_eager(Contact.account))
        columns = (Contact.first_name, Contact.last_name, Contact.email, Account.name)
        order = (Contact.last_name, Contact.first_name, Contact.id)
    elif record_type == "account":
        columns = (Account.name, Account.email)
        order = (Account.name, Account.id)
    else:
        columns = (Lead.first_name, Lead.last_name, Lead.email, Lead.company)
        order = (Lead.last_name, Lead.first_name, Lead.id)
    # autoescape: a % or _ typed by the user matches itself, not any text.
    for word in words:
        statement = statement.where(or_(*(column.icontains(word, autoescape=True) for column in columns)))
    return statement.order_by(*order)


def search_records(session: Session, record_type: str, query: str, page: int, per_page: int) -> Page[Record]:
    return paginate(session, _search(record_type, query or ""), page, per_page)


# -- audiences (mass sends) -------------------------------------------------------------


# Rows one may tick on a list page and send to: more than any page shows.
MAX_SELECTED = 1000


@dataclass(frozen=True)
class Audience:
    """Records to email at once, from a list page: the rows ticked (``ids``) or every record that
    matches the list's search (``ids`` None); for accounts, with their contacts if chosen.  Kept on
    the compose form as these few values and resolved again on the server at preview and at send."""

    record_type: str
    query: str = ""
    ids: tuple[int, ...] | None = None
    with_contacts: bool = False

    @classmethod
    def from_form(cls, section: str, scope: str, query: str, ids: list[str], with_contacts: bool) -> Audience:
        """ValueError with a message for the user."""
        record_type = {"contacts": "contact", "accounts": "account", "leads": "lead"}.get(section)
        if record_type is None:
            raise ValueError("send to contacts, accounts or leads")
        if scope == "all":
            _search(record_type, query)  # a search the list refuses is refused here too
            return cls(record_type, query.strip(), None, with_contacts and record_type == "account")
        chosen = sorted({whole_number(value, 1, MAX_ID) for value in ids})
        if not chosen:
            raise ValueError(f"tick at least one of the {NOUNS[record_type][1]} to email, or email all that match")
        if len(chosen) > MAX_SELECTED:
            raise ValueError(f"at most {MAX_SELECTED:,} ticked rows: email all that match a search instead")
        return cls(record_type, "", tuple(chosen), with_contacts and record_type == "account")

    def describe(self, count: int) -> str:
        nouns = NOUNS[self.record_type][1] if count != 1 else NOUNS[self.record_type][0]
        if self.ids is not None:
            what = f"the {count:,} {nouns} ticked"
        elif self.query:
            what = f"all {count:,} {nouns} matching “{self.query}”"
        else:
            what = f"all {count:,} {nouns}"
        return what + (" and their contacts" if self.with_contacts else "")

    def statement(self) -> Select[Record]:
        statement = _search(self.record_type, self.query)
        if self.ids is not None:
            model = _model(self.record_type)
            statement = statement.where(model.id.in_(self.ids))
        return statement

    def count(self, session: Session) -> int:
        return session.scalar(select(func.count()).select_from(self.statement().order_by(None).subquery())) or 0

    def records(self, session: Session) -> list[Record]:
        """The records, in the list's order; an account's contacts after the accounts, in name order.
        One query (two with contacts), however many records."""
        found = list(session.scalars(self.statement()).unique())
        if self.with_contacts:
            account_ids = self.statement().with_only_columns(Account.id).order_by(None)
            found.extend(session.scalars(select(Contact).where(Contact.account_id.in_(account_ids))
                                         .options(contains_eager(Contact.account))
                                         .join(Contact.account)
                                         .order_by(Contact.last_name, Contact.first_name, Contact.id)))
        return found


def get_record(session: Session, record_type: str, record_id: int) -> Record | None:
    if not 0 < record_id <= MAX_ID:
        return None  # a typed reference like contact:99999999999 names no record (and overflows the column)
    record = session.get(_model(record_type), record_id)
    return record if isinstance(record, Contact | Account | Lead) else None  # (typed: get() of a union is Base)


def account_choices(session: Session, query: str, limit: int = 20) -> list[str]:
    """The picker's suggestions: labels of the accounts matching ``query`` (as the list's search does)."""
    try:
        found = session.scalars(_search("account", query).limit(limit))
    except ValueError:
        return []  # a search too long for the list is too long for suggestions
    return [account_label(account) for account in found if isinstance(account, Account)]


def contacts_of(session: Session, account_id: int) -> list[Contact]:
    return list(
        session.scalars(
            select(Contact).where(Contact.account_id == account_id).order_by(Contact.last_name, Contact.first_name)
        )
    )


# -- create and update ------------------------------------------------------------------


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("enter yes or no")


def _website(value: str) -> str:
    if "://" not in value:
        value = "https://" + value
    parts = web_address(value)
    # Only http(s) to a plain host name: the detail page links to it.
    if parts is None or not _HOST.match(parts.hostname or "") or " " in value:
        raise ValueError("enter a web address such as https://example.com")
    return value


# How the contact form's account picker names an account: "Acme Ltd #12" (the id tells apart
# accounts of the same name).  A bare id or an account's exact name are taken too.
_ACCOUNT_LABEL = re.compile(r"(?:.*\s)?#([0-9]{1,10})\s*")


def account_label(account: Account) -> str:
    return f"{account.name} #{account.id}"


def _account_id(session: Session, raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    labelled = _ACCOUNT_LABEL.fullmatch(raw)
    if labelled or raw.isascii() and raw.isdigit():
        try:
            account = get_record(session, "account", whole_number(labelled[1] if labelled else raw, 1, MAX_ID))
        except ValueError:
            account = None
        if account is None:
            raise ValueError("choose an account from the list")
        return account.id
    named = list(session.scalars(select(Account.id).where(func.lower(Account.name) == raw.lower()).limit(5)))
    if len(named) == 1:
        return named[0]
    if not named:
        raise ValueError(f"there is no account named {raw!r}: choose one from the list")
    raise ValueError(f"several accounts are named {raw!r}: choose one from the list (they differ by their #number)")


def clean_value(session: Session, definition: FieldDef, raw: str) -> object:
    """One field's value as the form saves it, or ValueError with a message for the user.  Every way
    a record is made (the form, the CSV and coreBOS imports) checks its values here."""
    if definition.kind == "checkbox":
        return _flag(raw)
    if definition.kind == "account":
        return _account_id(session, raw)
    # Names end up in mail headers: no CR/LF anywhere.
    text = clean_header_text(raw, field=definition.label.lower(), max_length=definition.max_length,
                             required=definition.required)
    if text and definition.kind == "email":
        text = clean_address(text)
    elif text and definition.kind == "url":
        text = _website(text)
    return text


def attribute(definition: FieldDef) -> str:
    """The model attribute a form field sets."""
    return "account_id" if definition.kind == "account" else definition.name


def clean_record(session: Session, record_type: str, submitted: Mapping[str, str]) -> dict[str, object]:
    """Model attribute -> value for submitted form values, or ValidationError with one message per field."""
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    for definition in FIELDS[record_type]:
        try:
            values[attribute(definition)] = clean_value(session, definition, submitted.get(definition.name) or "")
        except ValueError as exc:
            errors[definition.name] = str(exc)
    if errors:
        raise ValidationError(errors)
    return values


def form_values(record: Record) -> dict[str, str]:
    """The record as the strings its form shows (and ``update_record`` accepts)."""
    values = {}
    for definition in FIELDS[record.record_type]:
        if definition.kind == "checkbox":
            values[definition.name] = "on" if getattr(record, definition.name) else ""
        elif definition.kind == "account":
            account = getattr(record, "account", None)
            values[definition.name] = account_label(account) if account is not None else ""
        else:
            values[definition.name] = getattr(record, definition.name)
    return values


def create_record(session: Session, record_type: str, submitted: Mapping[str, str], user_name: str = "") -> Record:
    """A new record; ticked as opted out, its address is opted out by staff.  A record given an
    address already opted out shows it."""
    record = _new_record(session, record_type, submitted, suppression.STAFF, STAFF_OPT_OUT, user_name)
    suppression.follow_addresses(session, [record], suppression.STAFF, user_name)
    session.add(record)
    session.commit()
    return record


def _new_record(session: Session, record_type: str, submitted: Mapping[str, str], source: str, opt_out_reason: str,
                user_name: str = "") -> Record:
    values = clean_record(session, record_type, submitted)
    opt_out = values.pop("email_opt_out")
    record: Record = _model(record_type)(**values)
    if opt_out:
        suppression.opt_out_record(session, record, source, opt_out_reason, user_name=user_name)
    return record


def changed_fields(submitted: Mapping[str, str], loaded: Mapping[str, str] | None) -> dict[str, str]:
    """The fields a form changed from the values it was opened with (all, when it does not say)."""
    if loaded is None:
        return dict(submitted)
    return {name: value for name, value in submitted.items() if name not in loaded or value != loaded[name]}


def _shown(definition: FieldDef, value: str) -> str:
    if definition.kind == "checkbox":
        return "ticked" if value else "not ticked"
    return f"“{value}”" if value else "empty"


def update_record(session: Session, record: Record, submitted: Mapping[str, str],
                  loaded: Mapping[str, str] | None = None, user_name: str = "") -> Record:
    """Saves the fields the form changed; the others keep their value now.

    ``loaded``: the values the form was opened with.  A field changed there and also here since
    (another user, an unsubscribe) is refused with ValidationError saying its value now, nothing
    saved; a field left as it was never undoes a change made meanwhile.  The opt-out box only opts
    out: an opt-out is lifted by its own action (suppression.lift_opt_out), never by saving a form.
    """
    now = form_values(record)
    changes = changed_fields(submitted, loaded)
    definitions = {definition.name: definition for definition in FIELDS[record.record_type]}
    stale = {name: f"changed since you opened this form: it is now {_shown(definitions[name], now[name])}; "
                   "save again to replace it with yours"
             for name, value in changes.items()
             if loaded is not None and name in loaded and name in now and now[name] != loaded[name] != value
             and value != now[name]}
    if stale:
        raise ValidationError(stale)
    address_before = suppression.key(record.email)
    values = clean_record(session, record.record_type, {**now, **changes})
    opt_out = values.pop("email_opt_out") and changes.get("email_opt_out") is not None
    for name, value in values.items():
        setattr(record, name, value)
    if opt_out and not record.email_opt_out:
        suppression.opt_out_record(session, record, suppression.STAFF, STAFF_OPT_OUT, user_name=user_name)
    elif suppression.key(record.email) != address_before:
        suppression.follow_addresses(session, [record], suppression.STAFF, user_name)
    session.commit()
    return record


STAFF_OPT_OUT = suppression.STAFF_REASON
IMPORT_OPT_OUT = "imported as opted out"


# The records that stand for one person (an account's address is usually the company's).
PERSON_TYPES = ("contact", "lead")


def people_with_address(session: Session, address: str, exclude: Record | None = None) -> list[Contact | Lead]:
    """Contacts and leads with this address (letter case aside), but ``exclude``: a person already
    in the CRM, to warn about before another record of them is made."""
    if not address.strip():
        return []
    return [record for record in records_with_address(session, address.strip())
            if isinstance(record, Contact | Lead) and record is not exclude]


def records_with_address(session: Session, address: str) -> list[Record]:
    """Contacts, then leads, then accounts whose email is ``address`` (letter case aside)."""
    return suppression.holders(session, [address])


# -- related emails ---------------------------------------------------------------------


@dataclass(frozen=True)
class RelatedEmail:
    email_id: int
    subject: str
    sent_at: datetime | None
    sender: str
    status: str
    access_count: int  # summed over this record's recipients of the email
    last_access: datetime | None
    human_opens: int  # the likely-human loads among them
    click_count: int  # summed likewise


def recipient_condition(record_type: str, record_id: int) -> ColumnElement[bool]:
    """The recipients that stand for this record (an account: also those sent to its contacts)."""
    if record_type == "contact":
        return Recipient.contact_id == record_id
    if record_type == "lead":
        return Recipient.lead_id == record_id
    if record_type == "account":
        # An account's list rolls up email sent to any of its contacts.
        contact_ids = select(Contact.id).where(Contact.account_id == record_id).scalar_subquery()
        return or_(Recipient.account_id == record_id, Recipient.contact_id.in_(contact_ids))
    raise ValueError(f"unknown record type {record_type!r}")


def related_emails(session: Session, record_type: str, record_id: int) -> list[RelatedEmail]:
    """The emails sent to a record, newest first, with its recipients' accesses summed (one query)."""
    statement = (
        select(
            Email.id, Email.subject, Email.sent_at, User.name, Email.status,
            func.coalesce(func.sum(Recipient.access_count), 0), func.max(Recipient.last_access),
            func.coalesce(func.sum(Recipient.human_opens), 0),
            func.coalesce(func.sum(Recipient.click_count), 0),
        )
        .join(Recipient, Recipient.email_id == Email.id)
        .join(User, User.id == Email.sender_id)
        .where(recipient_condition(record_type, record_id))
        .group_by(Email.id, Email.subject, Email.sent_at, User.name, Email.status, Email.created_at)
        # Unsent email has no sent_at yet: it sorts by when it was written.
        .order_by(func.coalesce(Email.sent_at, Email.created_at).desc(), Email.id.desc())
    )
    return [RelatedEmail(*row) for row in session.execute(statement)]


# -- for the compose page ---------------------------------------------------------------


def record_choices(session: Session, record_type: str, query: str, limit: int = 50) -> list[Record]:
    """Records with an email address matching ``query`` (same search as the lists), in name order."""
    model = _model(record_type)
    return list(session.scalars(_search(record_type, query or "").where(model.email != "").limit(limit)))


# ASCII digits: re's \d would take any script's digits.
REFERENCE = re.compile(r"(contact|account|lead):([0-9]+)")


def parse_reference(entry: str) -> tuple[str, int] | None:
    """("contact", 12) for "contact:12"; None for anything else (an address).  An id no record can
    have is ValidationError keyed by the record type, as ``recipient_for`` gives for a missing record."""
    match = REFERENCE.fullmatch(entry.strip())
    if match is None:
        return None
    try:
        return match[1], whole_number(match[2], 1, MAX_ID)
    except ValueError:
        shown = match[2] if len(match[2]) <= 20 else match[2][:20] + "…"
        raise ValidationError({match[1]: f"there is no {match[1]} with id {shown}"}) from None


class RecipientFor(NamedTuple):
    address: str
    display_name: str
    record: Record

    @property
    def opted_out(self) -> bool:
        return self.record.email_opt_out


def recipient_for(session: Session, record_type: str, record_id: int) -> RecipientFor:
    """Address and name to send a record email; ValidationError keyed by ``record_type`` if it has none.

    The caller decides what to do with ``.opted_out`` records (they are not refused here).
    """
    record = get_record(session, record_type, record_id)
    if record is None:
        raise ValidationError({record_type: f"there is no {record_type} with id {record_id}"})
    if not record.email:
        raise ValidationError({record_type: f"{record.display_name} has no email address"})
    return RecipientFor(record.email, record.display_name, record)


# -- deleting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeletionImpact:
    """What deleting a record does to the rest, for its confirmation page."""

    emails: int  # emails sent to it: they stay, their recipients no longer linked to a record
    recipients: int
    contacts: int  # an account's contacts: they stay, without an account


def deletion_impact(session: Session, record: Record) -> DeletionImpact:
    # Those addressed to this very record (an account's contacts keep theirs).
    linked = getattr(Recipient, f"{record.record_type}_id") == record.id
    emails, recipients = session.execute(
        select(func.count(func.distinct(Recipient.email_id)), func.count(Recipient.id)).where(linked)).one()
    contacts = session.scalar(select(func.count()).where(Contact.account_id == record.id)) \
        if record.record_type == "account" else 0
    return DeletionImpact(emails, recipients, contacts or 0)


def delete_record(session: Session, record: Record) -> None:
    """Deletes the record.  The database unlinks what pointed at it (ON DELETE SET NULL): the
    emails sent to it and their counts stay, under their recipients' addresses, so the emails and
    recipients reports do not change; the Records report no longer lists it."""
    model = _model(record.record_type)
    session.execute(delete(model).where(model.id == record.id), execution_options={"synchronize_session": False})
    session.commit()
    session.expire_all()
