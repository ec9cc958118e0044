"""Merge fields: ``$contacts-firstname$`` and the like in an email's subject and bodies, filled in
for each recipient from their record and for the sender from their account.

The names are coreBOS's own (module-field), so templates written there work here.  Rendering is a
single pass of one regular expression and a lookup in a table of strings made beforehand from the
fields offered below: no template language, no attribute of anything is looked up by a name the
text gives, and a value is never read again as a template, so the text can reach nothing but the
values offered.  A field that is not offered, or has no value for a recipient, renders empty and is
reported, for the preview's warnings; a field may name its fallback for an empty value after a bar
(``$contacts-firstname|there$``), which is plain text too.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..models import Account, Contact, Lead, Record, User
from ..sanitize import clean_html

# $module-field$: lower-case names, as coreBOS writes them; $module-field|fallback$ with the text an
# empty value is replaced by (one line, no $ nor markup: it is plain text in a subject or either body).
FIELD = re.compile(r"\$([a-z]+-[a-z0-9_]+)(?:\|([^$<>\r\n]{0,100}))?\$")


def _account_of(record: Record | None) -> Account | None:
    if isinstance(record, Account):
        return record
    return record.account if isinstance(record, Contact) else None


# Each offered field: its label for the picker and how its value is read (from the recipient's
# record, or for users- fields from the sender).  A contact's account fields come from its account.
_RECORD_FIELDS: dict[str, tuple[str, Callable[[Record | None], str]]] = {
    "contacts-firstname": ("Contact: first name",
                           lambda record: record.first_name if isinstance(record, Contact) else ""),
    "contacts-lastname": ("Contact: last name",
                          lambda record: record.last_name if isinstance(record, Contact) else ""),
    "contacts-email": ("Contact: email", lambda record: record.email if isinstance(record, Contact) else ""),
    "contacts-phone": ("Contact: phone", lambda record: record.phone if isinstance(record, Contact) else ""),
    "contacts-accountname": ("Contact: account name",
                             lambda record: account.name if (account := _account_of(record))
                             and isinstance(record, Contact) else ""),
    "accounts-accountname": ("Account: name", lambda record: account.name if (account := _account_of(record)) else ""),
    "accounts-email1": ("Account: email", lambda record: account.email if (account := _account_of(record)) else ""),
    "accounts-phone": ("Account: phone", lambda record: account.phone if (account := _account_of(record)) else ""),
    "accounts-website": ("Account: website",
                         lambda record: account.website if (account := _account_of(record)) else ""),
    "leads-firstname": ("Lead: first name", lambda record: record.first_name if isinstance(record, Lead) else ""),
    "leads-lastname": ("Lead: last name", lambda record: record.last_name if isinstance(record, Lead) else ""),
    "leads-company": ("Lead: company", lambda record: record.company if isinstance(record, Lead) else ""),
    "leads-email": ("Lead: email", lambda record: record.email if isinstance(record, Lead) else ""),
    "leads-phone": ("Lead: phone", lambda record: record.phone if isinstance(record, Lead) else ""),
}
_SENDER_FIELDS: dict[str, tuple[str, Callable[[User | None], str]]] = {
    "users-first_name": ("Sender: first name", lambda user: user.first_name if user else ""),
    "users-last_name": ("Sender: last name", lambda user: user.last_name if user else ""),
    "users-user_name": ("Sender: user name", lambda user: user.name if user else ""),
    "users-email1": ("Sender: email", lambda user: user.email if user else ""),
}
# For the picker: (the code to insert, its label), in the order above.
OFFERED: list[tuple[str, str]] = [(f"${name}$", label) for name, (label, _) in
                                  [*_RECORD_FIELDS.items(), *_SENDER_FIELDS.items()]]


def has_fields(*texts: str) -> bool:
    return any(FIELD.search(text or "") for text in texts)


def sender_values(sender: User | None) -> dict[str, str]:
    """The sender's fields' values: plain strings, worked out before any text is looked at."""
    return {name: read(sender) or "" for name, (_, read) in _SENDER_FIELDS.items()}


def values_for(record: Record | None, sender: Mapping[str, str]) -> dict[str, str]:
    """Every offered field's value for one recipient (their record, None for a typed address) with
    the sender's (``sender_values``)."""
    return {**{name: read(record) or "" for name, (_, read) in _RECORD_FIELDS.items()}, **sender}


@dataclass
class Rendered:
    subject: str
    html: str
    text: str
    unknown: list[str] = field(default_factory=list)  # codes of fields not offered
    empty: list[str] = field(default_factory=list)  # offered fields with no value (nor fallback) for this recipient
    fallbacks: list[str] = field(default_factory=list)  # codes whose fallback this recipient gets


def render_text(text: str, values: Mapping[str, str], *, escape: bool = False, one_line: bool = False,
                unknown: set[str] | None = None, empty: set[str] | None = None,
                fallbacks: set[str] | None = None) -> str:
    """The text with each field replaced by its value (HTML-escaped with ``escape``; on one line with
    ``one_line``, for a header); an empty one by its fallback, else by nothing, as an unknown field
    is; each noted in the sets given."""

    def fill(match: re.Match[str]) -> str:
        value = values.get(match[1])
        if value is None:
            if unknown is not None:
                unknown.add(match[0])
            return ""
        if not value.strip() and match[2] is not None:
            if fallbacks is not None:
                fallbacks.add(match[0])
            # In an HTML body the fallback is the HTML's own text already: kept as written.
            return match[2].strip()
        if not value and empty is not None:
            empty.add(match[0])
        if one_line:
            value = " ".join(value.split())
        return html.escape(value, quote=True) if escape else value

    return FIELD.sub(fill, text or "")


def render(subject: str, html_body: str, text_body: str, values: Mapping[str, str]) -> Rendered:
    """An email's subject and bodies as one recipient gets them.  The HTML is cleaned again once
    filled: an escaped value cannot open a tag or leave an attribute, but it can still be a whole
    URL (``<a href="$contacts-phone$">`` with ``javascript:...``) or a style, which only the
    cleaner judges."""
    unknown: set[str] = set()
    empty: set[str] = set()
    fallbacks: set[str] = set()
    html_filled = render_text(html_body, values, escape=True, unknown=unknown, empty=empty, fallbacks=fallbacks)
    rendered = Rendered(
        render_text(subject, values, one_line=True, unknown=unknown, empty=empty, fallbacks=fallbacks).strip(),
        clean_html(html_filled) if html_filled != html_body else html_body,
        render_text(text_body, values, unknown=unknown, empty=empty, fallbacks=fallbacks),
    )
    rendered.unknown, rendered.empty, rendered.fallbacks = sorted(unknown), sorted(empty), sorted(fallbacks)
    return rendered


_LABELS = {name: label.partition(": ")[2] for name, (label, _) in [*_RECORD_FIELDS.items(), *_SENDER_FIELDS.items()]}
_SENDER_LABELS = {name: f"sender's {_LABELS[name]}" for name in _SENDER_FIELDS}


def readable(text: str) -> str:
    """A subject (or any text) as a reader would take it before it is filled in: each offered field
    as its name between angle quotes ("Hello ‹first name›"); a code that is no field stays as written."""

    def name(match: re.Match[str]) -> str:
        label = _SENDER_LABELS.get(match[1]) or _LABELS.get(match[1])
        return f"\u2039{label}\u203a" if label else match[0]

    return FIELD.sub(name, text or "")

