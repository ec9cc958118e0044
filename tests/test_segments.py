"""Saved segments: named filters over contacts, accounts and leads, kept as data and compiled to one
query; private or shared; a list view and a mass send's audience, including a follow-up to the
people who did not open an email."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from coretrack.models import AccessEvent, Account, Contact, Email, Lead, Recipient, Segment, utcnow
from coretrack.people import consent, suppression
from coretrack.records import segments
from coretrack.validation import ValidationError


@pytest.fixture
def people(db, users):
    spain = Account(name="Iberia Tools", email="info@iberia.es", website="https://iberia.es")
    france = Account(name="Gallia", email="info@gallia.fr")
    found = {
        "ana": Contact(first_name="Ana", last_name="García", email="ana@iberia.es", account=spain),
        "bea": Contact(first_name="Bea", last_name="Ruiz", email="bea@iberia.es", account=spain),
        "cy": Contact(first_name="Cy", last_name="Opted", email="cy@iberia.es", account=spain),
        "dan": Contact(first_name="Dan", last_name="Dupont", email="dan@gallia.fr", account=france),
        "eve": Contact(first_name="Eve", last_name="Alone", email="eve@example.test"),
    }
    db.add_all([spain, france, *found.values()])
    suppression.opt_out_record(db, found["cy"], suppression.STAFF, "asked by phone")
    db.flush()
    consent.record(db, "ana@iberia.es", consent.GRANTED, consent.STAFF, "by phone")
    # Email 1 went to Ana, Bea and Dan: Ana opened it (a person), Bea's only load was a proxy's.
    email = Email(subject="Spring", html_body="<p>Spring</p>", sender_id=users["sam"].id, from_address="crm@x.test",
                  status="sent")
    db.add(email)
    db.flush()
    now = utcnow()
    for name, opened in (("ana", True), ("bea", False), ("dan", False)):
        contact = found[name]
        recipient = Recipient(email_id=email.id, address=contact.email, contact_id=contact.id, token=f"t-{name}",
                              status="sent", sent_at=now - timedelta(days=100),
                              first_human_at=now - timedelta(days=99) if opened else None)
        db.add(recipient)
        db.flush()
        db.add(AccessEvent(recipient_id=recipient.id, at=now - timedelta(days=99),
                           verdict="human" if opened else "mail_proxy"))
    db.commit()
    return {**found, "spain": spain, "email": email}


def matching(db, record_type: str, conditions: list[dict]) -> set[str]:
    checked = segments.check_conditions(db, record_type, conditions)
    model = {"contact": Contact, "account": Account, "lead": Lead}[record_type]
    where = segments.compile_conditions(record_type, checked)
    return {record.email.split("@")[0] for record in db.scalars(select(model).where(where))}


def test_field_and_account_conditions_find_contacts_of_accounts_in_spain(db, people):
    assert matching(db, "contact", [{"field": "account.website", "op": "ends_with", "value": ".ES"}]) == {
        "ana", "bea", "cy"}
    assert matching(db, "contact", [{"field": "account.name", "op": "not_contains", "value": "iberia"}]) == {
        "dan", "eve"}  # a contact without an account has no account name
    assert matching(db, "contact", [{"field": "last_name", "op": "is", "value": "garcía"},
                                    {"field": "email", "op": "contains", "value": "iberia"}]) == {"ana"}
    assert matching(db, "contact", [{"field": "first_name", "op": "contains", "value": "%"}]) == set()


def test_opt_out_and_consent_state_are_the_address_s(db, people):
    assert matching(db, "contact", [{"field": "opted_out", "op": "yes"}]) == {"cy"}
    assert matching(db, "contact", [{"field": "opted_out", "op": "no"}]) == {"ana", "bea", "dan", "eve"}
    assert matching(db, "contact", [{"field": "consent", "op": "is", "value": "granted"}]) == {"ana"}
    assert matching(db, "contact", [{"field": "consent", "op": "is", "value": "unknown"}]) == {
        "bea", "cy", "dan", "eve"}


def test_engagement_opened_or_not_an_email_and_in_the_last_days(db, people):
    number = str(people["email"].id)
    assert matching(db, "contact", [{"field": "opened", "op": "email", "value": number}]) == {"ana"}
    # A proxy's load is no open: Bea is among those who did not open it; Eve was never sent it.
    assert matching(db, "contact", [{"field": "opened", "op": "not_email", "value": number}]) == {"bea", "dan"}
    assert matching(db, "contact", [{"field": "opened", "op": "within_days", "value": "100"}]) == {"ana"}
    assert matching(db, "contact", [{"field": "opened", "op": "not_within_days", "value": "90"},
                                    {"field": "account.website", "op": "ends_with", "value": ".es"}]) == {
        "ana", "bea", "cy"}
    assert matching(db, "contact", [{"field": "received", "op": "email", "value": number}]) == {"ana", "bea", "dan"}


@pytest.mark.parametrize(("condition", "message"), [
    ({"field": "password", "op": "is", "value": "x"}, "contacts have no field 'password' a segment can use"),
    ({"field": "first_name", "op": "yes"}, "First name: choose one of is, is not, contains"),
    ({"field": "opened", "op": "email", "value": "99999"}, "Opened email N: there is no email 99999"),
    ({"field": "opened", "op": "within_days", "value": "-3"}, "the number of days is a whole number from 1 to 3650"),
    ({"field": "consent", "op": "is", "value": "maybe"}, "the value is one of granted, refused, withdrawn, unknown"),
    ({"field": "first_name", "op": "contains", "value": " "}, "give the text to compare with"),
    ("first_name = 1", "a condition is an object"),
])
def test_a_bad_condition_is_a_clear_error(db, people, condition, message):
    with pytest.raises(ValidationError) as raised:
        segments.check_conditions(db, "contact", [condition])
    assert message in raised.value.errors["condition-0"]


def test_a_segment_is_counted_in_one_query(db, people, users):
    segment = segments.save(db, users["sam"], None, "contact", "Spain, no open in 90 days", [
        {"field": "account.website", "op": "ends_with", "value": ".es"},
        {"field": "opened", "op": "not_within_days", "value": "90"}, {"field": "opted_out", "op": "no"},
        {"field": "consent", "op": "is_not", "value": "refused"}], shared=True)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.get_bind(), "before_cursor_execute", listener)
    try:
        assert segments.count(db, segment) == 2
    finally:
        event.remove(db.get_bind(), "before_cursor_execute", listener)
    assert len(statements) == 1
    assert "Spain" not in statements[0] and ".es" not in statements[0]  # values are bound parameters


def test_a_private_segment_is_its_owner_s_alone(db, people, users, staff, admin):
    private = segments.save(db, users["admin"], None, "contact", "Mine", [], shared=False)
    shared = segments.save(db, users["admin"], None, "contact", "Ours", [], shared=True)
    assert [s.name for s in segments.visible_segments(db, users["sam"])] == ["Ours"]
    staff.get(f"/segments/{private.id}", status=404)
    staff.get(f"/contacts?segment={private.id}", status=404)
    staff.get(f"/segments/{shared.id}/edit", status=403)  # seen by all, changed by its owner and admins
    admin.get(f"/segments/{private.id}")


def test_building_a_segment_by_the_form_then_listing_its_records(staff, db, people):
    form = staff.get("/segments/new?type=contact").forms["segment-form"]
    form["name"] = "Spain"
    form["field-0"], form["op-0"], form["value-0"] = "account.website", "ends_with", ".es"
    page = form.submit("action", value="more")  # one more row, nothing saved
    assert db.scalar(select(Segment)) is None
    form = page.forms["segment-form"]
    form["field-1"], form["op-1"], form["value-1"] = "opted_out", "no", ""
    shown = form.submit("action", value="save", status=303).follow()
    assert "2 contacts today" in shown.text
    assert [li.text for li in shown.html.select("#conditions li")] == [
        "Account website ends with “.es”", "Opted out of email no"]
    segment = db.scalar(select(Segment))
    assert json.loads(segment.conditions)[0] == {"field": "account.website", "op": "ends_with", "value": ".es"}
    listed = staff.get(f"/contacts?segment={segment.id}")
    assert [row.select("td")[1].text for row in listed.html.select("#mass-email tbody tr")] == [
        "Ana García", "Bea Ruiz"]


def test_a_bad_row_is_shown_by_its_field_and_nothing_is_saved(staff, db, people):
    form = staff.get("/segments/new?type=lead").forms["segment-form"]
    form["name"] = "Leads"
    form["field-0"], form["op-0"], form["value-0"] = "company", "yes", ""
    page = form.submit("action", value="save", status=400)
    assert "Company: choose one of is, is not" in page.html.select_one("#e-condition-0").text
    assert page.forms["segment-form"]["name"].value == "Leads"
    assert db.scalar(select(Segment)) is None


def test_a_follow_up_goes_to_those_who_did_not_open_email_n(staff, db, people, smtp_settings):
    sink, _ = smtp_settings
    segment = segments.save(db, db.merge(people["email"].sender), None, "contact", "Did not open Spring", [
        {"field": "opened", "op": "not_email", "value": str(people["email"].id)}], shared=True)
    compose = staff.get(f"/contacts?segment={segment.id}").forms["mass-email"].submit("scope", value="all")
    assert "To all 2 contacts of the segment “Did not open Spring”" in compose.html.select_one("#audience").text
    form = compose.forms["compose"]
    form["subject"], form["html"] = "Did you see Spring?", "<p>Hello $contacts-firstname$</p>"
    form.submit("action", value="send", status=303)
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["bea@iberia.es", "dan@gallia.fr"]


def test_compose_takes_a_segment_directly(staff, db, people):
    segment = segments.save(db, db.merge(people["email"].sender), None, "contact", "Spain", [
        {"field": "account.website", "op": "ends_with", "value": ".es"}], shared=True)
    page = staff.get("/emails/new").forms["use-segment"].submit()
    assert "To all 3 contacts of the segment “Spain”" in page.html.select_one("#audience").text
    page = staff.get(f"/emails/new?segment={segment.id + 1}", status=400)
    assert "that segment no longer exists" in page.html.select_one("#e-audience").text


def test_the_benchmark_s_short_run_ends_with_its_line():
    """scripts/bench-segments at 3,000 contacts (the full run is 100,000: docs/performance.md)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts" / "benchmarks" / "segments.py"), "--contacts", "3000",
                           "--runs", "2"], capture_output=True, text=True, timeout=300, check=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("segment_count_ms=")
    assert float(last.split("=")[1]) < 300


