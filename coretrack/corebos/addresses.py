"""Who an email of coreBOS's went to, and from which address.

coreBOS's compose form records each recipient as ``crmid@fieldid|`` in ``vtiger_emaildetails.idlists``:
the record and the email field (``vtiger_field``) it was mailed at — a contact's ``secondaryemail``, an
account's ``email2``...; ``-1`` or a Users field is one of coreBOS's users.  ``to_email`` holds the
addresses as JSON.  ``mailsend.php`` stores the owner's address as ``from_email`` and, when another From
was typed, appends ``' > '`` and that address (within the column's 50 characters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

USERS_FIELD = -1  # getModuleForField(-1) is 'Users'
CUSTOM_FROM = " > "


@dataclass(frozen=True)
class EmailField:
    """A row of vtiger_field of an email field: the module, the table and column it reads."""

    module: str
    table: str
    column: str


@dataclass
class Mailed:
    """An email's idlists and to_email, read: the field each record was mailed at, the users it went
    to, and the addresses."""

    fields: dict[int, int] = field(default_factory=dict)  # crmid -> fieldid
    users: set[int] = field(default_factory=set)
    addresses: list[str] = field(default_factory=list)


def mailed(idlists: str | None, to_email: str | None, user_fields: set[int]) -> Mailed:
    """What ``idlists`` and ``to_email`` say; entries that are not ``id@id`` are passed over."""
    found = Mailed()
    for entry in (idlists or "").split("|"):
        crmid, _, fieldid = entry.strip().partition("@")
        if not (crmid.isdigit() and fieldid.lstrip("-").isdigit()):
            continue
        if int(fieldid) == USERS_FIELD or int(fieldid) in user_fields:
            found.users.add(int(crmid))
        else:
            found.fields.setdefault(int(crmid), int(fieldid))
    found.addresses = to_addresses(to_email)
    return found


def to_addresses(to_email: str | None) -> list[str]:
    """The addresses of ``to_email``: a JSON list (CRMEntity json_encode's uitype 8), else a comma list
    (vtiger 5)."""
    raw = (to_email or "").strip()
    try:
        value = json.loads(raw) if raw.startswith("[") else raw.split(",")
    except ValueError:
        value = raw.split(",")
    if not isinstance(value, list):
        return []
    return [str(item).strip() for item in value if str(item).strip()]


def address_mailed(record_fields: dict[str, str], primary: str, column: str | None, to: list[str]) -> str:
    """The address a record was mailed at: the field idlists names (``column``); without one (vtiger 5,
    an email linked by hand), the record's address that to_email holds, else its ``primary`` one.
    ``record_fields``: the record's email columns' values."""
    if column is not None and record_fields.get(column):
        return record_fields[column]
    listed = {address.lower() for address in to}
    for value in record_fields.values():
        if value and value.lower() in listed:
            return value
    return record_fields.get(primary, "")


def sender_addresses(from_email: str | None) -> tuple[str, str]:
    """(the owner's address, the From typed instead or "") of a stored from_email."""
    owner, separator, typed = (from_email or "").partition(CUSTOM_FROM)
    return owner.strip(), typed.strip() if separator else ""
