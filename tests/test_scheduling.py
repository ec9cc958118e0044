"""Scheduled email: "Send at" a time in the user's zone; nothing goes out before it, the worker sends
it then, and it can be cancelled until it starts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from support.hit_load import wait_until

from coretrack.localtime import local, zone
from coretrack.models import Email, Recipient, utcnow
from coretrack.sending.worker import run_worker


def compose(client, send_at: str, status: int = 303, **values):
    form = client.get("/emails/new").forms["compose"]
    for name, value in {"to": "ann@example.test, bob@example.test", "subject": "Later", "html": "<p>Soon</p>",
                        "send_at": send_at, **values}.items():
        form[name] = value
    return form.submit("action", value="send", status=status)


def choose_zone(client, name: str) -> None:
    form = client.get("/account").forms["account-form"]
    form["time_zone"].force_value(name)
    form.submit(status=303)


def test_a_time_typed_in_the_users_zone_schedules_the_email_and_nothing_is_sent_before_it(
        staff, app, db, smtp_settings):
    sink, _ = smtp_settings
    choose_zone(staff, "Asia/Tokyo")  # UTC+9, no clock changes
    later = local(utcnow() + timedelta(hours=2), zone("Asia/Tokyo"))
    page = compose(staff, later.strftime("%Y-%m-%dT%H:%M")).follow()
    email = db.scalars(select(Email)).one()
    expected = (utcnow() + timedelta(hours=2)).replace(second=0, microsecond=0)
    assert abs(email.send_at - expected) <= timedelta(minutes=1)
    assert email.status == "queued" and sink.received == []
    assert "Scheduled: the worker sends it at " + later.strftime("%Y-%m-%d %H:%M") in page.html.select_one(
        "#scheduled").text
    assert page.html.select_one('meta[http-equiv="refresh"]') is None  # nothing to watch for two hours
    run_worker(app.Session, app.config, once=True)
    assert sink.received == []
    db.expire_all()
    assert {recipient.status for recipient in email.recipients} == {"pending"}


def test_the_worker_sends_a_scheduled_email_when_its_time_comes(staff, app, db, smtp_settings):
    sink, _ = smtp_settings
    send_at = utcnow() + timedelta(seconds=3)
    body = staff.post_json("/api/emails", {"to": ["ann@example.test"], "subject": "On time", "html": "<p>x</p>",
                                           "send_at": send_at.isoformat() + "Z"}, status=201).json
    assert body["delivery"] == "queued" and body["send_at"] == send_at.isoformat() + "Z"
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(app.Session, app.config),
                              kwargs={"interval": 0.2, "stop": stop})
    worker.start()
    try:
        wait_until(lambda: len(sink.received) == 1, "the scheduled email to go out", seconds=15)
        arrived = utcnow()
    finally:
        stop.set()
        worker.join(timeout=10)
    assert send_at <= arrived < send_at + timedelta(seconds=5)
    db.expire_all()
    assert db.get(Email, body["id"]).status == "sent"


def test_a_scheduled_email_can_be_cancelled_before_it_starts(staff, app, db, smtp_settings):
    sink, _ = smtp_settings
    compose(staff, (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    email = db.scalars(select(Email)).one()
    page = staff.get(f"/emails/{email.id}").click("Cancel sending…")
    form = page.forms["cancel"]
    form["confirm"] = True
    form.submit(status=303)
    db.execute(Email.__table__.update().values(send_at=utcnow() - timedelta(seconds=1)))  # its time has come
    db.commit()
    run_worker(app.Session, app.config, once=True)
    assert sink.received == []
    db.expire_all()
    assert {recipient.status for recipient in db.scalars(select(Recipient))} == {"cancelled"}


@pytest.mark.parametrize("send_at, message", [
    ("2020-01-01T09:00", "that time has passed"),
    ("2099-01-01T09:00", "at most 366 days ahead"),
    ("tomorrow", "enter a date and time"),
])
def test_a_time_past_too_far_or_unreadable_is_refused_and_nothing_saved(staff, db, send_at, message):
    page = compose(staff, send_at, status=400, subject="")
    assert message in page.html.select_one("#e-send_at").text
    assert page.html.select_one("#e-subject") is not None  # every problem at once
    assert db.scalars(select(Email)).all() == []


def test_the_api_takes_a_time_with_its_offset_only(staff, db):
    later = utcnow() + timedelta(hours=1)
    refused = staff.post_json("/api/emails", {"to": ["a@example.test"], "subject": "s", "html": "<p>x</p>",
                                              "send_at": later.isoformat()}, status=400).json
    assert "offset" in refused["fields"]["send_at"]
    offset = (later + timedelta(hours=5, minutes=30)).isoformat() + "+05:30"  # the same moment, in India
    body = staff.post_json("/api/emails", {"to": ["a@example.test"], "subject": "s", "html": "<p>x</p>",
                                           "send_at": offset}, status=201).json
    assert body["send_at"] == later.isoformat() + "Z"