def test_the_api_creates_a_segment_and_pages_through_its_records(staff, db, people):
    created = staff.post_json("/api/segments", {
        "name": "Spain", "record_type": "contact", "shared": False,
        "conditions": [{"field": "account.website", "op": "ends_with", "value": ".es"}]}, status=201).json
    assert (created["count"], created["owner"], created["shared"]) == (3, "sam", False)
    assert [s["name"] for s in staff.get("/api/segments").json["segments"]] == ["Spain"]
    page = staff.get(f"/api/segments/{created['id']}/records?per_page=2").json
    assert (page["total"], page["pages"]) == (3, 2)
    assert [(r["type"], r["name"]) for r in page["records"]] == [("contact", "Ana García"), ("contact", "Cy Opted")]
    refused = staff.post_json("/api/segments", {"name": "", "record_type": "contact",
                                                "conditions": [{"field": "secret", "op": "is", "value": "x"}]},
                              status=400).json
    assert set(refused["fields"]) == {"name", "condition-0"}
    assert db.scalar(select(func.count()).select_from(Segment)) == 1


def test_another_user_s_private_segment_is_404_in_the_api(admin, db, people, users):
    private = segments.save(db, users["sam"], None, "contact", "Sam's", [], shared=False)
    admin.get(f"/api/segments/{private.id}/records", status=404)


