"""Telling the sender: on a recipient's first likely-human open, a notification in the app, and for
senders who ask, one email per email sent; never for machine loads or the sender's own copies."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import func, select

from coretrack import notifications
from coretrack.models import Email, Notification, Recipient, User
from coretrack.tracking import tokens
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hits import Hit

THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
MACHINES = {
    "Gmail's prefetch at delivery": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                     "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0"),
    "Apple Mail Privacy Protection": "Mozilla/5.0",
    "a security scanner": "Mozilla/5.0 (compatible; Barracuda Sentinel)",
}


@pytest.fixture
def email(app, db, users, smtp_settings) -> Email:
    """Sam's email to Ann, Bob and Sam's own copy (to the email's From)."""
    email = Email(subject="Spring offer", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent")
    email.recipients = [Recipient(address=address, name=name, token=tokens.new_token(app.secret), status="sent")
                        for address, name in (("ann@example.test", "Ann"), ("bob@example.test", ""),
                                              ("CRM@example.test", ""))]
    db.add(email)
    db.commit()
    return email


def load(app, recipient: Recipient, user_agent: str = THUNDERBIRD, at: datetime | None = None) -> None:
    with write_transaction(app.engine) as connection:
        count_hits(connection, [Hit(recipient.token, at or datetime(2026, 12, 3, 9, 30), "203.0.113.5", user_agent)])


def notified(db) -> list[tuple[str, str]]:
    db.expire_all()
    return [(n.recipient.address, n.email.subject) for n in db.scalars(select(Notification).order_by(Notification.id))]


def want_email(client, address: str = "sam@example.test") -> None:
    form = client.get("/account").forms["account-form"]
    form["notify_by_email"] = True
    form["notification_address"] = address
    form.submit(status=303)


def test_a_persons_first_open_becomes_a_notification_on_the_senders_page(app, db, staff, email):
    ann = email.recipients[0]
    load(app, ann)
    load(app, ann, at=datetime(2026, 12, 3, 9, 45))  # a second open tells nothing new
    assert notifications.notify(app.Session, app.config) == 1
    assert notifications.notify(app.Session, app.config) == 0
    assert notified(db) == [("ann@example.test", "Spring offer")]
    page = staff.get("/notifications")
    assert "Notifications (1)" in page.html.select_one("nav").text
    row = page.html.select_one("tbody tr.unread")
    assert "Ann" in row.text and "opened" in row.text and row.select_one("a").text == "Spring offer"
    assert row.select_one("time")["datetime"] == "2026-12-03T09:30:00Z"  # the first open's time
    page.forms["mark-read"].submit(status=303)
    page = staff.get("/notifications")
    assert page.html.select_one("tbody tr.unread") is None and "Notifications (" not in page.html.select_one("nav").text


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_machine_loads_notify_no_one_and_a_later_persons_open_does(app, db, email, machine):
    ann = email.recipients[0]
    load(app, ann, machine)
    notifications.notify(app.Session, app.config)
    assert notified(db) == []
    db.expire_all()
    assert ann.access_count == 1 and ann.first_human_at is None
    load(app, ann, at=datetime(2026, 12, 3, 10, 0))
    notifications.notify(app.Session, app.config)
    assert notified(db) == [("ann@example.test", "Spring offer")]


def test_the_senders_own_copy_notifies_no_one(app, db, email, staff):
    own = email.recipients[2]
    load(app, own)
    notifications.notify(app.Session, app.config)
    assert notified(db) == []
    db.expire_all()
    assert own.notified_at is not None  # looked at once, not again every pass


def test_only_the_sender_is_told(app, db, email, admin):
    load(app, email.recipients[0])
    notifications.notify(app.Session, app.config)
    assert "No notifications yet." in admin.get("/notifications").text


def test_a_sender_who_asks_gets_one_email_per_email_sent_without_any_token(app, db, staff, email, smtp_settings):
    sink, _ = smtp_settings
    want_email(staff)
    ann, bob, _ = email.recipients
    load(app, ann)
    notifications.notify(app.Session, app.config)
    load(app, bob, at=datetime(2026, 12, 3, 11, 0))
    notifications.notify(app.Session, app.config)
    assert len(notified(db)) == 2
    assert [mail.rcpt_tos for mail in sink.received] == [["sam@example.test"]]
    message = sink.received[0].message
    assert message["Subject"] == "Opened: Spring offer"
    body = message.get_content()
    assert "Ann <ann@example.test> opened your email" in body and "2026-12-03 09:30 UTC" in body
    assert f"/emails/{email.id}" in body
    assert all(recipient.token not in sink.received[0].data.decode() for recipient in email.recipients)


def test_senders_who_did_not_ask_get_no_email(app, db, email, smtp_settings):
    sink, _ = smtp_settings
    load(app, email.recipients[0])
    notifications.notify(app.Session, app.config)
    assert len(notified(db)) == 1 and sink.received == []


def test_workers_telling_at_the_same_time_tell_each_open_once(app, db, email, staff, smtp_settings):
    sink, _ = smtp_settings
    want_email(staff)
    for recipient in email.recipients[:2]:
        load(app, recipient)
    threads = [threading.Thread(target=notifications.notify, args=(app.Session, app.config)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(address for address, _ in notified(db)) == ["ann@example.test", "bob@example.test"]
    assert len(sink.received) == 1


def test_emailing_needs_an_address_and_the_form_says_so(staff, db):
    form = staff.get("/account").forms["account-form"]
    form["notify_by_email"] = True
    page = form.submit(status=400)
    assert "enter the address to email you at" in page.html.select_one("#e-notification_address").text
    assert db.scalar(select(User.notify_by_email).where(User.name == "sam")) is False


def test_marking_as_read_needs_the_csrf_token(app, db, staff, email):
    load(app, email.recipients[0])
    notifications.notify(app.Session, app.config)
    staff.post("/notifications/read", status=403)
    assert db.scalar(select(func.count()).where(Notification.read_at.is_(None))) == 1
