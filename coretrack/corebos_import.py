"""Importing a coreBOS (or vtiger) install: its contacts, accounts, leads, emails and access counts.

Read-only on the source (the session is READ ONLY).  Each imported row keeps its coreBOS id
(``corebos_id``; recipients their (crmid, mailid) pair), so a second run adds only what is new
and changes nothing else.  The pairs are what coreBOS's image URLs name: with them, old images
keep counting (tracking/corebos_images.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from .models import AccessEvent, Account, Contact, Email, Lead, Recipient, User
from .records.csv_import import clean_leniently, new_record, opt_out_imported
from .sanitize import clean_html
from .tracking import tokens
from .validation import clean_address, clean_mail_text

OPT_OUT_REASON = "imported from coreBOS"
NO_NAME = "(no name)"
# What the import reads; a database without vtiger_crmentity is not coreBOS at all.
TABLES = ("vtiger_crmentity", "vtiger_account", "vtiger_contactdetails", "vtiger_leaddetails", "vtiger_activity",
          "vtiger_emaildetails", "vtiger_seactivityrel", "vtiger_email_track", "vtiger_email_access")
# MySQL's error numbers, told in words (the driver's own text may name the user or host in full).
_ERRORS = {1045: "the user name or password was refused", 1044: "that user may not read the database",
           1049: "there is no such database", 2003: "cannot reach the server", 2005: "unknown server host",
           1146: "a table is missing"}

Rows = list[Any]
Progress = Callable[[str, Rows], Iterable[Any]]


class CoreBOSError(Exception):
    """The source cannot be imported: one line, no password."""


@dataclass
class Stage:
    found: int = 0
    new: int = 0


@dataclass
class ImportReport:
    stages: dict[str, Stage] = field(default_factory=lambda: {name: Stage() for name in (
        "accounts", "contacts", "leads", "emails", "recipients", "events")})
    opted_out: int = 0
    # Recipients whose coreBOS count is not the number of its access rows (kept: coreBOS's count).
    counts_differ: int = 0
    # Links to a record that was not imported (deleted, converted) or has no address.
    unlinked: int = 0
    # Values the form would refuse (a javascript: website, a bad address, a line break...), left
    # out: "contacts email" -> how many.
    left_out: Counter[str] = field(default_factory=Counter)

    def lines(self, dry_run: bool = False) -> list[str]:
        verb = "would import" if dry_run else "imported"
        lines = [f"{name}: {stage.found} in coreBOS, {verb} {stage.new} new" for name, stage in self.stages.items()]
        lines.append(f"opted out on import: {self.opted_out}")
        lines.append(f"recipients whose coreBOS count differs from its access rows (coreBOS's count kept): "
                     f"{self.counts_differ}")
        if self.unlinked:
            lines.append(f"links skipped (record deleted, converted or without an address): {self.unlinked}")
        if self.left_out:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(self.left_out.items()))
            lines.append(f"values left out (the form would refuse them): {counts}")
        return lines


def source_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise CoreBOSError("--from: not a database URL (mysql+pymysql://user:password@host/database)") from None
    if url.get_backend_name() not in ("mysql", "mariadb") or not url.database:
        raise CoreBOSError(f"--from: {url.render_as_string(hide_password=True)} is not a MySQL URL with a database "
                           f"(mysql+pymysql://user:password@host/database)")
    return url


def connect(raw: str) -> Engine:
    """An engine on the coreBOS database whose sessions cannot write; CoreBOSError if it is not one."""
    url = source_url(raw)
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (NoSuchModuleError, ImportError):
        raise CoreBOSError(f"{url.drivername}: driver not installed (pip install 'coretrack[corebos]')") from None

    @event.listens_for(engine, "connect")
    def read_only(connection: Any, _record: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")

    try:
        with engine.connect() as connection:
            present = set(connection.scalars(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")))
    except DBAPIError as exc:
        engine.dispose()
        raise CoreBOSError(f"{shown}: {describe(exc)}") from None
    present = {name.lower() for name in present}
    if "vtiger_crmentity" not in present:
        engine.dispose()
        raise CoreBOSError(f"{shown}: not a coreBOS database (no vtiger_crmentity table)")
    missing = [table for table in TABLES if table not in present]
    if missing:
        engine.dispose()
        raise CoreBOSError(f"{shown}: not a complete coreBOS database (missing {', '.join(missing)})")
    return engine


def describe(exc: DBAPIError) -> str:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return _ERRORS.get(code, type(exc.orig).__name__) if isinstance(code, int) else type(exc.orig).__name__


def _when(day: date | None, at: datetime | str | None) -> datetime | None:
    if isinstance(at, datetime):
        return at
    if day is None:
        return None
    if isinstance(at, str) and at:
        try:
            return datetime.combine(day, time.fromisoformat(at))
        except ValueError:
            pass
    return datetime.combine(day, time())


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


class Importer:
    def __init__(self, source: Engine, target: Session, secret: bytes, progress: Progress | None = None):
        self.source, self.target, self.secret = source, target, secret
        self.progress: Progress = progress or (lambda _stage, rows: rows)
        self.report = ImportReport()

    def _read(self, statement: str) -> Rows:
        with self.source.connect() as connection:
            return list(connection.execute(text(statement)))

    def _stage(self, name: str, rows: Rows) -> Iterator[Any]:
        self.report.stages[name].found = len(rows)
        yield from self.progress(name, rows)

    def run(self, dry_run: bool = False) -> ImportReport:
        """Imports what is new; commits unless ``dry_run`` (then everything is rolled back)."""
        try:
            records = self._records()
            self._emails(records)
        except DBAPIError as exc:
            self.target.rollback()
            if exc.orig is not None and type(exc.orig).__module__.startswith("pymysql"):
                raise CoreBOSError(f"reading coreBOS: {describe(exc)}") from None
            raise
        if dry_run:
            self.target.rollback()
        else:
            self.target.commit()
        return self.report

    def _known(self, model: Any) -> dict[int, Any]:
        return {row.corebos_id: row for row in self.target.scalars(select(model).where(model.corebos_id.is_not(None)))}

    def _record(self, record_type: str, raw: dict[str, Any], placeholders: dict[str, str],
                **extra: Any) -> Account | Contact | Lead:
        """A record of coreBOS's values as the form's checks clean them: a value the form refuses is
        left out and counted (never shown: it may be personal data), an empty required one is given
        its placeholder."""
        values, left_out = clean_leniently(self.target, record_type, {name: _raw(value) for name, value in raw.items()})
        for name in left_out:
            self.report.left_out[f"{record_type}s {name}"] += 1
        for name, placeholder in placeholders.items():
            values[name] = values[name] or placeholder
        record = new_record(record_type, values, OPT_OUT_REASON, **extra)
        if record.email_opt_out:
            self.report.opted_out += 1
        assert isinstance(record, Account | Contact | Lead)
        return record

    def _checked(self, name: str, value: Any, check: Callable[[str], str]) -> str:
        """``value`` as ``check`` cleans it, or left out (empty) and counted if it refuses it."""
        raw = _raw(value).strip()
        try:
            return check(raw) if raw else ""
        except ValueError:
            self.report.left_out[name] += 1
            return ""

    def _records(self) -> dict[int, Account | Contact | Lead]:
        live = "JOIN vtiger_crmentity e ON e.crmid = {} AND e.deleted = 0"
        accounts = self._known(Account)
        for row in self._stage("accounts", self._read(
                "SELECT a.accountid, a.accountname, a.email1, a.phone, a.website, a.emailoptout, e.createdtime "
                "FROM vtiger_account a " + live.format("a.accountid") + " ORDER BY a.accountid")):
            if row.accountid in accounts:
                continue
            account = self._record("account", {
                "name": row.accountname, "email": row.email1, "phone": row.phone, "website": row.website,
                "email_opt_out": row.emailoptout}, {"name": f"coreBOS {row.accountid}"},
                corebos_id=row.accountid, created_at=row.createdtime)
            accounts[row.accountid] = account
            self.target.add(account)
            self.report.stages["accounts"].new += 1
        self.target.flush()
        contacts = self._known(Contact)
        for row in self._stage("contacts", self._read(
                "SELECT c.contactid, c.firstname, c.lastname, c.email, c.phone, c.accountid, c.emailoptout, "
                "e.createdtime FROM vtiger_contactdetails c " + live.format("c.contactid") + " ORDER BY c.contactid")):
            if row.contactid in contacts:
                continue
            employer = accounts.get(row.accountid) if row.accountid else None
            contact = self._record("contact", {
                "first_name": row.firstname, "last_name": row.lastname, "email": row.email, "phone": row.phone,
                "email_opt_out": row.emailoptout}, {"last_name": NO_NAME},
                corebos_id=row.contactid, account=employer, created_at=row.createdtime)
            contacts[row.contactid] = contact
            self.target.add(contact)
            self.report.stages["contacts"].new += 1
        leads = self._known(Lead)
        for row in self._stage("leads", self._read(
                "SELECT l.leadid, l.firstname, l.lastname, l.company, l.email, l.emailoptout, e.createdtime "
                "FROM vtiger_leaddetails l " + live.format("l.leadid") + " WHERE l.converted = 0 ORDER BY l.leadid")):
            if row.leadid in leads:
                continue
            lead = self._record("lead", {
                "first_name": row.firstname, "last_name": row.lastname, "company": row.company, "email": row.email,
                "email_opt_out": row.emailoptout}, {"last_name": NO_NAME},
                corebos_id=row.leadid, created_at=row.createdtime)
            leads[row.leadid] = lead
            self.target.add(lead)
            self.report.stages["leads"].new += 1
        found = {**accounts, **contacts, **leads}  # crmids are unique across coreBOS's modules
        opt_out_imported(self.target, list(found.values()))
        self.target.flush()
        return found

    def _emails(self, records: dict[int, Account | Contact | Lead]) -> None:
        sender = self.target.scalars(select(User).order_by(User.role != "admin", User.id)).first()
        if sender is None:
            raise CoreBOSError("no coretrack user to own the imported email: run 'coretrack db upgrade' first")
        emails = self._known(Email)
        for row in self._stage("emails", self._read(
                "SELECT a.activityid, a.subject, a.date_start, a.time_start, d.from_email, e.description, "
                "e.createdtime FROM vtiger_activity a JOIN vtiger_emaildetails d ON d.emailid = a.activityid "
                "JOIN vtiger_crmentity e ON e.crmid = a.activityid AND e.deleted = 0 "
                "WHERE a.activitytype = 'Emails' ORDER BY a.activityid")):
            if row.activityid in emails:
                continue
            sent_at = _when(row.date_start, row.time_start) or row.createdtime
            # As the compose form has them: the subject one line for a header, the HTML cleaned.
            subject = self._checked("emails subject", row.subject,
                                    lambda value: clean_mail_text(value, field="subject", max_length=998))
            email = Email(corebos_id=row.activityid, subject=subject or "(no subject)",
                          html_body=clean_html(row.description or ""), sender_id=sender.id,
                          from_address=self._checked("emails from_address", row.from_email, clean_address),
                          status="sent", tracking=True,
                          created_at=row.createdtime or sent_at, sent_at=sent_at)
            emails[row.activityid] = email
            self.target.add(email)
            self.report.stages["emails"].new += 1
        self.target.flush()

        counts = {(row.crmid, row.mailid): row.access_count or 0 for row in self._read(
            "SELECT crmid, mailid, access_count FROM vtiger_email_track "
            "WHERE crmid IS NOT NULL AND mailid IS NOT NULL")}
        accesses: dict[tuple[int, int], list[datetime]] = {}
        for row in self._read("SELECT crmid, mailid, accessdate, accesstime FROM vtiger_email_access "
                              "WHERE crmid IS NOT NULL AND mailid IS NOT NULL"):
            at = _when(row.accessdate, row.accesstime)
            if at is not None:
                accesses.setdefault((row.crmid, row.mailid), []).append(at)
        links = {(row.crmid, row.activityid)
                 for row in self._read("SELECT crmid, activityid FROM vtiger_seactivityrel")}
        # A recipient per record an email was linked to or tracked for (an email deleted in coreBOS: none).
        pairs = sorted(pair for pair in links | counts.keys() | accesses.keys() if pair[1] in emails)
        known = select(Recipient.corebos_crmid, Recipient.corebos_mailid).where(Recipient.corebos_mailid.is_not(None))
        known_pairs = {(crmid, mailid) for crmid, mailid in self.target.execute(known)}
        new_events: Counter[str] = Counter()
        for crmid, mailid in self._stage("recipients", pairs):
            if (crmid, mailid) in known_pairs:
                continue
            record = records.get(crmid)
            if record is None or not record.email:
                self.report.unlinked += 1
                continue
            times = sorted(accesses.get((crmid, mailid), []))
            count = counts.get((crmid, mailid), len(times))
            if count != len(times):
                self.report.counts_differ += 1
            email = emails[mailid]
            recipient = Recipient(email_id=email.id, address=record.email, name=record.display_name[:200],
                                  token=tokens.new_token(self.secret), status="sent", sent_at=email.sent_at,
                                  corebos_crmid=crmid, corebos_mailid=mailid, access_count=count,
                                  first_access=times[0] if times else None, last_access=times[-1] if times else None,
                                  **{f"{record.record_type}_id": record.id})
            self.target.add(recipient)
            self.target.flush()
            self.target.add_all(AccessEvent(recipient_id=recipient.id, at=at, legacy=True) for at in times)
            self.report.stages["recipients"].new += 1
            new_events["events"] += len(times)
        self.report.stages["events"].found = sum(len(times) for times in accesses.values())
        self.report.stages["events"].new = new_events["events"]
