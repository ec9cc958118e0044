"""coreBOS's own tables for the import tests: tests/data/corebos/DatabaseSchema.xml (coreBOS's ADOdb AXMLS,
copied verbatim) made into MariaDB DDL as ADOdb's MySQL data dictionary makes it, the rows a just-installed
coreBOS holds, its updates' statements (changesets.sql) and its run-time statements (statements.sql).

Two shapes: "old" is the schema as DatabaseSchema.xml has it (accesstime a DATETIME, leads without
emailoptout, no convertedfromlead, no denormalised modules); "current" has the updates applied."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "corebos"
SHAPES = ("old", "current")
# ADOdb's datadict-mysql ActualType for the AXMLS types these tables use.
_TYPES = {"C": "VARCHAR", "X": "TEXT", "XL": "LONGTEXT", "D": "DATE", "T": "DATETIME", "I": "INTEGER",
          "I1": "TINYINT", "I2": "SMALLINT", "I8": "BIGINT", "L": "TINYINT", "N": "NUMERIC", "F": "DOUBLE"}
# The column order of the just-installed dump's rows (install-data.sql); its vtiger_field rows carry a
# later helpinfo column, its entityname rows the denormalize changeset's two: cut to the schema's columns.
_COLUMNS = {
    "vtiger_tab": ("tabid", "name", "presence", "tabsequence", "tablabel", "modifiedby", "modifiedtime",
                   "customized", "ownedby", "isentitytype", "version", "parent"),
    "vtiger_entityname": ("tabid", "modulename", "tablename", "fieldname", "entityidfield", "entityidcolumn",
                          "isdenormalized", "denormtable"),
    "vtiger_field": ("tabid", "fieldid", "columnname", "tablename", "generatedtype", "uitype", "fieldname",
                     "fieldlabel", "readonly", "presence", "defaultvalue", "maximumlength", "sequence", "block",
                     "displaytype", "typeofdata", "quickcreate", "quickcreatesequence", "info_type", "masseditable"),
}


def _column(field: ET.Element) -> tuple[str, bool]:
    """A field's column definition, and whether it is (part of) the primary key."""
    kind = _TYPES[field.attrib["type"]]
    size = field.get("size")
    sql = f"`{field.attrib['name']}` {kind}({size})" if size else f"`{field.attrib['name']}` {kind}"
    if field.find("notnull") is not None:
        sql += " NOT NULL"
    default = field.find("default")
    if default is not None:
        sql += " DEFAULT '{}'".format(default.attrib["value"].replace("'", "''"))
    if field.find("deftimestamp") is not None:
        sql += " DEFAULT CURRENT_TIMESTAMP"
    if field.find("autoincrement") is not None:
        sql += " AUTO_INCREMENT"
    if field.find("unique") is not None:
        sql += " UNIQUE"
    return sql, field.find("key") is not None


def ddl() -> list[str]:
    """DatabaseSchema.xml's tables as MariaDB statements: every CREATE TABLE, then the ALTERs adding the
    foreign keys (coreBOS's installer runs them after all tables exist)."""
    creates, alters = [], []
    for table in ET.parse(DATA / "DatabaseSchema.xml").getroot().iter("table"):
        name = table.attrib["name"]
        if table.get("alter") == "true":
            alters += [f"ALTER TABLE {name} {constraint.text}" for constraint in table.iter("constraint")]
            continue
        lines, keys = [], []
        for field in table.iter("field"):
            column, key = _column(field)
            lines.append(column)
            if key:
                keys.append(f"`{field.attrib['name']}`")
        if keys:
            lines.append(f"PRIMARY KEY ({', '.join(keys)})")
        for index in table.iter("index"):
            columns = ", ".join(f"`{col.text}`" for col in index.iter("col"))
            unique = "UNIQUE " if index.find("unique") is not None else ""
            lines.append(f"{unique}KEY `{index.attrib['name']}` ({columns})")
        options = " ".join(opt.text or "" for opt in table.iter("opt") if opt.get("platform", "mysql") == "mysql")
        creates.append(f"CREATE TABLE {name} (\n  " + ",\n  ".join(lines) + f"\n) {options} DEFAULT CHARSET=utf8")
    return creates + alters


def _values(text: str) -> list[str | None]:
    """The SQL values of a dump's row, ``(1,'a',NULL)``, as Python values (strings; NULL None)."""
    found: list[str | None] = []
    for quoted, bare in re.findall(r"'((?:[^'\\]|\\.)*)'|([^,()\s]+)", text):
        found.append(quoted if bare == "" else (None if bare == "NULL" else bare))
    return found


def _row_insert(line: str) -> tuple[str, list[str | None]]:
    table, _, row = line.partition(" ")
    values = _values(row.rstrip(";"))
    columns = _COLUMNS[table]
    if table == "vtiger_entityname":
        columns = columns[:6]  # the denormalize changeset's columns come later, their defaults these rows' values
    values = values[:len(columns)]
    marks = ", ".join(["%s"] * len(values))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values


def install_rows() -> list[tuple[str, list[str | None]]]:
    """The just-installed rows of the modules the import reads (install-data.sql)."""
    lines = (DATA / "install-data.sql").read_text().splitlines()
    return [_row_insert(line) for line in lines if line and not line.startswith("--")]


@cache
def _named(file: str) -> dict[str, list[str]]:
    """The statements of a .sql file of ours under each ``-- name:`` line (comments dropped)."""
    named: dict[str, list[str]] = {}
    current: list[str] = []
    statement = ""
    for line in (DATA / file).read_text().splitlines():
        if line.startswith("-- name: "):
            current = named.setdefault(line.removeprefix("-- name: ").strip(), [])
        elif line.strip() and not line.startswith("--"):
            statement += line + "\n"
            if line.rstrip().endswith(";"):
                current.append(statement.strip().rstrip(";"))
                statement = ""
    return named


def changeset(name: str) -> list[tuple[str, list[str | None]]]:
    """The statements of one of coreBOS's updates (changesets.sql), as (sql, parameters)."""
    found = []
    for statement in _named("changesets.sql")[name]:
        if statement.startswith("vtiger_field "):
            found.append(_row_insert(statement))
        else:
            found.append((statement, []))
    return found


def statement(name: str, *names: str) -> str:
    """One of coreBOS's run-time statements (statements.sql) for pymysql: ADOdb's %s (table or column
    names: ours, never input) filled with ``names`` in order, then its ? placeholders made %s."""
    (sql,) = _named("statements.sql")[name]
    for each in names:
        sql = sql.replace("%s", each, 1)
    return sql.replace("?", "%s")


def create(execute: Callable[[str, list[str | None] | None], object], shape: str) -> None:
    """Makes coreBOS's tables of ``shape`` through ``execute(sql, params)`` (a root connection's cursor)."""
    assert shape in SHAPES, shape
    for sql in ddl():
        execute(sql, None)
    for sql, values in install_rows():
        execute(sql, values)
    if shape == "current":
        for name in ("lead_email_opt_out", "converted_from_lead", "access_time", "denormalize"):
            for sql, values in changeset(name):
                execute(sql, values or None)
