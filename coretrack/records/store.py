"""Getting, creating, updating and deleting CRM records (contacts, accounts and leads).

Validated create and update (one error per field, nothing written on error; csv_import.py and the
coreBOS import check their values with ``clean_value`` too), the values a record's form shows, and
how an opt-out ticked on a record reaches its address (people/suppression.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..db import MAX_ID
from ..models import Account, Contact, Lead, Record
from ..people import suppression
from ..validation import ValidationError, clean_address, clean_header_text, web_address, whole_number
from .fields import FIELDS, FieldDef, attribute, model_of

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_TRUE = frozenset({"on", "true", "yes", "y", "1"})
_FALSE = frozenset({"", "off", "false", "no", "n", "0"})


def get_record(session: Session, record_type: str, record_id: int) -> Record | None:
    if not 0 < record_id <= MAX_ID:
        return None  # a typed reference like contact:99999999999 names no record (and overflows the column)
    record = session.get(model_of(record_type), record_id)
    return record if isinstance(record, Contact | Account | Lead) else None  # (typed: get() of a union is Base)


def contacts_of(session: Session, account_id: int) -> list[Contact]:
    return list(
        session.scalars(
            select(Contact).where(Contact.account_id == account_id).order_by(Contact.last_name, Contact.first_name)
        )
    )


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
    record: Record = model_of(record_type)(**values)
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


def delete_record(session: Session, record: Record) -> None:
    """Deletes the record.  The database unlinks what pointed at it (ON DELETE SET NULL): the
    emails sent to it and their counts stay, under their recipients' addresses, so the emails and
    recipients reports do not change; the Records report no longer lists it."""
    model = model_of(record.record_type)
    session.execute(delete(model).where(model.id == record.id), execution_options={"synchronize_session": False})
    session.commit()
    session.expire_all()
