"""Cancelling an email that is still going out, and deleting one that is not, from its page and the API.

Cancelling stops the recipients not yet handed to the mail server; they end "cancelled" with who
did it, and nothing more goes out, also for a worker that had already listed them (each recipient is
claimed atomically).  Deleting removes an email with nothing in flight, with its recipients, access
events and attachment files.  Who may do either: tests/test_email_actions.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coretrack import csrf
from coretrack.attachments import attachment_path
from coretrack.models import AccessEvent, Attachment, Email, Recipient, utcnow
from coretrack.sending.delivery import deliver
from coretrack.sending.status import cancel_unsent
from coretrack.sending.worker import run_worker

ADDRESSES = [f"r{number:02}@example.test" for number in range(12)]


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ADDRESSES, "subject": "Quarterly update", "html": "<p>Hi</p>"}


def statuses(db, email_id) -> dict[str, int]:
    db.expire_all()
    rows = db.execute(select(Recipient.status, func.count()).where(Recipient.email_id == email_id)
                      .group_by(Recipient.status))
    return dict(rows.all())


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


def confirm_and_submit(form, **kwargs):
    form["confirm"].checked = True
    return form.submit(**kwargs)


# -- cancel -----------------------------------------------------------------------------------


def test_an_admin_cancels_a_queued_email_and_the_worker_then_sends_none_of_it(admin, app, db, smtp_settings, send):
    sink, _ = smtp_settings
    email = send.compose().email

    page = admin.get(f"/emails/{email.id}")
    assert page.html.select_one('meta[http-equiv="refresh"]')  # while it is going out
    page = page.click("Cancel sending…")
    assert page.html.select_one('meta[http-equiv="refresh"]') is None  # stays still while confirming
    refused = page.forms["cancel"].submit(status=400)  # the confirmation box was not ticked
    assert "confirm" in refused.html.select_one("[role=alert]").text
    assert statuses(db, email.id) == {"pending": 12}

    done = confirm_and_submit(page.forms["cancel"]).follow()
    assert "Cancelled: 12 recipients will not get this email." in done.html.select_one("[role=status]").text
    assert run_worker(app.Session, app.config, once=True) == 0
    assert sink.received == []
    assert statuses(db, email.id) == {"cancelled": 12}
    db.expire_all()
    assert email.status == "cancelled"
    assert {recipient.reply for recipient in email.recipients} == {"cancelled by admin before it was sent"}
    assert "cancel" not in admin.get(f"/emails/{email.id}?confirm=cancel").forms  # nothing left to cancel


def test_a_worker_that_already_listed_the_recipients_sends_nothing_after_the_cancel(app, db, smtp_settings, send):
    sink, _ = smtp_settings
    email = send.compose().email

    def cancel_after_the_first_message(_):
        if len(sink.received) == 1:
            with app.Session() as other:
                cancel_unsent(other, email.id, "admin")

    deliver(app.Session, app.config, email.id, on_progress=cancel_after_the_first_message)

    assert [mail.rcpt_tos for mail in sink.received] == [[ADDRESSES[0]]]
    assert statuses(db, email.id) == {"sent": 1, "cancelled": 11}
    db.expire_all()
    assert email.status == "cancelled" and email.sent_at is not None


def test_a_cancelled_email_shows_in_the_lists_and_reports_by_its_status(admin, app, db, users, smtp_settings, send):
    email = send.compose().email
    deliver(app.Session, app.config, email.id, limit=1)
    cancel_unsent(db, email.id, "admin")

    listed = admin.get("/emails?status=cancelled")
    assert [link.text for link in listed.html.select("tbody td:first-child a")] == ["Quarterly update"]
    assert "cancelled" in [option["value"] for option in listed.html.select("#f-status option")]
    detail = admin.get(f"/emails/{email.id}")
    assert "1 sent, 0 failed, 0 skipped, 11 cancelled" in detail.html.select_one("section[aria-label=Details]").text
    assert admin.get("/api/emails?status=cancelled").json["total"] == 1
    # The reports cover email that went out, to anyone: this one did, to one recipient.
    report = admin.get("/reports/recipients?status=cancelled")
    assert len(report.html.select("tbody tr")) == 11
    assert "cancelled" in [option["value"] for option in report.html.select("select[name=status] option")]


def test_cancelling_needs_the_forms_csrf_token(admin, app, db, users, send):
    email = send.compose().email
    admin.post(f"/emails/{email.id}/cancel", {"confirm": "yes"}, status=403)
    assert statuses(db, email.id) == {"pending": 12}


def test_the_api_cancels_and_answers_the_email(admin, app, db, users, send):
    email = send.compose().email
    response = admin.post_json(f"/api/emails/{email.id}/cancel", {})
    assert response.json["cancelled"] == 12 and response.json["status"] == "cancelled"
    assert {r["status"] for r in response.json["recipient_list"]} == {"cancelled"}
    assert admin.post_json(f"/api/emails/{email.id}/cancel", {}).json["cancelled"] == 0
    admin.post_json("/api/emails/999999/cancel", {}, status=404)


# -- delete -----------------------------------------------------------------------------------


def test_an_admin_deletes_a_sent_email_with_its_recipients_events_and_attachment_files(admin, app, db, users,
                                                                                     smtp_settings, send):
    email = send.compose(to=["ann@example.test"],
                         attachments=[("notes.txt", "text/plain", b"notes")]).email
    keep = send.compose(to=["bob@example.test"], attachments=[("keep.txt", "text/plain", b"k")]).email
    deliver(app.Session, app.config, email.id)
    db.add(AccessEvent(recipient_id=email.recipients[0].id, at=utcnow(), verdict="human"))
    db.commit()
    files = [attachment_path(app.config, attachment) for attachment in (*email.attachments, *keep.attachments)]
    email_id = email.id

    page = admin.get(f"/emails/{email_id}")
    assert page.forms["delete"].submit(status=400)  # not confirmed
    assert count(db, Email) == 2

    listing = confirm_and_submit(page.forms["delete"]).follow()
    assert listing.request.path == "/emails"
    assert "Deleted the email “Quarterly update”." in listing.html.select_one("[role=status]").text
    admin.get(f"/emails/{email_id}", status=404)
    assert count(db, Email) == 1 and count(db, Recipient) == 1 and count(db, Attachment) == 1
    assert count(db, AccessEvent) == 0
    assert [path.exists() for path in files] == [False, True]


def test_an_email_still_going_out_cannot_be_deleted(admin, app, db, users, send):
    email = send.compose().email
    assert "delete" not in admin.get(f"/emails/{email.id}").forms
    token = csrf.make_token(app.secret, "admin")

    refused = admin.post(f"/emails/{email.id}/delete", {"csrf_token": token, "confirm": "yes"}, status=409)
    assert "cancel it first" in refused.html.select_one("[role=alert]").text
    admin.delete(f"/api/emails/{email.id}", headers={"Content-Type": "application/json"}, status=409)

    # One message is being handed to the mail server right now: still in flight after a cancel.
    first = email.recipients[0]
    first.status, first.claimed_at = "sending", utcnow()
    db.commit()
    cancel_unsent(db, email.id, "admin")
    admin.post(f"/emails/{email.id}/delete", {"csrf_token": token, "confirm": "yes"}, status=409)
    assert count(db, Email) == 1 and count(db, Recipient) == 12


def test_the_api_deletes_and_answers_the_id(admin, app, db, users, smtp_settings, send):
    email = send.compose(to=["ann@example.test"]).email
    deliver(app.Session, app.config, email.id)

    email_id = email.id
    response = admin.delete(f"/api/emails/{email_id}", headers={"Content-Type": "application/json"})
    assert response.json == {"deleted": email_id}
    assert count(db, Email) == 0
    admin.delete(f"/api/emails/{email_id}", headers={"Content-Type": "application/json"}, status=404)
