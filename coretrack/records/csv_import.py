"""Importing contacts, accounts and leads: a CSV file (the import page, ``coretrack import csv``), and
what the coreBOS import (corebos/records.py) shares with it: every value goes through the form's checks
(``store.clean_value``) and every imported opt-out through ``opt_out_imported`` (which opts out
the address: people/suppression.py), and a record imported with an opted-out address shows it.
A CSV row may also state its address's consent to measuring its reading, with where it was given
(records/imported_consent.py, recorded through people/consent.py once the row's record is made); the
coreBOS import states none (its people's consent is unknown).

A CSV file is streamed, never held whole: read (a first pass counts the rows and checks the
encoding before anything is written; the second reads them), resolve (per batch of rows: the
accounts named and the people already at each address, one query each), create (each row through
the form's validation, the batch written in one executemany).  Memory depends on the batch, not
on the file.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..models import RECORD_MODELS, Account, Contact, Lead, Record, utcnow
from ..people import consent, suppression
from ..validation import ValidationError
from .fields import FIELDS, PERSON_TYPES, attribute
from .imported_consent import CONSENT_COLUMNS, stated_consent
from .store import IMPORT_OPT_OUT, clean_record, clean_value

if TYPE_CHECKING:
    from _csv import Reader

# The import page's cap: a file at the cap is imported in a few seconds on a small server (the
# README gives the measurement), far within Apache's 60 s request timeout, and a larger one is
# refused before anything is written.  ``coretrack import csv`` takes any size.
MAX_PAGE_ROWS = 20_000
# And should a busy server still be slower, the page's import gives up with nothing written well
# before Apache's 60 s timeout, rather than answer 504 and go on to commit.
PAGE_SECONDS = 40
# Rows resolved and written together.  A batch is one INSERT of at most 1,000 rows of at most 12
# columns: 12,000 parameters, within SQLite's 32,766 and PostgreSQL's 65,535 a statement.
BATCH_ROWS = 1000
# Problems and duplicates listed one by one; past these only counted (a file of 1,000,000 bad rows
# must not make a list of 1,000,000).
MAX_LISTED = 200


@dataclass
class ImportResult:
    created: int = 0
    # (line in the file, message): the first MAX_LISTED; error_count counts them all.
    errors: list[tuple[int, str]] = field(default_factory=list)
    error_count: int = 0
    # Rows whose address a contact or lead already has (or an earlier row): skipped, or created
    # with a warning when asked to.
    duplicates: list[tuple[int, str]] = field(default_factory=list)
    duplicate_count: int = 0
    duplicates_skipped: bool = True
    rows: int = 0  # rows of the file read so far (blank lines aside)
    consents: int = 0  # consents recorded (tracking_consent)

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append((line, message))

    def duplicate(self, line: int, message: str) -> None:
        self.duplicate_count += 1
        if len(self.duplicates) < MAX_LISTED:
            self.duplicates.append((line, message))


def opt_out_imported(session: Session, records: list[Record]) -> None:
    """The one place an import (CSV or coreBOS) opts out, once its records are made: the addresses
    of those marked opted out (people/suppression.py, a few statements per chunk), and the records with an
    address already opted out show it."""
    suppression.follow_addresses(session, records, suppression.IMPORT)


def new_record(record_type: str, values: dict[str, object], reason: str, **extra: object) -> Record:
    """A record (not yet added) of values the form's checks cleaned; marked opted out if they say so
    (``opt_out_imported`` then opts out its address)."""
    values = dict(values)
    opt_out = values.pop("email_opt_out", False)
    record: Record = RECORD_MODELS[record_type](**values, **extra)
    if opt_out:
        suppression.mark_opted_out(record, reason)
    return record


# What a field left out holds: no for a yes/no, no account, else empty text.
_LEFT_OUT: dict[str, object] = {"checkbox": False, "account": None}


def clean_leniently(session: Session, record_type: str, raw: Mapping[str, str]) -> tuple[dict[str, object], list[str]]:
    """The form's values for the fields in ``raw``, and the names of those whose value the form
    refuses: they are left out (empty, or no for a yes/no), never stored as they came.  An empty
    required field stays empty: the caller gives it a placeholder."""
    values: dict[str, object] = {}
    left_out: list[str] = []
    for definition in FIELDS[record_type]:
        if definition.name not in raw:
            continue
        value = raw[definition.name]
        try:
            values[attribute(definition)] = clean_value(session, replace(definition, required=False), value)
        except ValueError:
            values[attribute(definition)] = _LEFT_OUT.get(definition.kind, "")
            left_out.append(definition.name)
    return values, left_out


# -- read ---------------------------------------------------------------------------------


def _column_name(raw: str) -> str:
    return raw.strip().lower().replace(" ", "_").replace("-", "_")


_NOT_UTF8 = "the file is not UTF-8 text: save it as “CSV UTF-8” and try again"


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig strips a byte order mark if there is one; newline="" as the csv module wants.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def count_rows(stream: IO[bytes], stop_after: int | None = None) -> int:
    """The rows after the header (blank ones aside), counting no further than ``stop_after`` + 1;
    ValidationError if the file is not UTF-8.  Reads from the start and leaves the stream there."""
    stream.seek(0)
    text = _text(stream)
    rows = -1  # the header
    try:
        for row in csv.reader(text):
            if any(cell.strip() for cell in row):
                rows += 1
            if stop_after is not None and rows > stop_after:
                break
    except UnicodeDecodeError:
        raise ValidationError({"file": _NOT_UTF8}) from None
    except csv.Error:
        pass  # unreadable from here: the import reports the line and imports what came before
    finally:
        text.detach()  # closing the wrapper would close the upload
        stream.seek(0)
    return max(rows, 0)


def _header(reader: Iterator[list[str]], record_type: str, result: ImportResult) -> list[str]:
    definitions = {definition.name: definition for definition in FIELDS[record_type]}
    columns = ", ".join(definitions)
    try:
        header = [_column_name(cell) for cell in next(reader, [])]
    except csv.Error as exc:
        raise ValidationError({"file": f"the first line is not readable CSV ({exc})"}) from None
    required = [name for name, definition in definitions.items() if definition.required]
    missing = [name for name in required if name not in header]
    if not any(header) or missing:
        raise ValidationError({"file": f"the first line must name the columns: {columns} "
                                       f"({' and '.join(required)} required)"})
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise ValidationError({"file": f"the header names {', '.join(repeated)} more than once"})
    unknown = [name or f"column {number} (no name)" for number, name in enumerate(header, 1)
               if name not in definitions and name not in CONSENT_COLUMNS]
    if unknown:
        known = ", ".join([*definitions, *CONSENT_COLUMNS])
        result.error(1, f"unknown columns ignored: {', '.join(unknown)} (known: {known})")
    return header


def _rows(reader: Reader, header: list[str], record_type: str,
          result: ImportResult) -> Iterator[tuple[int, dict[str, str]]]:
    """(line the row starts on, column -> value) for each row worth trying; the others reported."""
    known = {definition.name for definition in FIELDS[record_type]} | set(CONSENT_COLUMNS)
    end = reader.line_num
    while True:
        line = end + 1  # a quoted value may span lines: report the line the row starts on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            result.error(line, f"unreadable CSV, import stopped here ({exc})")
            return
        except UnicodeDecodeError:
            result.error(line, f"{_NOT_UTF8}; import stopped here")
            return
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        result.rows += 1
        if len(row) > len(header):
            result.error(line, f"{len(row)} values but the header names {len(header)} columns")
            continue
        yield line, {name: value for name, value in zip(header, row, strict=False) if name in known}


def _batches(rows: Iterator[tuple[int, dict[str, str]]]) -> Iterator[list[tuple[int, dict[str, str]]]]:
    batch: list[tuple[int, dict[str, str]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


# -- resolve ------------------------------------------------------------------------------


def people_by_address(session: Session, addresses: set[str]) -> dict[str, str]:
    """lower-case address -> "contact Ada Lovelace" for those a contact or lead has (a query each)."""
    wanted = sorted({address.strip().lower() for address in addresses if address.strip()})
    found: dict[str, str] = {}
    for chunk in range(0, len(wanted), BATCH_ROWS):
        for model in (Contact, Lead):
            matching = select(func.lower(model.email), model.first_name, model.last_name) \
                .where(func.lower(model.email).in_(wanted[chunk:chunk + BATCH_ROWS])).order_by(model.id)
            for address, first_name, last_name in session.execute(matching):
                found.setdefault(address, f"{model.record_type} " + f"{first_name} {last_name}".strip())
    return found


# -- create -------------------------------------------------------------------------------


class _CsvImport:
    def __init__(self, session: Session, record_type: str, skip_duplicates: bool, user_name: str = ""):
        self.session, self.record_type, self.user_name = session, record_type, user_name
        self.model = RECORD_MODELS[record_type]
        self.result = ImportResult(duplicates_skipped=skip_duplicates)

    def batch(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        accounts: dict[str, list[Account]] = {}
        names = {values["account"].strip() for _, values in rows if values.get("account", "").strip()}
        if names:
            # Kept referenced for the batch: validation's session.get of an id then needs no query.
            for account in self.session.scalars(select(Account).where(Account.name.in_(names))):
                accounts.setdefault(account.name, []).append(account)
        people = self.record_type in PERSON_TYPES
        known = people_by_address(self.session, {values.get("email", "") for _, values in rows}) if people else {}
        now = utcnow()
        made: list[tuple[dict[str, object], Record]] = []
        consents: list[consent.Change] = []
        for line, values in rows:
            address = values.get("email", "").strip().lower()
            if address and address in known:
                self.result.duplicate(line, f"{values.get('email', '').strip()} is already {known[address]}")
                if self.result.duplicates_skipped:
                    continue
            name = values.get("account", "").strip()
            if name:
                named = accounts.get(name, [])
                if len(named) != 1:
                    reason = "there is no account named" if not named else f"{len(named)} accounts are named"
                    self.result.error(line, f"account: {reason} {name!r}")
                    continue
                values["account"] = str(named[0].id)
            try:
                cleaned = clean_record(self.session, self.record_type, values)
                stated = stated_consent(values)
            except ValidationError as exc:
                self.result.error(line, str(exc))
                continue
            made.append((cleaned, new_record(self.record_type, cleaned, IMPORT_OPT_OUT)))
            if stated is not None:
                consents.append(consent.Change(str(cleaned["email"]), stated.state, stated.source, stated.at))
            if address and people:
                known.setdefault(address, f"on line {line} of this file")
        opt_out_imported(self.session, [record for _, record in made])
        # Every row names the same columns, so that the batch is one executemany.
        inserts = [cleaned | {"email_opt_out": bool(record.email_opt_out), "email_opt_out_at": record.email_opt_out_at,
                              "email_opt_out_reason": record.email_opt_out_reason or "", "created_at": now}
                   for cleaned, record in made]
        if inserts:
            # render_nulls: a None is sent as NULL, not left out, so that rows do not split the batch.
            self.session.execute(insert(self.model), inserts, execution_options={"render_nulls": True})
            self.result.created += len(inserts)
        # Once their records are made; the rows' checks (stated_consent) leave nothing to refuse.
        consent.record_many(self.session, consents, consent.IMPORT, consent.Evidence(user_name=self.user_name))
        self.result.consents += len(consents)


def import_csv(session: Session, record_type: str, data: bytes | IO[bytes], skip_duplicates: bool = True,
               max_rows: int | None = None, seconds: float | None = None,
               after_batch: Callable[[ImportResult], None] | None = None, user_name: str = "") -> ImportResult:
    """Create a record per good row; report bad rows by line.  Contacts' ``account`` column holds an
    account's exact name, which must exist (no account is created).  A contact or lead whose address
    a contact or lead already has (or an earlier row of the file) is a duplicate: skipped, or with
    ``skip_duplicates`` False created, and reported either way.  A row's stated consent
    (``CONSENT_COLUMNS``) is recorded with means import (and ``user_name``, who imported it) once its
    record is made; a row stating one without its source is refused.

    ``data`` is the file or a seekable stream of it.  Nothing is written until the whole file is
    known to be UTF-8 and, with ``max_rows``, to hold no more rows.  ``after_batch`` is called after
    each batch is written (the CLI commits there and shows progress); otherwise it all commits at
    the end.  Raises ValidationError({"file": ...}) when the file as a whole cannot be used, or,
    everything rolled back, when the import takes longer than ``seconds``.
    """
    started = time.monotonic()
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    if max_rows is not None and count_rows(stream, max_rows) > max_rows:
        raise ValidationError({"file": too_many_rows(record_type, max_rows)})
    if max_rows is None:
        count_rows(stream)  # the encoding checked before the first write
    text = _text(stream)
    try:
        reader = csv.reader(text)
        importing = _CsvImport(session, record_type, skip_duplicates, user_name)
        header = _header(reader, record_type, importing.result)
        for batch in _batches(_rows(reader, header, record_type, importing.result)):
            importing.batch(batch)
            if seconds is not None and time.monotonic() - started > seconds:
                session.rollback()
                raise ValidationError({"file": f"the server was too busy to import this file within {seconds:g} s, "
                                               f"so nothing was imported: try again later, or split it"})
            if after_batch is not None:
                after_batch(importing.result)
        session.commit()
    finally:
        text.detach()
    return importing.result


def too_many_rows(record_type: str, max_rows: int) -> str:
    nouns = {"contact": "contacts", "account": "accounts", "lead": "leads"}[record_type]
    return (f"the file holds more than {max_rows:,} rows, more than this page imports at once: split it, or "
            f"import it with the command coretrack import csv FILE --type {nouns} (any size)")

