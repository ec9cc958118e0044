"""The suppression list: every address that gets no email, with why (its category), when, and the
evidence (the DSN or ARF report kept, or the provider's event), to search, page, export, import and
review; and an admin's reinstatement with a reason, audited in the address's history.

A complaint or an erasure is reinstated only with an explicit confirmation besides the reason: the
person said they want no mail (or to be forgotten), and mailing them again risks the sender's
reputation and the law.  An erased person's address is not kept (people/erasure.py): the list
shows the erasures, and an admin who types the address finds and reinstates its erasure by its digest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..models import Address, DeliveryEvent, Erasure, MailReport, Recipient, utc_iso, utcnow
from ..validation import clean_address
from . import erasure, suppression

MAX_IMPORT_ROWS = 10_000  # a file's; more is refused, nothing imported
_REASON_LENGTH = 200
CSV_COLUMNS = ("address", "category", "source", "reason", "opted_out_at_utc", "evidence")
# Reinstating these needs the explicit confirmation as well as a reason.
CONFIRMED_ONLY = {suppression.COMPLAINT: "this person complained of our email",
                  suppression.ERASURE: "this person was erased"}


class ReinstateError(ValueError):
    """A reinstatement refused: the reason or the confirmation is missing, or nothing is suppressed."""


@dataclass(frozen=True)
class Evidence:
    kind: str  # "DSN", "ARF report", "SendGrid event" or "" (none kept)
    summary: str
    raw: str = ""  # the report as received ("" past the retention period)
    received_at: object = None


def statement(search: str = "", category: str = "") -> Select[Address]:
    """The suppressed addresses, newest first, whose address contains ``search`` (letter case aside)."""
    query = select(Address).where(Address.opted_out_at.is_not(None))
    if search.strip():
        pattern = search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Address.address.like(f"%{pattern}%", escape="\\"))
    if category:
        query = query.where(Address.opt_out_category == category)
    return query.order_by(Address.opted_out_at.desc(), Address.id.desc())


def evidence(session: Session, address: Address) -> Evidence:
    """What the address's suppression rests on."""
    if address.evidence_report_id is not None:
        report = session.get(MailReport, address.evidence_report_id)
        if report is not None:
            kind = "DSN" if report.kind == "dsn" else "ARF report"
            return Evidence(kind, report.detail or report.status, report.raw, report.received_at)
    if address.evidence_event_id is not None:
        event = session.get(DeliveryEvent, address.evidence_event_id)
        if event is not None:
            return Evidence(f"{event.provider.capitalize()} event", f"{event.event} {event.detail}".strip(),
                            received_at=event.received_at)
    return Evidence("", "")


def as_json(session: Session, address: Address) -> dict[str, object]:
    found = evidence(session, address)
    return {"address": address.address, "category": address.opt_out_category,
            "category_label": suppression.CATEGORIES.get(address.opt_out_category, address.opt_out_source),
            "source": address.opt_out_source, "reason": address.opt_out_reason,
            "opted_out_at": utc_iso(address.opted_out_at) if address.opted_out_at else None,
            "evidence": {"kind": found.kind, "summary": found.summary, "raw_kept": bool(found.raw)}
            if found.kind else None}


def erasures(session: Session, secret: bytes, search: str = "") -> list[Erasure]:
    """Erasures not reinstated, newest first; with ``search``, only the erasure of that exact address."""
    query = select(Erasure).where(Erasure.reinstated_at.is_(None))
    if search.strip():
        query = query.where(Erasure.address_digest == erasure.address_digest(secret, search))
    return list(session.scalars(query.order_by(Erasure.id.desc()).limit(50)))


def reinstate(session: Session, secret: bytes, address: str, user_name: str, reason: str,
              confirmed: bool = False) -> str:
    """Lets email reach ``address`` again (its opt-out lifted, or its erasure's block), audited with who
    and why; commits.  What was reinstated (a category); ReinstateError saying what is missing."""
    reason = " ".join(reason.split())[:_REASON_LENGTH]
    found = suppression.state(session, address)
    if found is not None and found.opted_out_at is not None:
        category, confirm_for = found.opt_out_category, confirmation_needed(session, found)
    elif erasure.was_erased(session, secret, address):
        category = confirm_for = suppression.ERASURE
    else:
        raise ReinstateError(f"{address} is not suppressed")
    if not reason:
        raise ReinstateError("say why email may reach this address again (for example: asked by letter on 3 March)")
    if confirm_for and not confirmed:
        raise ReinstateError(f"{CONFIRMED_ONLY[confirm_for]}: tick the box to confirm that email may reach "
                             "the address again")
    if category == suppression.ERASURE:
        digest = erasure.address_digest(secret, address)
        for row in session.scalars(select(Erasure).where(Erasure.address_digest == digest,
                                                         Erasure.reinstated_at.is_(None))):
            row.reinstated_at, row.reinstated_by, row.reinstate_reason = utcnow(), user_name, reason
        session.commit()
    else:
        suppression.lift_opt_out(session, address, user_name, reason)
    return category


