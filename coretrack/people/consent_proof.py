"""A person's consent to measuring their reading, as proof: their address's state now and every
change with its evidence, for the record's page and as the CSV and JSON files of an access request
(GDPR Art. 15).  Read only: changes go through people/consent.py:record.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Address, ConsentEvent, ConsentText, Email, utc_iso
from ..reports.export import csv_cell
from . import consent
from .suppression import key

UNKNOWN = "unknown"  # what the files and the API say for an address that never stated a consent


@dataclass(frozen=True)
class ConsentProof:
    """An address's consent now (``state``: "" unknown, with when it took effect) and every change of
    it, newest first, with the subjects of the emails that carried them and the consent texts they
    name (by version)."""

    address: str
    state: str
    at: datetime | None
    events: list[ConsentEvent]
    subjects: dict[int, str]
    texts: dict[int, ConsentText]


def proof(session: Session, address: str) -> ConsentProof:
    """The consent proof of ``address`` (any letter case); an empty one for an address never stated."""
    wanted = key(address)
    row = session.scalar(select(Address).where(Address.address == wanted)) if wanted else None
    events = consent.history(session, wanted) if row is not None else []
    email_ids = sorted({event.email_id for event in events if event.email_id is not None})
    versions = sorted({event.text_version for event in events if event.text_version is not None})
    subjects = {email_id: subject for email_id, subject in
                session.execute(select(Email.id, Email.subject).where(Email.id.in_(email_ids)))} if email_ids else {}
    texts = {text.version: text for text in session.scalars(
        select(ConsentText).where(ConsentText.version.in_(versions)))} if versions else {}
    return ConsentProof(wanted, row.consent if row is not None else "", row.consent_at if row is not None else None,
                        events, subjects, texts)


def _time(value: datetime | None) -> str | None:
    return utc_iso(value) if value else None


def as_json(found: ConsentProof) -> dict[str, Any]:
    """The proof as the JSON download and the API give it: times in UTC with a Z."""
    return {
        "address": found.address,
        "state": found.state or UNKNOWN,
        "state_at": _time(found.at),
        "history": [{
            "at": _time(event.at), "state": event.state, "means": event.means, "source": event.source,
            "text_version": event.text_version, "ip": event.ip, "user_agent": event.user_agent,
            "email": {"id": event.email_id, "subject": found.subjects.get(event.email_id, "")}
            if event.email_id is not None else None,
            "user_name": event.user_name, "measurements_deleted": event.measurements_deleted,
        } for event in found.events],
        "consent_texts": [{"version": text.version, "created_at": _time(text.created_at), "body": text.body}
                          for _, text in sorted(found.texts.items())],
    }


def as_csv(found: ConsentProof, time_zone: ZoneInfo) -> bytes:
    """The proof as a CSV file (as the reports' exports: UTF-8 with a BOM, every cell quoted and safe
    to open in a spreadsheet, times in ``time_zone`` named by their header): a row per change, each
    with the address and its state now; an address never stated is one row saying unknown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    buffer.write("\ufeff")
    writer.writerow(["Address", "State now", f"Since ({time_zone})", f"Changed ({time_zone})", "State", "Means",
                     "Source or note", "Consent text version", "IP address", "User agent", "Email id",
                     "Email subject", "Staff user", "Measured data deleted"])
    head = [found.address, found.state or UNKNOWN, found.at]
    events: list[ConsentEvent | None] = [*found.events] or [None]
    for event in events:
        cells: list[object] = [] if event is None else [
            event.at, event.state, event.means, event.source, event.text_version, event.ip, event.user_agent,
            event.email_id, found.subjects.get(event.email_id, "") if event.email_id is not None else "",
            event.user_name, "yes" if event.measurements_deleted else "no"]
        writer.writerow([csv_cell(value, time_zone) for value in head + cells])
    return buffer.getvalue().encode("utf-8")