def test_a_segment_s_page_says_its_conditions_in_words(db, people, users):
    number = people["email"].id
    segment = segments.save(db, users["sam"], None, "contact", "Words", [
        {"field": "opened", "op": "not_email", "value": str(number)},
        {"field": "clicked", "op": "not_within_days", "value": "90"},
        {"field": "received", "op": "not_email", "value": str(number)},
        {"field": "created", "op": "within_days", "value": "7"},
        {"field": "consent", "op": "is_not", "value": "refused"}], shared=True)
    assert segments.describe(segment) == [
        f"Did not open email {number} (was sent it)", "Clicked nothing in the last 90 days",
        f"Was not sent email {number}", "Created in the last 7 days", "Consent to measuring is not refused"]
    assert segments.count(db, segment) == 0  # everyone who did not open it was sent it
    assert matching(db, "contact", [{"field": "received", "op": "not_email", "value": str(number)}]) == {"cy", "eve"}


def test_a_segment_of_contacts_is_no_filter_for_leads_and_deleting_it_keeps_its_records(staff, db, people, users):
    segment = segments.save(db, users["sam"], None, "contact", "Spain", [
        {"field": "account.website", "op": "ends_with", "value": ".es"}], shared=True)
    staff.get(f"/leads?segment={segment.id}", status=404)
    staff.get("/contacts?segment=nonsense", status=404)
    page = staff.get(f"/segments/{segment.id}")
    page.forms["delete-segment"].submit(status=303)  # not confirmed: nothing deleted
    assert db.scalar(select(func.count()).select_from(Segment)) == 1
    form = staff.get(f"/segments/{segment.id}").forms["delete-segment"]
    form["confirm"] = True
    assert "Deleted the segment “Spain”." in form.submit(status=303).follow().text
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Segment)) == 0
    assert db.scalar(select(func.count()).select_from(Contact)) == 5
