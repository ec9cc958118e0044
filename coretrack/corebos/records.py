"""coreBOS's accounts, contacts and leads, made coretrack's records, and every address they were mailed at.

Live records only (``deleted = 0`` in their entity table); leads not converted.  Each value goes through
the form's checks (a refused one is left out and counted, never printed).  Beside the records, what the
recipients need of every record, imported or converted (``Known``): its email fields (every column a
``vtiger_field`` email field names, so a recipient mailed at a secondary address is found), and which
contact or account each converted lead became (``convertedfromlead``, written by ConvertLead.php).

Read a batch at a time from a server-side cursor and written a batch at a time; the session is emptied
after each, so memory holds the small ``Known`` per record, not the records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..models import Account, Contact, Lead
from ..records.csv_import import clean_leniently, new_record, opt_out_imported
from .addresses import EmailField
from .report import ImportReport, Progress
from .source import Schema, count, stream
from .times import Clock

OPT_OUT_REASON = "imported from coreBOS"
NO_NAME = "(no name)"
Record = Account | Contact | Lead
MODELS: dict[str, Any] = {"account": Account, "contact": Contact, "lead": Lead}
# A kind of record: its coreBOS module, table, id column and primary email column.
KINDS = {"account": ("Accounts", "vtiger_account", "accountid", "email1"),
         "contact": ("Contacts", "vtiger_contactdetails", "contactid", "email"),
         "lead": ("Leads", "vtiger_leaddetails", "leadid", "email")}
# Email fields when vtiger_field cannot say (a copy without it): the primary ones.
DEFAULT_FIELDS = {kind: [EmailField(module, table, primary)] for kind, (module, table, _, primary) in KINDS.items()}


@dataclass(frozen=True, slots=True)
class Known:
    """What a recipient needs of a coreBOS record: its kind, the coretrack record's id and name (None
    for a converted lead), and its addresses by email column (the non-empty ones)."""

    kind: str
    id: int | None
    name: str
    addresses: tuple[tuple[str, str], ...]


@dataclass
class Records:
    known: dict[int, Known] = field(default_factory=dict)  # by crmid (unique across coreBOS's modules)
    became: dict[int, int] = field(default_factory=dict)  # converted leadid -> the crmid it became


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


class RecordImport:
    def __init__(self, source: Engine, target: Session, schema: Schema, clock: Clock, report: ImportReport,
                 fields: dict[int, EmailField], progress: Progress):
        self.source, self.target, self.schema, self.clock, self.report = source, target, schema, clock, report
        self.progress = progress
        self.columns = {kind: sorted({f.column for f in fields.values() if f.table == table}
                                     | {primary}) for kind, (_, table, _, primary) in KINDS.items()}
        self.records = Records()

    def _from(self, kind: str, joins: str = "") -> str:
        module, table, key, _ = KINDS[kind]
        return (f"FROM {table} x JOIN {self.schema.entity_table(module)} e ON e.crmid = x.{key} "
                f"AND e.deleted = 0 {joins}")

    def _rows(self, kind: str, columns: str, joins: str = "", where: str = "") -> tuple[int, Any]:
        """How many live rows of ``kind`` there are, and their batches."""
        emails = "".join(f", x.{column} AS mail_{column}" for column in self.columns[kind])
        key = KINDS[kind][2]
        total = count(self.source, f"SELECT count(*) {self._from(kind)} {where}")
        return total, stream(self.source, f"SELECT x.{key} AS crmid, {columns}{emails}, e.createdtime "  # noqa: S608
                                          f"{self._from(kind, joins)} {where} ORDER BY x.{key}")

    def _addresses(self, kind: str, row: Any) -> tuple[tuple[str, str], ...]:
        values = ((column, _raw(getattr(row, f"mail_{column}")).strip()) for column in self.columns[kind])
        return tuple((column, value) for column, value in values if value)

    def _record(self, record_type: str, raw: dict[str, Any], placeholders: dict[str, str],
                **extra: Any) -> Record:
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

    def _batch(self, kind: str, rows: Sequence[Any], make: Any) -> None:
        """One batch: the rows not yet imported made records (``make(row)``) and written, every row known."""
        model = MODELS[kind]
        imported: dict[int, Record] = {record.corebos_id: record for record in self.target.scalars(
            select(model).where(model.corebos_id.in_([row.crmid for row in rows])))}
        new = {row.crmid: make(row) for row in rows if row.crmid not in imported}
        opt_out_imported(self.target, list(new.values()))
        self.target.add_all(new.values())
        self.target.flush()
        self.report.stages[f"{kind}s"].new += len(new)
        for row in rows:
            record = imported.get(row.crmid) or new[row.crmid]
            self.records.known[row.crmid] = Known(kind, record.id, record.display_name[:200],
                                                  self._addresses(kind, row))
        self.target.expunge_all()  # memory bounded by the batch

    def _stage(self, kind: str, columns: str, make: Any, joins: str = "", where: str = "") -> None:
        total, batches = self._rows(kind, columns, joins, where)
        self.report.stages[f"{kind}s"].found = total
        with self.progress(f"{kind}s", total) as advance:
            for rows in batches:
                for row in rows:
                    self._became(row)
                self._batch(kind, rows, make)
                advance(len(rows))

    def run(self) -> Records:
        converted_from = ", x.convertedfromlead" if self.schema.has("vtiger_account", "convertedfromlead") else ""
        self._stage("account", f"x.accountname, x.email1, x.phone, x.website, x.emailoptout{converted_from}",
                    lambda row: self._record("account", {
                        "name": row.accountname, "email": row.email1, "phone": row.phone, "website": row.website,
                        "email_opt_out": row.emailoptout}, {"name": f"coreBOS {row.crmid}"},
                        corebos_id=row.crmid, created_at=self.clock.created(row.createdtime)))
        followed = self.schema.has("vtiger_contactdetails", "convertedfromlead")
        converted_from = ", x.convertedfromlead" if followed else ""
        self._stage("contact", f"x.firstname, x.lastname, x.email, x.phone, x.accountid, x.emailoptout{converted_from}",
                    self._contact)
        self._leads()
        return self.records

    def _contact(self, row: Any) -> Record:
        employer = self.records.known.get(row.accountid) if row.accountid else None
        return self._record("contact", {
            "first_name": row.firstname, "last_name": row.lastname, "email": row.email, "phone": row.phone,
            "email_opt_out": row.emailoptout}, {"last_name": NO_NAME}, corebos_id=row.crmid,
            account_id=employer.id if employer is not None and employer.kind == "account" else None,
            created_at=self.clock.created(row.createdtime))

    def _became(self, row: Any) -> None:
        lead = getattr(row, "convertedfromlead", None)
        if lead:
            # A contact wins over an account: ConvertLead.php moves the emails to the contact by default.
            earlier = self.records.known.get(self.records.became.get(int(lead), 0))
            if earlier is None or earlier.kind != "contact":
                self.records.became[int(lead)] = row.crmid

    def _leads(self) -> None:
        optout = ", x.emailoptout" if self.schema.has("vtiger_leaddetails", "emailoptout") else ", '0' AS emailoptout"
        with_phone = self.schema.has("vtiger_leadaddress", "phone")
        phone = ", p.phone AS leadphone" if with_phone else ", '' AS leadphone"
        join = "LEFT JOIN vtiger_leadaddress p ON p.leadaddressid = x.leadid" if with_phone else ""
        self._stage("lead", f"x.firstname, x.lastname, x.company, x.email{optout}{phone}",
                    lambda row: self._record("lead", {
                        "first_name": row.firstname, "last_name": row.lastname, "company": row.company,
                        "email": row.email, "phone": row.leadphone, "email_opt_out": row.emailoptout},
                        {"last_name": NO_NAME}, corebos_id=row.crmid, created_at=self.clock.created(row.createdtime)),
                    join, "WHERE x.converted = 0")
        # A converted lead's addresses too: its old email went to one of them.
        _, batches = self._rows("lead", "x.leadid", "", "WHERE x.converted <> 0")
        for rows in batches:
            for row in rows:
                self.records.known[row.crmid] = Known("lead", None, "", self._addresses("lead", row))
