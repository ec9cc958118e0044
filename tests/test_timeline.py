"""A record's timeline: emails sent, opens (and by what), delivery reports and the opt-out, newest first."""

from __future__ import annotations

from datetime import datetime

from coretrack.models import AccessEvent, Email, Recipient
from coretrack.people import suppression
from coretrack.records.store import create_record
from coretrack.tracking import tokens


def test_a_contacts_timeline_tells_its_story_newest_first(app, db, users, staff):
    ann = create_record(db, "contact", {"first_name": "Ann", "last_name": "Smith", "email": "ann@example.test"})
    other = create_record(db, "contact", {"first_name": "Bob", "last_name": "Jones",
                                                  "email": "bob@example.test"})
    email = Email(subject="Spring offer", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent", sent_at=datetime(2026, 3, 1, 9, 0))
    mine = Recipient(address="ann@example.test", token=tokens.new_token(app.secret), status="sent", contact_id=ann.id,
                     sent_at=datetime(2026, 3, 1, 9, 0), delivery_status="delivered",
                     delivery_at=datetime(2026, 3, 1, 9, 1))
    theirs = Recipient(address="bob@example.test", token=tokens.new_token(app.secret), status="sent",
                       contact_id=other.id, sent_at=datetime(2026, 3, 1, 9, 0))
    email.recipients = [mine, theirs]
    db.add(email)
    db.flush()
    db.add_all([AccessEvent(recipient_id=mine.id, at=datetime(2026, 3, 1, 9, 2), verdict="mail_proxy"),
                AccessEvent(recipient_id=mine.id, at=datetime(2026, 3, 2, 8, 0), verdict="human", hits=3),
                AccessEvent(recipient_id=theirs.id, at=datetime(2026, 3, 2, 8, 30), verdict="human")])
    suppression.opt_out_recipient(db, mine, suppression.LINK, "unsubscribed by the recipient",
                                  datetime(2026, 3, 3, 12, 0))
    db.commit()

    page = staff.get(f"/contacts/{ann.id}")
    entries = [" ".join(item.text.split()) for item in page.html.select("ol.timeline li")]
    assert entries == [
        "2026-03-03 12:00 — Opted out of email (unsubscribed by the recipient)",
        "2026-03-02 08:00 — “Spring offer” opened, 3 loads",
        "2026-03-01 09:02 — “Spring offer” opened by a mail proxy",
        "2026-03-01 09:01 — “Spring offer”: delivered",
        "2026-03-01 09:00 — Sent “Spring offer” to ann@example.test",
    ]
    assert page.html.select_one("ol.timeline li.timeline-sent a")["href"] == f"/emails/{email.id}"


def test_a_record_with_no_email_says_so(staff, db):
    lead = create_record(db, "lead", {"first_name": "L", "last_name": "Lead"})
    assert "Nothing yet" in staff.get(f"/leads/{lead.id}").html.select_one("p.empty:last-of-type").text
