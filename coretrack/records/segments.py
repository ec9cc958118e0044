"""Saved segments: named filters over contacts, accounts or leads, kept as data (a list of conditions,
each a field, an operator and a value) and compiled to one parameterised SQL expression when used.
Only the fields and operators below exist: anything else is refused with a message for the form.

Engagement reads the recipients of each record (and their likely-human opens and clicks): "opened"
is a likely-human load of the image, never a proxy's or a scanner's.  A recipient whose reading is
not measured never shows an open, so "did not open email N" includes them: they may have read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..db import MAX_ID
from ..models import AccessEvent, Account, Address, ClickEvent, Contact, Email, Recipient, Segment, User, utcnow
from ..validation import ValidationError, whole_number
from .fields import NOUNS, model_of

MAX_CONDITIONS = 20
MAX_VALUE = 200
MAX_DAYS = 3650
NAME_LENGTH = 200

TEXT_OPS = {"is": "is", "is_not": "is not", "contains": "contains", "not_contains": "does not contain",
            "starts_with": "starts with", "ends_with": "ends with", "empty": "is empty", "not_empty": "is not empty"}
FLAG_OPS = {"yes": "yes", "no": "no"}
CONSENT_OPS = {"is": "is", "is_not": "is not"}
ENGAGEMENT_OPS = {"email": "email N", "not_email": "not email N (was sent it)", "within_days": "in the last N days",
                  "not_within_days": "nothing in the last N days"}
DAYS_OPS = {"within_days": "in the last N days", "older_than_days": "more than N days ago"}
# Every operator, as the form's choice offers them (each field takes some: SegmentField.ops).
ALL_OPS = {**TEXT_OPS, **FLAG_OPS, **ENGAGEMENT_OPS, **DAYS_OPS}
CONSENT_VALUES = ("granted", "refused", "withdrawn", "unknown")
_NO_VALUE = frozenset({"empty", "not_empty", "yes", "no"})


@dataclass(frozen=True)
class SegmentField:
    """A field a condition may name: its label and kind (which says its operators)."""

    label: str
    kind: str  # text | account | flag | opt_out | consent | created | opened | clicked | received

    @property
    def ops(self) -> dict[str, str]:
        return {"text": TEXT_OPS, "account": TEXT_OPS, "flag": FLAG_OPS, "opt_out": FLAG_OPS, "consent": CONSENT_OPS,
                "created": DAYS_OPS}.get(self.kind, ENGAGEMENT_OPS)


_PERSON = {"first_name": SegmentField("First name", "text"), "last_name": SegmentField("Last name", "text")}
_COMMON = {
    "email": SegmentField("Email", "text"), "phone": SegmentField("Phone", "text"),
    "opted_out": SegmentField("Opted out of email", "opt_out"),
    "consent": SegmentField("Consent to measuring", "consent"),
    "created": SegmentField("Created", "created"), "opened": SegmentField("Opened", "opened"),
    "clicked": SegmentField("Clicked", "clicked"), "received": SegmentField("Was sent", "received"),
}
_ACCOUNT = {"account.name": SegmentField("Account name", "account"),
            "account.email": SegmentField("Account email", "account"),
            "account.website": SegmentField("Account website", "account")}
FIELDS: dict[str, dict[str, SegmentField]] = {
    "contact": {**_PERSON, **_COMMON, "do_not_track": SegmentField("Do not track", "flag"), **_ACCOUNT},
    "account": {"name": SegmentField("Name", "text"), **_COMMON, "website": SegmentField("Website", "text")},
    "lead": {**_PERSON, "company": SegmentField("Company", "text"), **_COMMON,
             "do_not_track": SegmentField("Do not track", "flag")},
}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "op": self.op, "value": self.value}


def check_condition(session: Session, record_type: str, raw: Any) -> Condition:
    """One condition from its JSON form (or a form row); ValueError saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("a condition is an object with field, op and value")
    name, op, value = (raw.get(key, "") for key in ("field", "op", "value"))
    value = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else value
    if not all(isinstance(part, str) for part in (name, op, value)):
        raise ValueError("field, op and value are text")
    defined = FIELDS[record_type].get(name)
    if defined is None:
        raise ValueError(f"{NOUNS[record_type][1]} have no field {name[:40]!r} a segment can use")
    if op not in defined.ops:
        raise ValueError(f"{defined.label}: choose one of {', '.join(defined.ops.values())}")
    value = value.strip()
    if op in _NO_VALUE:
        return Condition(name, op)
    if defined.kind == "consent":
        if value not in CONSENT_VALUES:
            raise ValueError(f"{defined.label}: the value is one of {', '.join(CONSENT_VALUES)}")
    elif op in ("email", "not_email"):
        try:
            email_id = whole_number(value, 1, MAX_ID)
        except ValueError:
            raise ValueError(f"{defined.label} email N: N is an email's number, such as 12") from None
        if session.get(Email, email_id) is None:
            raise ValueError(f"{defined.label} email N: there is no email {email_id}")
        value = str(email_id)
    elif op.endswith("days"):
        try:
            value = str(whole_number(value, 1, MAX_DAYS))
        except ValueError:
            raise ValueError(f"{defined.label}: the number of days is a whole number from 1 to {MAX_DAYS}") from None
    elif not value:
        raise ValueError(f"{defined.label} {defined.ops[op]}: give the text to compare with")
    elif len(value) > MAX_VALUE:
        raise ValueError(f"{defined.label}: at most {MAX_VALUE} characters")
    return Condition(name, op, value)


