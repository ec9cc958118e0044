"""A record's page shows its address's tracking consent and every change of it with its proof; staff
record one with a note; the history downloads as CSV and JSON for an access request."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from sqlalchemy import func, select

from coretrack.models import ConsentEvent, Email, Erasure, utcnow
from coretrack.people import consent
from coretrack.records.store import create_record


def add_contact(db, email="ada@example.test", first="Ada"):
    return create_record(db, "contact", {"first_name": first, "last_name": "Lovelace", "email": email})


def consent_events(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(ConsentEvent))


def given_on_the_page(db, users, address="ada@example.test") -> Email:
    """A grant on the consent page (1 March 2026, 10:15 UTC) carried by an email, then a staff withdrawal."""
    email = Email(subject="May we measure?", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent", asks_consent=True)
    db.add(email)
    db.flush()
    text = consent.current_text(db)
    consent.record(db, address, consent.GRANTED, consent.PAGE,
                   evidence=consent.Evidence(text_version=text.version, ip="192.0.2.0", user_agent="Firefox/140",
                                             email_id=email.id), at=datetime(2026, 3, 1, 10, 15))
    consent.record(db, address, consent.WITHDRAWN, consent.STAFF, "=1+1 said so by phone",
                   consent.Evidence(user_name="admin"), at=datetime(2026, 3, 2, 9, 0), measurements_deleted=True)
    db.commit()
    return email


def test_a_record_whose_address_never_stated_a_consent_shows_it_unknown(staff, db):
    contact = add_contact(db)
    page = staff.get(f"/contacts/{contact.id}")
    assert "unknown" in page.html.select_one("#consent-state").text
    assert page.html.select_one("#consent-history") is None


def test_a_record_without_an_address_shows_no_consent(staff, db):
    contact = create_record(db, "contact", {"first_name": "No", "last_name": "Address"})
    page = staff.get(f"/contacts/{contact.id}")
    assert page.html.select_one("#consent") is None
    staff.get(f"/contacts/{contact.id}/consent.csv", status=404)


def test_the_page_shows_the_state_and_every_change_newest_first_in_the_users_time_zone(staff, db, users):
    email = given_on_the_page(db, users, "Ada@Example.test")
    users["sam"].time_zone = "Europe/Paris"
    db.commit()
    lead = create_record(db, "lead", {"first_name": "Ada", "last_name": "L", "email": "ada@example.test"})
    page = staff.get(f"/leads/{lead.id}")
    state = page.html.select_one("#consent-state").text
    assert "withdrawn" in state and "2026-03-02 10:00" in state and "said so by phone" in state
    rows = [[cell.text.strip() for cell in row.select("td")] for row in page.html.select("#consent-history tbody tr")]
    assert rows == [
        ["2026-03-02 10:00", "withdrawn", "staff entry", "=1+1 said so by phone", "—", "—", "—", "—", "admin",
         "deleted"],
        ["2026-03-01 11:15", "granted", "the person, with their link", "—", "1", "192.0.2.0", "Firefox/140",
         "May we measure?", "—", "—"],
    ]
    link = page.html.select_one("#consent-history a")
    assert link["href"] == f"/emails/{email.id}"


def test_staff_record_a_consent_with_a_note_and_their_name(staff, db):
    contact = add_contact(db)
    form = staff.get(f"/contacts/{contact.id}").forms["record-consent"]
    form["state"], form["note"] = "granted", "asked by phone on 3 March"
    page = form.submit(status=303).follow()
    assert "granted" in page.html.select_one("#consent-state").text
    assert consent.state(db, "ada@example.test") == consent.GRANTED
    [event] = consent.history(db, "ada@example.test")
    assert (event.state, event.means, event.source, event.user_name) == (
        "granted", consent.STAFF, "asked by phone on 3 March", "sam")
    assert (utcnow() - event.at).total_seconds() < 60


def test_a_staff_entry_without_a_note_is_refused_clearly_and_keeps_what_was_chosen(staff, db):
    contact = add_contact(db)
    form = staff.get(f"/contacts/{contact.id}").forms["record-consent"]
    form["state"], form["note"] = "refused", "   "
    page = form.submit(status=400)
    assert "say how you know" in page.html.select_one("#e-note").text
    assert page.forms["record-consent"]["state"].value == "refused"
    assert consent_events(db) == 0
    form = page.forms["record-consent"]
    form["state"] = ""
    form["note"] = "told us at the fair"
    page = form.submit(status=400)
    assert page.html.select_one("#e-state") is not None
    assert page.forms["record-consent"]["note"].value == "told us at the fair"
    assert consent_events(db) == 0


def test_a_staff_note_longer_than_the_history_keeps_is_refused_and_kept_in_the_form(staff, db):
    contact = add_contact(db)
    form = staff.get(f"/contacts/{contact.id}").forms["record-consent"]
    form["state"], form["note"] = "granted", "n" * 201
    page = form.submit(status=400)
    assert "at most 200 characters" in page.html.select_one("#e-note").text
    assert page.forms["record-consent"]["note"].value == "n" * 201
    assert consent_events(db) == 0


def test_a_staff_entry_needs_the_pages_csrf_token(staff, db):
    contact = add_contact(db)
    staff.post(f"/contacts/{contact.id}/consent", {"state": "granted", "note": "phone"}, status=403)
    assert consent_events(db) == 0


def test_the_csv_export_holds_every_change_with_its_evidence_and_is_safe_in_a_spreadsheet(staff, db, users):
    email = given_on_the_page(db, users)
    contact = add_contact(db)
    response = staff.get(f"/contacts/{contact.id}/consent.csv")
    assert response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.body.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Address", "State now", "Since (UTC)", "Changed (UTC)"]
    assert rows[1:] == [
        ["ada@example.test", "withdrawn", "2026-03-02 09:00:00", "2026-03-02 09:00:00", "withdrawn", "staff",
         "'=1+1 said so by phone", "", "", "", "", "", "admin", "yes"],
        ["ada@example.test", "withdrawn", "2026-03-02 09:00:00", "2026-03-01 10:15:00", "granted", "page", "",
         "1", "192.0.2.0", "Firefox/140", str(email.id), "May we measure?", "", "no"],
    ]


def test_the_json_export_holds_every_change_with_its_evidence_in_utc(staff, db, users):
    email = given_on_the_page(db, users)
    contact = add_contact(db)
    response = staff.get(f"/contacts/{contact.id}/consent.json")
    assert "attachment" in response.headers["Content-Disposition"]
    proof = json.loads(response.body)
    assert (proof["address"], proof["state"], proof["state_at"]) == (
        "ada@example.test", "withdrawn", "2026-03-02T09:00:00Z")
    assert proof["history"] == [
        {"at": "2026-03-02T09:00:00Z", "state": "withdrawn", "means": "staff", "source": "=1+1 said so by phone",
         "text_version": None, "ip": "", "user_agent": "", "email": None, "user_name": "admin",
         "measurements_deleted": True},
        {"at": "2026-03-01T10:15:00Z", "state": "granted", "means": "page", "source": "", "text_version": 1,
         "ip": "192.0.2.0", "user_agent": "Firefox/140", "email": {"id": email.id, "subject": "May we measure?"},
         "user_name": "", "measurements_deleted": False},
    ]
    assert [text["version"] for text in proof["consent_texts"]] == [1]
    assert proof["consent_texts"][0]["body"] == consent.current_text(db).body


def test_an_address_never_stated_exports_as_unknown(staff, db):
    contact = add_contact(db)
    assert staff.get(f"/contacts/{contact.id}/consent.json").json["state"] == "unknown"
    rows = list(csv.reader(io.StringIO(staff.get(f"/contacts/{contact.id}/consent.csv").body.decode("utf-8-sig"))))
    assert rows[1][:3] == ["ada@example.test", "unknown", ""]


def test_erasing_a_person_erases_their_addresss_consent_history_and_the_audit_keeps_only_what_it_kept(
        app, admin, db, users):
    given_on_the_page(db, users, "Ada@Example.test")
    consent.record(db, "grace@example.test", consent.GRANTED, consent.API, "web form")
    db.commit()
    contact_id = add_contact(db).id
    page = admin.get("/erase", params={"address": "ada@example.test"})
    form = page.forms["erase"]
    form["confirm"] = True
    form.submit(status=303)
    db.expire_all()
    assert consent.history(db, "ada@example.test") == [] and consent.state(db, "ada@example.test") == ""
    assert [event.source for event in db.scalars(select(ConsentEvent))] == ["web form"]  # another person's stays
    admin.get(f"/contacts/{contact_id}", status=404)  # the record went too
    audit = db.scalars(select(Erasure)).one()
    assert (audit.user_name, audit.records, audit.recipients, audit.events) == ("admin", 1, 0, 0)
    # No address: a digest, counts, and who reinstated the address to the suppression list, when and why.
    assert {column.name for column in Erasure.__table__.columns} == {
        "id", "user_name", "at", "address_digest", "records", "recipients", "events", "reinstated_at",
        "reinstated_by", "reinstate_reason"}
