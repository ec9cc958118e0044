"""One import of a coreBOS install: its schema checked, then owners, records, emails, drafts, recipients
and opens, in one transaction (committed at the end, or rolled back on a dry run or an error)."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .addresses import EmailField
from .emails import EmailImport
from .owners import Owners
from .records import DEFAULT_FIELDS, RecordImport
from .report import ImportReport, Progress, no_progress
from .source import CoreBOSError, Schema, describe
from .times import Clock

# coreBOS's uitypes of an email field (13) and of a user's address (104).
EMAIL_UITYPES = ("13", "104")


class Importer:
    def __init__(self, source: Engine, schema: Schema, target: Session, secret: bytes, clock: Clock,
                 progress: Progress | None = None):
        self.source, self.schema, self.target, self.secret, self.clock = source, schema, target, secret, clock
        self.progress: Progress = progress or no_progress
        self.report = ImportReport()

    def email_fields(self) -> tuple[dict[int, EmailField], set[int]]:
        """vtiger_field's email fields by fieldid (with the import's tables), and those of Users."""
        if not self.schema.has("vtiger_field", "fieldid"):
            return {-index - 2: each for index, each in enumerate(f for kind in DEFAULT_FIELDS.values()
                                                                   for f in kind)}, set()
        with self.source.connect() as connection:
            rows = list(connection.execute(text(
                "SELECT f.fieldid, t.name, f.tablename, f.columnname FROM vtiger_field f "
                "JOIN vtiger_tab t ON t.tabid = f.tabid WHERE f.uitype IN ('13', '104')")))
        fields = {int(row.fieldid): EmailField(str(row.name), str(row.tablename).lower(), str(row.columnname).lower())
                  for row in rows}
        users = {fieldid for fieldid, each in fields.items() if each.module == "Users"}
        # Only columns that are there (a custom field's table may be elsewhere: its address is not read).
        return {fieldid: each for fieldid, each in fields.items()
                if fieldid not in users and self.schema.has(each.table, each.column)}, users

    def run(self, dry_run: bool = False) -> ImportReport:
        """Imports what is new; commits unless ``dry_run`` (then everything is rolled back)."""
        self.report.schema_notes = list(self.schema.missing_optional())
        if self.schema.denormalized_others:
            others = ", ".join(sorted(self.schema.denormalized_others))
            self.report.schema_notes.append(f"modules with their own entity table, not imported: {others}")
        try:
            fields, user_fields = self.email_fields()
            owners = Owners(self.source, self.target, self.report, self.schema.has("vtiger_users", "id"))
            if owners.fallback is None:
                raise CoreBOSError("no coretrack user to own the imported email: run 'coretrack db upgrade' first")
            records = RecordImport(self.source, self.target, self.schema, self.clock, self.report, fields,
                                   self.progress).run()
            EmailImport(self.source, self.target, self.schema, self.clock, self.report, self.secret, fields,
                        user_fields, owners, records, self.progress).run()
        except DBAPIError as exc:
            self.target.rollback()
            if exc.orig is not None and type(exc.orig).__module__.startswith("pymysql"):
                raise CoreBOSError(f"reading coreBOS: {describe(exc)}") from None
            raise
        except BaseException:
            self.target.rollback()
            raise
        if dry_run:
            self.target.rollback()
        else:
            self.target.commit()
        return self.report
