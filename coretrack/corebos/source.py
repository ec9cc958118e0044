"""The coreBOS database, only read: connecting in a read-only session, and what its schema holds.

Installs differ by the coreBOS updates they ran and by customisation, so the columns the import needs
are checked before anything is read: a missing required one ends the import naming it and the update
that added it; a missing optional one leaves out only what it holds (``Schema.notes`` says what).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

# What the import reads; a database without vtiger_crmentity is not coreBOS at all.
TABLES = ("vtiger_crmentity", "vtiger_account", "vtiger_contactdetails", "vtiger_leaddetails", "vtiger_activity",
          "vtiger_emaildetails", "vtiger_seactivityrel", "vtiger_email_track", "vtiger_email_access")
# The columns without which nothing can be imported (every coreBOS and vtiger 5 has them).
REQUIRED = {
    "vtiger_crmentity": ("crmid", "smownerid", "setype", "description", "createdtime", "deleted"),
    "vtiger_account": ("accountid", "accountname", "email1", "phone", "website", "emailoptout"),
    "vtiger_contactdetails": ("contactid", "firstname", "lastname", "email", "phone", "accountid", "emailoptout"),
    "vtiger_leaddetails": ("leadid", "firstname", "lastname", "company", "email", "converted"),
    "vtiger_activity": ("activityid", "subject", "activitytype", "date_start", "time_start"),
    "vtiger_emaildetails": ("emailid", "from_email", "to_email", "idlists", "email_flag"),
    "vtiger_seactivityrel": ("crmid", "activityid"),
    "vtiger_email_track": ("crmid", "mailid", "access_count"),
    "vtiger_email_access": ("crmid", "mailid", "accessdate", "accesstime"),
}
# Optional columns: (table, column) -> what is not imported without it, and the update that added it.
OPTIONAL = {
    ("vtiger_leaddetails", "emailoptout"): (
        "leads' email opt-outs (leads imported as not opted out)",
        "coreBOS's 2016 update addLeadEmailOptOutAndConversionRelatedFields (coreBOS 5.5/2016)"),
    ("vtiger_contactdetails", "convertedfromlead"): (
        "which contact a converted lead became (its email history and old images are left out)",
        "coreBOS's 2016 update addLeadEmailOptOutAndConversionRelatedFields (coreBOS 5.5/2016)"),
    ("vtiger_account", "convertedfromlead"): (
        "which account a converted lead became (its email history and old images are left out)",
        "coreBOS's 2016 update addLeadEmailOptOutAndConversionRelatedFields (coreBOS 5.5/2016)"),
    ("vtiger_field", "fieldid"): (
        "which of a record's addresses each email went to (the primary address is taken)",
        "every coreBOS (a damaged or trimmed copy lacks it)"),
    ("vtiger_users", "id"): (
        "the emails' owners (the first coretrack admin owns them)", "every coreBOS (a trimmed copy lacks it)"),
    ("vtiger_leadaddress", "phone"): ("leads' phone numbers", "every coreBOS (a trimmed copy lacks it)"),
}
# The modules read, by coreBOS's module name: their table and id column.
MODULES = {"Accounts": ("vtiger_account", "accountid"), "Contacts": ("vtiger_contactdetails", "contactid"),
           "Leads": ("vtiger_leaddetails", "leadid"), "Emails": ("vtiger_activity", "activityid")}
# Rows read and written together: memory depends on it, not on the install's size.
BATCH = 2000
# MySQL's error numbers, told in words (the driver's own text may name the user or host in full).
_ERRORS = {1045: "the user name or password was refused", 1044: "that user may not read the database",
           1049: "there is no such database", 2003: "cannot reach the server", 2005: "unknown server host",
           1146: "a table is missing", 1054: "a column is missing"}


class CoreBOSError(Exception):
    """The source cannot be imported: one line, no password."""


@dataclass
class Schema:
    """The tables and columns of the coreBOS database, as the import needs to know them."""

    columns: dict[str, set[str]]
    # Module -> the table holding its records' crmentity columns (coreBOS can move a module's out of
    # vtiger_crmentity: include/integrations/denormalize).
    entity_tables: dict[str, str] = field(default_factory=dict)
    # Modules with their own entity table that the import does not read (their records are not imported).
    denormalized_others: list[str] = field(default_factory=list)

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, set())

    def missing_optional(self) -> Iterator[str]:
        """A line per optional column that is missing: what is left out, and why."""
        for (table, column), (lost, added_by) in OPTIONAL.items():
            if not self.has(table, column):
                yield f"no {table}.{column} ({added_by}): not imported: {lost}"

    def entity_table(self, module: str) -> str:
        return self.entity_tables.get(module, "vtiger_crmentity")


def source_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise CoreBOSError("--from: not a database URL (mysql+pymysql://user:password@host/database)") from None
    if url.get_backend_name() not in ("mysql", "mariadb") or not url.database:
        raise CoreBOSError(f"--from: {url.render_as_string(hide_password=True)} is not a MySQL URL with a database "
                           f"(mysql+pymysql://user:password@host/database)")
    return url


def describe(exc: DBAPIError) -> str:
    """The error in words (its number only for one not listed: the driver's text may hold names)."""
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    if isinstance(code, int):
        return _ERRORS.get(code, f"{type(exc.orig).__name__} {code}")
    return type(exc.orig).__name__


def connect(raw: str) -> tuple[Engine, Schema]:
    """An engine on the coreBOS database whose sessions cannot write, and its schema checked;
    CoreBOSError if it is not one or lacks what the import needs."""
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
            # The import reads several server-side cursors in step: one may wait while another is read
            # and the rows are written (MySQL drops a connection its client has not read for 60 s).
            cursor.execute("SET SESSION net_write_timeout = 3600, net_read_timeout = 3600")

    try:
        schema = read_schema(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise CoreBOSError(f"{shown}: {describe(exc)}") from None
    except CoreBOSError as exc:
        engine.dispose()
        raise CoreBOSError(f"{shown}: {exc}") from None
    return engine, schema


def read_schema(engine: Engine) -> Schema:
    """The columns of every table, checked against REQUIRED; the modules' entity tables."""
    columns: dict[str, set[str]] = {}
    with engine.connect() as connection:
        for table, column in connection.execute(text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = DATABASE()")):
            columns.setdefault(str(table).lower(), set()).add(str(column).lower())
        schema = Schema(columns)
        if "vtiger_crmentity" not in columns:
            raise CoreBOSError("not a coreBOS database (no vtiger_crmentity table)")
        missing = [table for table in TABLES if table not in columns]
        if missing:
            raise CoreBOSError(f"not a complete coreBOS database (missing {', '.join(missing)})")
        lacking = [f"{table}.{column}" for table, needed in REQUIRED.items() for column in needed
                   if column not in columns[table] and (table, column) not in OPTIONAL]
        if lacking:
            raise CoreBOSError(f"a customised coreBOS: the import needs {', '.join(lacking)}, which it lacks")
        if schema.has("vtiger_entityname", "denormtable"):
            # include/integrations/denormalize (coreBOS 2020): a module's records and their crmentity
            # columns in a table of its own.
            for module, table in connection.execute(text(
                    "SELECT modulename, denormtable FROM vtiger_entityname "
                    "WHERE denormtable IS NOT NULL AND denormtable <> '' AND denormtable <> 'vtiger_crmentity'")):
                if module in MODULES:
                    schema.entity_tables[str(module)] = str(table).lower()
                else:
                    schema.denormalized_others.append(str(module))
    return schema


def stream(engine: Engine, statement: str) -> Iterator[Sequence[Any]]:
    """The rows of ``statement`` a batch at a time, from a server-side cursor (never all in memory)."""
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True).execute(text(statement))
        # The size given: without it SQLAlchemy's partitions() fetches every row left at once.
        yield from result.partitions(BATCH)


def count(engine: Engine, statement: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(statement)).scalar() or 0)
