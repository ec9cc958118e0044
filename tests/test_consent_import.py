"""A CSV import may state each row's tracking consent with where it was given; a row stating one
without its source is refused whole.  (The coreBOS import states none: test_corebos_import.py.)"""

from __future__ import annotations

from datetime import datetime

import webtest
from click.testing import CliRunner
from sqlalchemy import event, func, select

from coretrack.cli import main
from coretrack.models import Address, ConsentEvent, Contact, Lead, utcnow
from coretrack.people import consent
from coretrack.records import csv_import


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


HEADER = b"first_name,last_name,email,tracking_consent,consent_source,consent_at\r\n"


def test_a_rows_consent_is_recorded_with_means_import_its_source_and_time_once_its_record_is_made(db):
    data = HEADER + (b"Ada,Lovelace,Ada@example.test,granted,sign-up form at the 2026 fair,2026-03-01T10:15:00Z\r\n"
                     b"Grace,Hopper,grace@example.test,Refused,phone survey,\r\n"
                     b"Alan,Turing,alan@example.test,,,\r\n")
    result = csv_import.import_csv(db, "contact", data, user_name="sam")
    assert (result.created, result.consents, result.errors) == (3, 2, [])
    [ada] = consent.history(db, "ada@example.test")
    assert (ada.state, ada.means, ada.source, ada.at, ada.user_name) == (
        "granted", consent.IMPORT, "sign-up form at the 2026 fair", datetime(2026, 3, 1, 10, 15), "sam")
    [grace] = consent.history(db, "grace@example.test")
    assert (grace.state, grace.source) == ("refused", "phone survey")
    assert (utcnow() - grace.at).total_seconds() < 60
    assert consent.state(db, "alan@example.test") == ""
    assert count(db, ConsentEvent) == 2


def test_a_row_stating_a_consent_without_its_source_is_refused_whole_and_said_why(db):
    data = HEADER + (b"Ada,Lovelace,ada@example.test,granted,,\r\n"
                     b"Grace,Hopper,grace@example.test,granted,web form,\r\n")
    result = csv_import.import_csv(db, "lead", data)
    assert result.created == 1 and result.consents == 1
    assert len(result.errors) == 1 and result.errors[0][0] == 2
    assert "consent_source: required with tracking_consent" in result.errors[0][1]
    assert [lead.email for lead in db.scalars(select(Lead))] == ["grace@example.test"]
    assert consent.history(db, "ada@example.test") == []


def test_rows_with_an_unusable_consent_are_refused_whole(db):
    data = HEADER + (b"A,One,a1@example.test,maybe,form,\r\n"
                     b"A,Two,,granted,form,\r\n"
                     b"A,Three,a3@example.test,granted,form,yesterday\r\n"
                     b"A,Four,a4@example.test,granted,form,2999-01-01T00:00:00Z\r\n"
                     b"A,Five,a5@example.test,,form,\r\n"
                     b"A,Six,a6@example.test,granted,form,0001-01-01T00:00:00+01:00\r\n")
    result = csv_import.import_csv(db, "contact", data)
    assert (result.created, result.consents) == (0, 0)
    assert [(line, message.split(":")[0]) for line, message in result.errors] == [
        (2, "tracking_consent"), (3, "tracking_consent"), (4, "consent_at"), (5, "consent_at"),
        (6, "tracking_consent"), (7, "consent_at")]
    assert count(db, Contact) == 0 and count(db, ConsentEvent) == 0 and count(db, Address) == 0


def test_the_import_page_records_consents_with_the_importing_users_name_and_says_how_many(staff, db):
    form = staff.get("/contacts/import").forms["import-form"]
    form["file"] = webtest.Upload("people.csv", HEADER + b"Ada,Lovelace,ada@example.test,granted,web form,\r\n",
                                  "text/csv")
    page = form.submit()
    assert "Recorded the tracking consent of 1 address." in page.html.select_one("#consents-recorded").text
    assert "tracking_consent" in staff.get("/contacts/import").html.select_one("#h-file").text
    [event] = consent.history(db, "ada@example.test")
    assert (event.means, event.user_name) == (consent.IMPORT, "sam")


def test_the_command_records_consents_and_says_how_many(config, users, db, tmp_path):
    path = tmp_path / "people.csv"
    path.write_bytes(HEADER + b"Ada,Lovelace,ada@example.test,withdrawn,letter of 2 March,\r\n"
                              b"Grace,Hopper,grace@example.test,granted,,\r\n")
    environ = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
               "CORETRACK_CONFIG": ""}
    result = CliRunner().invoke(main, ["import", "csv", str(path), "--type", "contacts"], env=environ)
    assert result.exit_code == 0, result.output
    assert "tracking consents recorded: 1" in result.output
    assert "line 3: consent_source: required with tracking_consent" in result.output
    db.expire_all()
    assert consent.state(db, "ada@example.test") == consent.WITHDRAWN
    assert consent.state(db, "grace@example.test") == ""


def test_an_imported_consent_older_than_the_addresss_latest_change_joins_its_history_without_changing_its_state(db):
    consent.record(db, "ada@example.test", consent.WITHDRAWN, consent.STAFF, "phone", at=datetime(2026, 5, 1))
    db.commit()
    data = HEADER + (b"Ada,Lovelace,ada@example.test,granted,fair,2026-03-01T00:00:00Z\r\n"
                     b"Grace,Hopper,grace@example.test,granted,fair,2026-03-01T00:00:00Z\r\n")
    csv_import.import_csv(db, "lead", data)
    db.expire_all()
    assert [event.state for event in consent.history(db, "ada@example.test")] == ["withdrawn", "granted"]
    assert consent.state(db, "ada@example.test") == consent.WITHDRAWN


def test_a_batchs_consents_are_written_in_a_few_statements_not_a_few_a_row(app, db):
    rows = csv_import.BATCH_ROWS
    data = HEADER + b"".join(f"Ada,L{n},ada{n}@example.test,granted,web form,\r\n".encode() for n in range(rows))
    seen: list[str] = []

    def listen(_conn, _cursor, statement, _parameters, _context, _many):
        seen.append(statement)

    event.listen(app.engine, "before_cursor_execute", listen)
    try:
        result = csv_import.import_csv(db, "contact", data)
    finally:
        event.remove(app.engine, "before_cursor_execute", listen)
    assert result.consents == rows
    assert count(db, ConsentEvent) == rows
    assert len(seen) < 20, seen
