"""coreBOS's accounts, contacts and leads, made coretrack's records, and every address they were mailed at.

Live records only (``deleted = 0`` in their entity table); leads not converted.  Each value goes through
the form's checks (a refused one is left out and counted, never printed).  Beside the records, what the
recipients need: each record's email fields (every column a ``vtiger_field`` email field names, so a
recipient mailed at a secondary address is found), and which contact or account each converted lead
became (``convertedfromlead``, written by ConvertLead.php).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from ..models import Account, Contact, Lead
from ..records.csv_import import clean_leniently, new_record, opt_out_imported
from .addresses import EmailField
from .report import ImportReport
from .source import Schema
from .times import Clock

OPT_OUT_REASON = "imported from coreBOS"
NO_NAME = "(no name)"
Record = Account | Contact | Lead
Progress = Callable[[str, list[Any]], Iterable[Any]]
# A kind of record: its coreBOS module, table, id column and primary email column.
KINDS = {"account": ("Accounts", "vtiger_account", "accountid", "email1"),
         "contact": ("Contacts", "vtiger_contactdetails", "contactid", "email"),
         "lead": ("Leads", "vtiger_leaddetails", "leadid", "email")}
# Email fields when vtiger_field cannot say (a copy without it): the primary ones.
DEFAULT_FIELDS = {kind: [EmailField(module, table, primary)] for kind, (module, table, _, primary) in KINDS.items()}


@dataclass
class Records:
    """The records imported (by crmid: coreBOS's ids are unique across its modules) and what a
    recipient needs of every record, imported or converted."""

    imported: dict[int, Record] = field(default_factory=dict)
    kind: dict[int, str] = field(default_factory=dict)  # crmid -> account | contact | lead
    addresses: dict[int, dict[str, str]] = field(default_factory=dict)  # crmid -> column -> address
    became: dict[int, int] = field(default_factory=dict)  # converted leadid -> the crmid it became


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


class RecordImport:
    def __init__(self, source: Engine, target: Session, schema: Schema, clock: Clock, report: ImportReport,
                 fields: dict[int, EmailField], stage: Callable[[str, list[Any]], Iterator[Any]]):
        self.source, self.target, self.schema, self.clock, self.report = source, target, schema, clock, report
        self.stage = stage
        self.columns = {kind: sorted({f.column for f in fields.values() if f.table == table}
                                     | {primary}) for kind, (_, table, _, primary) in KINDS.items()}

    def _read(self, statement: str) -> list[Any]:
        with self.source.connect() as connection:
            return list(connection.execute(text(statement)))

    def _known(self, model: Any) -> dict[int, Any]:
        return {row.corebos_id: row for row in self.target.scalars(select(model).where(model.corebos_id.is_not(None)))}

    def _select(self, kind: str, columns: str, joins: str = "") -> list[Any]:
        module, table, key, _ = KINDS[kind]
        emails = "".join(f", x.{column} AS mail_{column}" for column in self.columns[kind])
        entity = self.schema.entity_table(module)
        return self._read(f"SELECT x.{key} AS crmid, {columns}{emails}, e.createdtime FROM {table} x "  # noqa: S608
                          f"JOIN {entity} e ON e.crmid = x.{key} AND e.deleted = 0 {joins} ORDER BY x.{key}")

    def _addresses(self, kind: str, row: Any) -> None:
        self.records.kind[row.crmid] = kind
        self.records.addresses[row.crmid] = {column: _raw(getattr(row, f"mail_{column}")).strip()
                                             for column in self.columns[kind]}

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

    def _add(self, kind: str, crmid: int, record: Record) -> None:
        self.records.imported[crmid] = record
        self.target.add(record)
        self.report.stages[f"{kind}s"].new += 1

    def run(self) -> Records:
        self.records = Records()
        converted_from = ", x.convertedfromlead" if self.schema.has("vtiger_account", "convertedfromlead") else ""
        accounts = self._known(Account)
        for row in self.stage("accounts", self._select(
                "account", f"x.accountname, x.email1, x.phone, x.website, x.emailoptout{converted_from}")):
            self._addresses("account", row)
            self._became(row)
            if row.crmid in accounts:
                self.records.imported[row.crmid] = accounts[row.crmid]
                continue
            self._add("account", row.crmid, self._record("account", {
                "name": row.accountname, "email": row.email1, "phone": row.phone, "website": row.website,
                "email_opt_out": row.emailoptout}, {"name": f"coreBOS {row.crmid}"},
                corebos_id=row.crmid, created_at=self.clock.created(row.createdtime)))
        self.target.flush()
        self._contacts()
        self._leads()
        opt_out_imported(self.target, list(self.records.imported.values()))
        self.target.flush()
        return self.records

    def _became(self, row: Any) -> None:
        lead = getattr(row, "convertedfromlead", None)
        if lead:
            # A contact wins over an account: ConvertLead.php moves the emails to the contact by default.
            if self.records.kind.get(self.records.became.get(int(lead), 0)) != "contact":
                self.records.became[int(lead)] = row.crmid

    def _contacts(self) -> None:
        followed = self.schema.has("vtiger_contactdetails", "convertedfromlead")
        converted_from = ", x.convertedfromlead" if followed else ""
        contacts = self._known(Contact)
        for row in self.stage("contacts", self._select(
                "contact", f"x.firstname, x.lastname, x.email, x.phone, x.accountid, x.emailoptout{converted_from}")):
            self._addresses("contact", row)
            self._became(row)
            if row.crmid in contacts:
                self.records.imported[row.crmid] = contacts[row.crmid]
                continue
            employer = self.records.imported.get(row.accountid) if row.accountid else None
            self._add("contact", row.crmid, self._record("contact", {
                "first_name": row.firstname, "last_name": row.lastname, "email": row.email, "phone": row.phone,
                "email_opt_out": row.emailoptout}, {"last_name": NO_NAME},
                corebos_id=row.crmid, account=employer if isinstance(employer, Account) else None,
                created_at=self.clock.created(row.createdtime)))

    def _leads(self) -> None:
        optout = ", x.emailoptout" if self.schema.has("vtiger_leaddetails", "emailoptout") else ", '0' AS emailoptout"
        phone = ", p.phone AS leadphone" if self.schema.has("vtiger_leadaddress", "phone") else ", '' AS leadphone"
        join = "LEFT JOIN vtiger_leadaddress p ON p.leadaddressid = x.leadid" if "p.phone" in phone else ""
        leads = self._known(Lead)
        rows = self._select("lead", f"x.firstname, x.lastname, x.company, x.email, x.converted{optout}{phone}",
                            join)
        live = [row for row in rows if not row.converted]
        for row in rows:
            self._addresses("lead", row)  # a converted lead's too: its old email went to one of them
        for row in self.stage("leads", live):
            if row.crmid in leads:
                self.records.imported[row.crmid] = leads[row.crmid]
                continue
            self._add("lead", row.crmid, self._record("lead", {
                "first_name": row.firstname, "last_name": row.lastname, "company": row.company, "email": row.email,
                "phone": row.leadphone, "email_opt_out": row.emailoptout}, {"last_name": NO_NAME},
                corebos_id=row.crmid, created_at=self.clock.created(row.createdtime)))
