"""The filters the reports and the email list read, from a query string (all optional):

- ``from`` / ``to``: days, inclusive, in the filters' time zone (the user's on pages and in CSV
  files, UTC in the API).  The email's send time (on the email list: when it was written), except on
  Activity, where they are the chart's range (default: the last 30 days).
- ``sender``: the sending user's name;  ``subject``: text in the subject.
- ``record_type``: recipients linked to a contact, account or lead (on Records:
  which kind of record is listed, contacts by default; an account rolls up email to its contacts).
- ``status``: the recipient's delivery status (on the email list: the email's status).
- ``sort`` (a column key, whitelisted per report) and ``order`` (asc, desc).
- ``by``: Activity only, a bucket per day or per hour.
- ``loads``: ``human`` (the default: opens and clicks are the likely-human ones) or ``all`` (every load
  of the image and every click, proxies and scanners too): what the rates count (rates.py).

The email list reads only ``from``, ``to``, ``sender`` and ``status``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..models import EMAIL_STATUSES, RECIPIENT_STATUSES, RECORD_TYPES, Email
from ..validation import day_range

if TYPE_CHECKING:
    from .report import Report

MAX_SUBJECT: int = Email.__table__.c.subject.type.length  # type: ignore[attr-defined]  # a String's length
# (no subject is longer: neither is a filter on one)


LOADS = ("human", "all")


@dataclass
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    sender: str = ""
    record_type: str = ""
    subject: str = ""
    status: str = ""  # the recipient's delivery status (the email list: the email's)
    sort: str = ""
    descending: bool = True
    by: str = "day"  # Activity: day | hour
    all_loads: bool = False  # ?loads=all: rates count every load and click, not only the likely-human ones
    errors: dict[str, str] = field(default_factory=dict)
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))  # whose days "from" and "to" are

    @property
    def active(self) -> bool:
        return bool(self.date_from or self.date_to or self.sender or self.record_type or self.subject or self.status)

    def as_dict(self) -> dict[str, object]:
        return {"from": self.date_from, "to": self.date_to, "sender": self.sender, "record_type": self.record_type,
                "subject": self.subject, "status": self.status, "sort": self.sort,
                "order": "desc" if self.descending else "asc", "loads": self.loads}

    @property
    def loads(self) -> str:
        return "all" if self.all_loads else "human"


def _choice(args: Mapping[str, str], key: str, choices: Collection[str], errors: dict[str, str], message: str) -> str:
    value = (args.get(key) or "").strip()
    if value and value not in choices:
        errors[key] = message
        return ""
    return value


def parse_loads(args: Mapping[str, str], errors: dict[str, str]) -> bool:
    """``loads``: whether the rates count every load and click (``all``) or the likely-human ones."""
    return _choice(args, "loads", LOADS, errors, "choose human or all") == "all"


def parse_filters(args: Mapping[str, str], time_zone: ZoneInfo | None = None,
                  report: Report | None = None) -> Filters:
    """Filters from a query string, days in ``time_zone`` (UTC if None: the API's), for ``report`` or,
    if None, for the email list; each bad value is an error for its field and is ignored."""
    errors: dict[str, str] = {}
    date_from, date_to = day_range(args, errors)
    filters = Filters(date_from=date_from, date_to=date_to, sender=(args.get("sender") or "").strip(), errors=errors,
                      time_zone=time_zone or ZoneInfo("UTC"))
    if report is None:
        filters.status = _choice(args, "status", EMAIL_STATUSES, errors, "choose a status from the list")
        return filters
    filters.record_type = _choice(args, "record_type", RECORD_TYPES, errors, "choose contact, account or lead")
    filters.subject = (args.get("subject") or "").strip()
    filters.status = _choice(args, "status", RECIPIENT_STATUSES, errors, "choose a status from the list")
    filters.sort = _choice(args, "sort", [column.key for column in report.columns], errors,
                           "not a column of this report")
    filters.by = _choice(args, "by", ("day", "hour"), errors, "choose day or hour") or "day"
    filters.all_loads = parse_loads(args, errors)
    if len(filters.subject) > MAX_SUBJECT:
        errors["subject"] = f"a subject has at most {MAX_SUBJECT} characters"
        filters.subject = ""
    sort_column = report.column(filters.sort or report.default_sort)
    order = _choice(args, "order", ("asc", "desc"), errors, "choose asc or desc")
    filters.descending = order == "desc" if order else sort_column.descending_first
    report.check(filters)
    return filters
