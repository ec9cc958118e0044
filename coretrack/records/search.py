"""Finding records: a list's search, the audience of a mass send, and the choices the compose
page and the account picker offer (with the contact:12 references they make).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, contains_eager

from ..db import MAX_ID
from ..models import Account, Contact, Lead, Record
from ..paging import Page, paginate
from ..validation import ValidationError, whole_number
from .fields import NOUNS, model_of
from .segments import SegmentFilter
from .store import account_label

# Each word is a condition on every searched column: SQLite refuses an expression 1,000 deep, PostgreSQL
# runs out of stack, and SQLite refuses a LIKE pattern of 50,000 bytes.
MAX_SEARCH_WORDS, MAX_SEARCH_CHARACTERS = 10, 200


def _search(record_type: str, query: str) -> Select[Record]:
    """Records matching every word of ``query`` in a name, the email or the account/company, in name order.

    ValueError with a message for the user when the search is too long."""
    words = query.split()
    if len(words) > MAX_SEARCH_WORDS or len(query) > MAX_SEARCH_CHARACTERS:
        raise ValueError(f"a search takes at most {MAX_SEARCH_WORDS} words and {MAX_SEARCH_CHARACTERS} characters")
    model = model_of(record_type)
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


def search_records(session: Session, record_type: str, query: str, page: int, per_page: int,
                   segment: SegmentFilter | None = None) -> Page[Record]:
    """A list page: the search's records, within the segment if one is chosen."""
    statement = _search(record_type, query or "")
    return paginate(session, statement if segment is None else statement.where(segment.where), page, per_page)


# Rows one may tick on a list page and send to: more than any page shows.
MAX_SELECTED = 1000


@dataclass(frozen=True)
class Audience:
    """Records to email at once, from a list page: the rows ticked (``ids``) or every record that
    matches the list's search (``ids`` None), within a saved segment if the list showed one; for
    accounts, with their contacts if chosen.  Kept on the compose form as these few values and resolved
    again on the server at preview and at send (a segment's conditions too: today's records)."""

    record_type: str
    query: str = ""
    ids: tuple[int, ...] | None = None
    with_contacts: bool = False
    segment: SegmentFilter | None = field(default=None, compare=False)

    @classmethod
    def from_form(cls, section: str, scope: str, query: str, ids: list[str], with_contacts: bool,
                  segment: SegmentFilter | None = None) -> Audience:
        """ValueError with a message for the user."""
        record_type = {"contacts": "contact", "accounts": "account", "leads": "lead"}.get(section)
        if record_type is None:
            raise ValueError("send to contacts, accounts or leads")
        if segment is not None and segment.record_type != record_type:
            raise ValueError(f"the segment “{segment.name}” is of {NOUNS[segment.record_type][1]}, not {section}")
        if scope == "all":
            _search(record_type, query)  # a search the list refuses is refused here too
            return cls(record_type, query.strip(), None, with_contacts and record_type == "account", segment)
        chosen = sorted({whole_number(value, 1, MAX_ID) for value in ids})
        if not chosen:
            raise ValueError(f"tick at least one of the {NOUNS[record_type][1]} to email, or email all that match")
        if len(chosen) > MAX_SELECTED:
            raise ValueError(f"at most {MAX_SELECTED:,} ticked rows: email all that match a search instead")
        return cls(record_type, "", tuple(chosen), with_contacts and record_type == "account", segment)

    def describe(self, count: int) -> str:
        nouns = NOUNS[self.record_type][1] if count != 1 else NOUNS[self.record_type][0]
        if self.ids is not None:
            what = f"the {count:,} {nouns} ticked"
        else:
            what = f"all {count:,} {nouns}"
            if self.segment is not None:
                what += f" of the segment “{self.segment.name}”"
            if self.query:
                what += f"{' that match' if self.segment else ' matching'} “{self.query}”"
        return what + (" and their contacts" if self.with_contacts else "")

    def statement(self) -> Select[Record]:
        statement = _search(self.record_type, self.query)
        if self.ids is not None:
            model = model_of(self.record_type)
            statement = statement.where(model.id.in_(self.ids))
        if self.segment is not None:
            statement = statement.where(self.segment.where)
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


def account_choices(session: Session, query: str, limit: int = 20) -> list[str]:
    """The picker's suggestions: labels of the accounts matching ``query`` (as the list's search does)."""
    try:
        found = session.scalars(_search("account", query).limit(limit))
    except ValueError:
        return []  # a search too long for the list is too long for suggestions
    return [account_label(account) for account in found if isinstance(account, Account)]


def record_choices(session: Session, record_type: str, query: str, limit: int = 50) -> list[Record]:
    """Records with an email address matching ``query`` (same search as the lists), in name order."""
    model = model_of(record_type)
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
