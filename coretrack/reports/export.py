"""The reports as files: CSV (streamed, safe to open in a spreadsheet) and JSON rows."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .. import localtime
from ..models import utc_iso
from .activity import ActivityReport
from .filters import Filters
from .report import Column, Report, Row

# OWASP "CSV injection": a spreadsheet runs a cell starting with one of = + - @ tab CR as a formula.
# One that ignores quotes may split a cell on , ; tab | or a line break and trim spaces, so every such
# part counts as the start of a cell: a quote goes just before its first character.
FORMULA_FIELD = re.compile(r"(?:^|(?<=[,;|\t\r\n]))( *)(?=[=+\-@\t\r])")


def csv_cell(value: object, time_zone: ZoneInfo | None = None) -> str | int | float:
    """A cell as text a spreadsheet shows and never runs (OWASP CSV injection: prefix a quote);
    times in ``time_zone`` (UTC if None), without an offset: the column's header names the zone."""
    if value is None:
        return ""
    if isinstance(value, bool):  # a flag column (before int: a bool is one)
        return "yes" if value else "no"
    if isinstance(value, datetime):
        local = localtime.local(value, time_zone or ZoneInfo("UTC"))
        return local.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (int, float)):
        return value
    return FORMULA_FIELD.sub(r"\1'", str(value))


def csv_lines(session_factory: Callable[[], Session], report: Report, filters: Filters,
              chunk_rows: int = 500) -> Iterator[bytes]:
    """The whole report as RFC 4180 CSV (CRLF, every cell quoted, quotes doubled), UTF-8 with a BOM.

    Yields as it reads, with a session of its own: the request's is closed before a streamed body is sent.
    """
    buffer = io.StringIO()
    # Every cell quoted: a spreadsheet that splits on ; or tab keeps a cell holding them whole.
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    buffer.write("\ufeff")
    zone = filters.time_zone
    writer.writerow([f"{column.label} ({zone})" if column.kind in ("time", "time_label") else column.label
                     for column in report.columns])
    with session_factory() as session:
        rows: Iterable[Row]
        if isinstance(report, ActivityReport):
            rows = ActivityReport.sorted_rows(report.activity(session, filters), filters)
        else:
            rows = (report.row(row) for row in
                    session.execute(report.ordered(filters).execution_options(yield_per=chunk_rows)).mappings())
        for number, row in enumerate(rows, 1):
            writer.writerow([csv_cell(row[column.key], zone) for column in report.columns])
            if number % chunk_rows == 0:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_table(columns: Sequence[Column], rows: Iterable[Row], time_zone: ZoneInfo) -> bytes:
    """A few rows (one email's links, the compared emails) as CSV, the way csv_lines writes a report."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    buffer.write("\ufeff")
    writer.writerow([f"{column.label} ({time_zone})" if column.kind == "time" else column.label for column in columns])
    for row in rows:
        writer.writerow([csv_cell(row[column.key], time_zone) for column in columns])
    return buffer.getvalue().encode("utf-8")


def json_value(value: object) -> object:
    return utc_iso(value) if isinstance(value, datetime) else value


def json_rows(rows: list[Row]) -> list[Row]:
    return [{key: json_value(value) for key, value in row.items()} for row in rows]