def confirmation_needed(session: Session, address: Address) -> str:
    """suppression.COMPLAINT when reinstating ``address`` needs the confirmation: suppressed after a
    complaint, or suppressed otherwise first (an unsubscribe) and complained of since (an ARF report
    or a provider's spam report about a message to it); else ""."""
    if address.opt_out_category == suppression.COMPLAINT:
        return suppression.COMPLAINT
    sent_to = select(Recipient.id).where(func.lower(Recipient.address) == address.address)
    complained = session.scalar(select(MailReport.id).where(MailReport.kind == "arf",
                                                            MailReport.recipient_id.in_(sent_to)).limit(1)) \
        or session.scalar(select(DeliveryEvent.id).where(DeliveryEvent.event == "spamreport",
                                                         DeliveryEvent.recipient_id.in_(sent_to)).limit(1))
    return suppression.COMPLAINT if complained else ""


def csv_lines(session_factory: Callable[[], Session], search: str = "", category: str = "",
              chunk: int = 500) -> Iterator[bytes]:
    """The list as CSV, UTF-8 (times in UTC; cells a spreadsheet never runs as formulas), a chunk of rows
    at a time: streamed after the request's own session has closed, in a session of its own."""
    with session_factory() as session:
        yield from _csv_chunks(session, search, category, chunk)


def _csv_chunks(session: Session, search: str, category: str, chunk: int) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    last_id = 0
    query = statement(search, category).order_by(None).order_by(Address.id)
    while True:
        rows = list(session.scalars(query.where(Address.id > last_id).limit(chunk)))
        for row in rows:
            writer.writerow([_cell(row.address), row.opt_out_category, row.opt_out_source, _cell(row.opt_out_reason),
                             utc_iso(row.opted_out_at) if row.opted_out_at else "", _evidence_kind(row)])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < chunk:
            return
        last_id = rows[-1].id


def _evidence_kind(row: Address) -> str:
    """What evidence the address keeps, read from its own row (an export reads no report)."""
    if row.evidence_report_id is not None:
        return "ARF report" if row.opt_out_category == suppression.COMPLAINT else "DSN"
    return "provider event" if row.evidence_event_id is not None else ""


def _cell(value: str) -> str:
    """OWASP CSV injection: a cell a spreadsheet would run as a formula starts with a quote."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class ImportResult:
    added: int = 0  # addresses suppressed by the file
    already: int = 0  # already suppressed (their first when and why kept)
    refused: list[str] = field(default_factory=list)  # "line N: why", nothing of that line kept


def import_csv(session: Session, stream: IO[bytes], user_name: str) -> ImportResult:
    """Suppresses each address of a CSV file (a column ``address``, or the first; an optional column
    ``reason``) as "import"; commits.  A bad line is listed and the others imported; a file that is
    not CSV, has no address column or too many rows imports nothing (ValueError saying why)."""
    try:
        text = stream.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text: save it as CSV (UTF-8)") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValueError("the file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    has_header = "address" in header or "email" in header
    column = header.index("address") if "address" in header else header.index("email") if "email" in header else 0
    reason_column = header.index("reason") if "reason" in header else None
    body = rows[1:] if has_header else rows
    if len(body) > MAX_IMPORT_ROWS:
        raise ValueError(f"the file has {len(body)} rows; at most {MAX_IMPORT_ROWS} a file")
    result = ImportResult()
    wanted: list[tuple[str, str, None]] = []
    for number, row in enumerate(body, start=2 if has_header else 1):
        if not any(cell.strip() for cell in row):
            continue
        try:
            address = clean_address(row[column] if column < len(row) else "")
        except ValueError as exc:
            result.refused.append(f"line {number}: {exc}")
            continue
        reason = row[reason_column].strip() if reason_column is not None and reason_column < len(row) else ""
        wanted.append((address, reason or f"imported by {user_name}", None))
    known = suppression.suppressed(session, [address for address, _, _ in wanted])
    result.added = suppression.opt_out_many(session, wanted, suppression.IMPORT, user_name)
    result.already = len({suppression.key(address) for address, _, _ in wanted} & known)
    session.commit()
    return result
