"""Do not track: a flag on contacts and leads and a box on compose; such messages carry no tracking
image but are sent, counted as sent and keep their unsubscribe link."""

from __future__ import annotations

import json

import pytest
import webtest
from sqlalchemy import select
from support.constants import PUBLIC_URL

from coretrack.models import Contact, Email, Lead, Recipient
from coretrack.records.fields import FIELDS

IMAGE = "/modules/Emails/TrackAccess.php?t="
UNSUBSCRIBE = "/email/unsubscribe?t="


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ["ann@example.test"], "subject": "Hello", "html": "<html><body><p>Hi</p></body></html>"}


def html_for(sink, address: str) -> str:
    (mail,) = [mail for mail in sink.received if mail.rcpt_tos == [address]]
    return mail.message.get_body(preferencelist=("html",)).get_content()


def recipient(db, address: str) -> Recipient:
    return db.scalars(select(Recipient).where(Recipient.address == address)).one()


def test_a_contact_or_lead_who_asks_not_to_be_tracked_gets_no_image_but_is_sent_the_message(
        app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    quiet = Contact(first_name="Quiet", last_name="One", email="quiet@example.test", do_not_track=True)
    lead = Lead(first_name="Shy", last_name="Lead", email="shy@example.test", do_not_track=True)
    db.add_all([quiet, lead])
    db.commit()
    # A contact by reference, a lead by its typed address, and someone with no flag, in one email.
    email = send(to=[f"contact:{quiet.id}", "shy@example.test", "open@example.test"]).email
    for address in ("quiet@example.test", "shy@example.test"):
        html = html_for(sink, address)
        assert IMAGE not in html and f"{PUBLIC_URL}{UNSUBSCRIBE}{recipient(db, address).token}" in html
        assert (recipient(db, address).status, recipient(db, address).tracked) == ("sent", False)
    assert f"{PUBLIC_URL}{IMAGE}{recipient(db, 'open@example.test').token}" in html_for(sink, "open@example.test")
    assert recipient(db, "open@example.test").tracked
    assert db.get(Email, email.id).status == "sent" and db.get(Email, email.id).tracking


def test_dont_track_this_email_on_compose_leaves_out_every_image_and_still_sends(app, db, users, staff,
                                                                                 smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/emails/new").forms["compose"]
    form["to"], form["subject"], form["html"] = "ann@example.test, bob@example.test", "Hi", "<p>Hi</p>"
    form["dont_track"] = True
    page = form.submit("action", value="send").follow()
    assert "Sent to 2 of 2 recipients." in page
    assert "off (no tracking image in this email)" in page
    assert len(sink.received) == 2
    for address in ("ann@example.test", "bob@example.test"):
        assert IMAGE not in html_for(sink, address) and UNSUBSCRIBE in html_for(sink, address)
        assert not recipient(db, address).tracked


def test_the_box_is_unticked_by_default_and_the_message_then_tracked(app, db, users, staff, smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/emails/new").forms["compose"]
    assert not form["dont_track"].checked
    form["to"], form["subject"], form["html"] = "ann@example.test", "Hi", "<p>Hi</p>"
    form.submit("action", value="send")
    assert IMAGE in html_for(sink, "ann@example.test")


def test_the_api_takes_track_false_and_shows_each_recipients_tracked(app, db, users, staff, smtp_settings):
    body = {"to": ["ann@example.test"], "subject": "Hi", "html": "<p>Hi</p>", "track": False}
    reply = staff.post("/api/emails", json.dumps(body), content_type="application/json", status=201).json
    assert reply["tracking"] is False and reply["recipient_list"][0]["tracked"] is False
    bad = staff.post("/api/emails", json.dumps({**body, "track": "no"}), content_type="application/json", status=400)
    assert "track" in bad.json["fields"]


@pytest.mark.parametrize("section, model", [("contacts", Contact), ("leads", Lead)])
def test_the_flag_is_set_on_the_form_and_shown_on_the_record_page(staff, db, section, model):
    form = staff.get(f"/{section}/new").forms["record-form"]
    form["first_name"], form["last_name"], form["email"] = "Ada", "Lovelace", "ada@example.test"
    form["do_not_track"] = True
    page = form.submit(status=303).follow()
    record = db.scalars(select(model)).one()
    assert record.do_not_track
    assert page.html.find("dt", string="Do not track").find_next("dd").text == "Yes"
    edit = staff.get(f"/{section}/{record.id}/edit").forms["record-form"]
    assert edit["do_not_track"].checked
    edit["do_not_track"] = False
    edit.submit(status=303)
    db.expire_all()
    assert not db.get(model, record.id).do_not_track


def test_csv_import_takes_a_do_not_track_column(staff, db):
    form = staff.get("/leads/import").forms["import-form"]
    form["file"] = webtest.Upload("leads.csv", b"first_name,last_name,email,do_not_track\r\n"
                                               b"Ada,Lovelace,ada@example.test,yes\r\nGrace,Hopper,,no\r\n"
                                               b"Bad,Value,,maybe\r\n", "text/csv")
    form.submit()
    flags = {lead.last_name: lead.do_not_track for lead in db.scalars(select(Lead))}
    assert flags == {"Lovelace": True, "Hopper": False}
    assert "do_not_track" not in {field.name for field in FIELDS["account"]}  # accounts are companies
