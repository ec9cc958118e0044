"""The fields of a contact, an account and a lead: what their forms show and their CSV columns
name, and the model each record type is.  ``record_type`` is one of ``models.RECORD_TYPES``:
"contact", "account", "lead".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import RECORD_MODELS, Account, Contact, Lead


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


# The records that stand for one person (an account's address is usually the company's).
PERSON_TYPES = ("contact", "lead")


def model_of(record_type: str) -> type[Account] | type[Contact] | type[Lead]:
    try:
        return RECORD_MODELS[record_type]
    except KeyError:
        raise ValueError(f"unknown record type {record_type!r}") from None


def attribute(definition: FieldDef) -> str:
    """The model attribute a form field sets."""
    return "account_id" if definition.kind == "account" else definition.name