def check_conditions(session: Session, record_type: str, raw: Any) -> list[Condition]:
    """Every condition, or ValidationError keyed "condition-<n>" (from 0) for each bad one."""
    if not isinstance(raw, list):
        raise ValidationError({"conditions": "conditions are a list"})
    if len(raw) > MAX_CONDITIONS:
        raise ValidationError({"conditions": f"a segment has at most {MAX_CONDITIONS} conditions"})
    checked, errors = [], {}
    for number, entry in enumerate(raw):
        try:
            checked.append(check_condition(session, record_type, entry))
        except ValueError as exc:
            errors[f"condition-{number}"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return checked


def _text(column: Any, op: str, value: str) -> ColumnElement[bool]:
    # autoescape: a % or _ in the value matches itself.
    positive: dict[str, Callable[[], ColumnElement[bool]]] = {
        "is": lambda: func.lower(column) == value.lower(), "contains": lambda: column.icontains(value, autoescape=True),
        "starts_with": lambda: column.istartswith(value, autoescape=True),
        "ends_with": lambda: column.iendswith(value, autoescape=True), "empty": lambda: func.trim(column) == "",
    }
    negated = {"is_not": "is", "not_contains": "contains", "not_empty": "empty"}
    if op in negated:
        return not_(positive[negated[op]]())
    return positive[op]()


def _account(condition: Condition) -> ColumnElement[bool]:
    """A contact's account's field: a contact without an account has every field empty."""
    column: InstrumentedAttribute[str] = getattr(Account, condition.field.removeprefix("account."))
    negated = {"is_not": "is", "not_contains": "contains", "not_empty": "empty"}
    op = negated.get(condition.op, condition.op)
    has: ColumnElement[bool] = Contact.account_id.in_(select(Account.id).where(_text(column, op, condition.value)))
    no_account = Contact.account_id.is_(None)
    if op == "empty":
        return and_(not_(no_account), not_(has)) if condition.op in negated else or_(no_account, has)
    return or_(no_account, not_(has)) if condition.op in negated else has


def _address_state(model: Any, where: ColumnElement[bool]) -> ColumnElement[bool]:
    """The record's address, as what it decided is kept (by address, lower-case) matches ``where``."""
    matching: ColumnElement[bool] = func.lower(model.email).in_(select(Address.address).where(where))
    return matching


def _consent(model: Any, condition: Condition) -> ColumnElement[bool]:
    if condition.value == "unknown":
        matching = not_(_address_state(model, Address.consent != ""))
    else:
        matching = _address_state(model, Address.consent == condition.value)
    return not_(matching) if condition.op == "is_not" else matching


def _engagement(record_type: str, model: Any, condition: Condition, now: datetime) -> ColumnElement[bool]:
    """Records with (or without) a recipient that opened, clicked or was sent an email."""
    holder: InstrumentedAttribute[int | None] = getattr(Recipient, f"{record_type}_id")
    kind, op = FIELDS[record_type][condition.field].kind, condition.op
    if op in ("email", "not_email"):
        done = {"opened": Recipient.first_human_at.is_not(None), "clicked": Recipient.human_clicks > 0,
                "received": true()}[kind]
        sent = and_(Recipient.email_id == int(condition.value), Recipient.status == "sent")
        if kind == "received" and op == "not_email":  # never sent it (rather than sent it and not...)
            never: ColumnElement[bool] = not_(model.id.in_(select(holder).where(sent, holder.is_not(None))))
            return never
        sent_it: ColumnElement[bool] = model.id.in_(select(holder).where(sent, done if op == "email" else not_(done)))
        return sent_it
    since = now - timedelta(days=int(condition.value))
    events: Select[Any]
    if kind == "received":
        events = select(holder).where(Recipient.status == "sent", Recipient.sent_at >= since)
    else:
        table = AccessEvent if kind == "opened" else ClickEvent
        events = (select(holder).select_from(table).join(Recipient, Recipient.id == table.recipient_id)
                  .where(table.at >= since, table.verdict == "human"))
    # NOT IN with a NULL in the list matches nothing: recipients of another record type have NULL here.
    matching: ColumnElement[bool] = model.id.in_(events.where(holder.is_not(None)))
    return matching if op == "within_days" else not_(matching)


def compile_conditions(record_type: str, conditions: Sequence[Condition], now: datetime | None = None
                       ) -> ColumnElement[bool]:
    """The SQL condition every one of ``conditions`` holds for (already checked): bound parameters only."""
    model, now = model_of(record_type), now or utcnow()
    compiled: list[ColumnElement[bool]] = []
    for condition in conditions:
        kind = FIELDS[record_type][condition.field].kind
        if kind == "text":
            compiled.append(_text(getattr(model, condition.field), condition.op, condition.value))
        elif kind == "account":
            compiled.append(_account(condition))
        elif kind == "flag":
            flag = getattr(model, condition.field)
            compiled.append(flag.is_(True) if condition.op == "yes" else flag.is_(False))
        elif kind == "opt_out":
            opted = _address_state(model, Address.opted_out_at.is_not(None))
            compiled.append(opted if condition.op == "yes" else not_(opted))
        elif kind == "consent":
            compiled.append(_consent(model, condition))
        elif kind == "created":
            since = now - timedelta(days=int(condition.value))
            compiled.append(model.created_at >= since if condition.op == "within_days" else model.created_at < since)
        else:
            compiled.append(_engagement(record_type, model, condition, now))
    return and_(true(), *compiled)


def conditions_of(segment: Segment) -> list[Condition]:
    """A saved segment's conditions (checked when saved)."""
    return [Condition(**entry) for entry in json.loads(segment.conditions)]


@dataclass(frozen=True)
class SegmentFilter:
    """A segment as a list or a mass send uses it: its id, name, record type and compiled condition."""

    id: int
    name: str
    record_type: str
    where: ColumnElement[bool]


def filter_of(segment: Segment) -> SegmentFilter:
    return SegmentFilter(segment.id, segment.name, segment.record_type,
                         compile_conditions(segment.record_type, conditions_of(segment)))


def count(session: Session, segment: Segment) -> int:
    """How many records the segment finds today: one query."""
    model = model_of(segment.record_type)
    return session.scalar(select(func.count()).select_from(model).where(filter_of(segment).where)) or 0


def _visible(user: User) -> ColumnElement[bool]:
    return or_(Segment.shared.is_(True), Segment.owner_id == user.id)


def visible_segments(session: Session, user: User, record_type: str | None = None) -> list[Segment]:
    """The shared segments and the user's own private ones, in name order."""
    statement = select(Segment).where(_visible(user))
    if record_type is not None:
        statement = statement.where(Segment.record_type == record_type)
    return list(session.scalars(statement.order_by(func.lower(Segment.name), Segment.id)))


def visible_segment(session: Session, user: User, segment_id: int) -> Segment | None:
    """The segment if this user may see it (another user's private one is None, as a missing one)."""
    return session.scalar(select(Segment).where(Segment.id == segment_id, _visible(user)))


def usable_filter(session: Session, user: User, segment_id: str) -> SegmentFilter:
    """The segment a list or a mass send names by its id (as given), if this user may see it; ValueError."""
    try:
        segment = visible_segment(session, user, whole_number(segment_id, 1, MAX_ID))
    except ValueError:
        segment = None
    if segment is None:
        raise ValueError("that segment no longer exists (or is another user's private one)")
    return filter_of(segment)


def may_change(user: User, segment: Segment) -> bool:
    """Its owner, and admins for a shared one (a private one only its owner sees)."""
    return segment.owner_id == user.id or (user.is_admin and segment.shared)


def save(session: Session, user: User, segment: Segment | None, record_type: str, name: str, raw_conditions: Any,
         shared: bool) -> Segment:
    """Create (``segment`` None) or change a segment; ValidationError with every problem, nothing saved."""
    errors: dict[str, str] = {}
    name = " ".join(str(name or "").split())
    if not name:
        errors["name"] = "give the segment a name"
    elif len(name) > NAME_LENGTH:
        errors["name"] = f"at most {NAME_LENGTH} characters"
    if record_type not in FIELDS:
        raise ValidationError({"record_type": "a segment is of contacts, accounts or leads"})
    try:
        conditions = check_conditions(session, record_type, raw_conditions)
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    if segment is None:
        segment = Segment(record_type=record_type, owner_id=user.id)
        session.add(segment)
    segment.name, segment.shared, segment.updated_at = name, shared, utcnow()
    segment.conditions = json.dumps([condition.as_dict() for condition in conditions])
    session.commit()
    return segment


# How the segment's page says an engagement condition: (done, not done, nothing done), "{n}" the value.
_ENGAGEMENT_WORDS = {
    "opened": ("Opened", "Did not open", "Opened nothing"), "clicked": ("Clicked", "Did not click", "Clicked nothing"),
    "received": ("Was sent", "Was not sent", "Was sent nothing"),
}


def _engagement_words(kind: str, op: str, value: str) -> str:
    done, not_done, nothing = _ENGAGEMENT_WORDS[kind]
    return {"email": f"{done} email {value}",
            "not_email": f"{not_done} email {value}" + (" (was sent it)" if kind != "received" else ""),
            "within_days": f"{done} {'an email ' if kind == 'received' else ''}in the last {value} days",
            "not_within_days": f"{nothing} in the last {value} days"}[op]


def describe(segment: Segment) -> list[str]:
    """Each condition in words, as the segment's page lists them: "Opened email 12", "Email ends with “.es”"."""
    described = []
    for condition in conditions_of(segment):
        defined = FIELDS[segment.record_type][condition.field]
        op = defined.ops[condition.op]
        if defined.kind in _ENGAGEMENT_WORDS:
            described.append(_engagement_words(defined.kind, condition.op, condition.value))
            continue
        if " N" in op:
            op, value = op.replace(" N", f" {condition.value}"), ""
        else:
            value = f"“{condition.value}”" if defined.kind in ("text", "account") else condition.value
        described.append(" ".join(part for part in (defined.label, op, value) if part))
    return described
