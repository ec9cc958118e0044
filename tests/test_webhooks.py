"""Signed outbound webhooks: each event written where its change happens (and only with it), posted to a
real HTTP receiver on a loopback port, signed so that the documentation's own code verifies it, retried
through a receiver's long outage (in simulated time) until every event has arrived exactly once after
deduplication, a refusal (4xx) made a dead letter at once, and the pages for admins only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from support.webhook_receiver import WebhookReceiver

from coretrack import csrf
from coretrack.delivery_reports import deliveries, sendgrid
from coretrack.models import Email, EmailLink, Recipient, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from coretrack.people import consent, erasure, suppression
from coretrack.tracking import clicks, tokens
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hits import Hit
from coretrack.webhooks import endpoints, events
from coretrack.webhooks.delivery import RETRY_DELAYS, deliver_due, watch_webhooks

DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
SENT = datetime(2026, 12, 3, 9, 0)


def documented_verify() -> Callable[..., bool]:
    """The ``verify`` of docs/webhooks.md's "Verifying a delivery", run as written there."""
    section = DOCS.read_text(encoding="utf-8").split("## Verifying a delivery", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 (the documentation's own snippet)
    return namespace["verify"]


class Clock:
    """The worker's time, moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by

    def timestamp(self) -> float:
        return self.now.replace(tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(utcnow())


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def email(app, db, users) -> Email:
    """Sam's email to Ann and Bob, sent, with one tracked link."""
    email = Email(subject="Spring offer", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent", sent_at=SENT)
    email.recipients = [Recipient(address=address, token=tokens.new_token(app.secret), status="sent", sent_at=SENT)
                        for address in ("ann@example.test", "bob@example.test")]
    db.add(email)
    db.flush()
    db.add(EmailLink(email_id=email.id, position=0, url="https://shop.example.test/spring"))
    db.commit()
    return email


def add_endpoint(admin, url: str, types: list[str] | None = None) -> None:
    form = admin.get("/settings/webhooks").forms["add-endpoint"]
    form["url"] = url
    chosen = set(events.TYPES if types is None else types)
    for field in form.fields["events"]:
        field.checked = field._value in chosen  # the checkbox's own value
    form.submit(status=303).follow(status=200)


def the_endpoint(db) -> WebhookEndpoint:
    db.expire_all()
    return db.scalars(select(WebhookEndpoint)).one()


def load(app, recipient: Recipient, at: datetime, user_agent: str = THUNDERBIRD) -> None:
    with write_transaction(app.engine) as connection:
        count_hits(connection, [Hit(recipient.token, at, "203.0.113.5", user_agent)])


def every_event(app, db, email: Email) -> None:
    """Each kind of event once, each made where the product makes it."""
    ann, bob = email.recipients
    deliveries.record_delivery(db, ann.id, "delivered", "250 2.0.0 OK", datetime(2026, 12, 3, 9, 1))
    deliveries.record_delivery(db, bob.id, "bounced", "550 5.1.1 no such user", datetime(2026, 12, 3, 9, 2))
    db.commit()
    load(app, ann, datetime(2026, 12, 3, 9, 30))
    link = db.scalars(select(EmailLink).where(EmailLink.email_id == email.id)).one()
    assert clicks.record(db, db.get(Recipient, ann.id), link, "203.0.113.5", THUNDERBIRD, "truncated",
                         datetime(2026, 12, 3, 9, 31)) == "human"
    suppression.opt_out(db, ann.address, suppression.LINK, "the unsubscribe link")
    db.commit()
    sendgrid.apply_events(db, app.secret, [{"sg_event_id": "sg-1", "event": "spamreport", "timestamp": 1796641200,
                                            sendgrid.UNIQUE_ARG: bob.token, "email": bob.address}])
    db.commit()
    consent.record(db, "carol@example.test", consent.GRANTED, consent.STAFF, source="asked on the phone")
    consent.record(db, "carol@example.test", consent.WITHDRAWN, consent.STAFF, source="asked again")
    db.commit()


def outbox(db) -> list[WebhookEvent]:
    db.expire_all()
    return list(db.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def deliveries_of(db) -> list[WebhookDelivery]:
    db.expire_all()
    return list(db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_each_event_is_written_at_the_place_its_change_happens_with_what_it_is_about(app, db, admin, email):
    add_endpoint(admin, "https://hooks.example.test/in")
    every_event(app, db, email)
    ann, bob = email.recipients
    written = outbox(db)
    assert [event.type for event in written] == list(events.TYPES)  # in the order they happened
    data = {event.type: json.loads(event.data) for event in written}
    assert data[events.OPENED] == {"email_id": email.id, "recipient_id": ann.id, "address": "ann@example.test",
                                   "contact_id": None, "account_id": None, "lead_id": None}
    assert data[events.CLICKED]["url"] == "https://shop.example.test/spring"
    assert data[events.BOUNCED]["detail"] == "550 5.1.1 no such user" and data[events.BOUNCED]["recipient_id"] == bob.id
    assert data[events.COMPLAINED]["address"] == "bob@example.test"
    assert data[events.UNSUBSCRIBED] == {"address": "ann@example.test", "source": "link",
                                         "reason": "the unsubscribe link"}
    assert data[events.CONSENT_WITHDRAWN] == {"address": "carol@example.test", "means": "staff",
                                              "source": "asked again"}
    assert len({event.event_id for event in written}) == len(written)


def test_only_a_persons_first_open_is_an_event_and_a_scanners_load_is_none(app, db, admin, email):
    add_endpoint(admin, "https://hooks.example.test/in", [events.OPENED])
    ann = email.recipients[0]
    load(app, ann, datetime(2026, 12, 3, 9, 30), SCANNER)
    assert outbox(db) == []
    load(app, ann, datetime(2026, 12, 3, 9, 40))
    load(app, ann, datetime(2026, 12, 3, 9, 50))
    assert [(event.type, event.at) for event in outbox(db)] == [(events.OPENED, datetime(2026, 12, 3, 9, 40))]


def test_an_event_is_written_only_with_its_change_and_only_for_a_type_an_endpoint_wants(app, db, admin, email):
    suppression.opt_out(db, "ann@example.test", suppression.LINK, "the link")
    db.commit()
    assert outbox(db) == []  # no endpoint: nothing kept
    add_endpoint(admin, "https://hooks.example.test/in", [events.UNSUBSCRIBED])
    suppression.opt_out(db, "bob@example.test", suppression.LINK, "the link")
    db.rollback()  # the opt-out did not happen: neither did its event
    assert outbox(db) == []
    consent.record(db, "bob@example.test", consent.GRANTED, consent.STAFF, source="phone")
    suppression.opt_out(db, "bob@example.test", suppression.STAFF, "asked by phone")  # staff's: no unsubscribe
    suppression.opt_out(db, "bob@example.test", suppression.ONE_CLICK, "one-click")  # already out: no change
    db.commit()
    assert outbox(db) == []
    suppression.opt_out(db, "carol@example.test", suppression.ONE_CLICK, "one-click")
    db.commit()
    assert [event.type for event in outbox(db)] == [events.UNSUBSCRIBED]


def test_a_receiver_down_for_six_hours_then_up_gets_every_event_exactly_once_after_deduplication(
        app, db, admin, email, receiver, clock, caplog):
    add_endpoint(admin, receiver.url)
    secret = endpoints.secret(app.secret, the_endpoint(db))
    verify = documented_verify()
    receiver.check = lambda headers, body: verify(secret, headers, body, now=clock.timestamp())
    receiver.stop()
    every_event(app, db, email)
    made = {event.event_id for event in outbox(db)}
    assert len(made) == len(events.TYPES)

    caplog.set_level("INFO")
    down_until = clock.now + timedelta(hours=6)
    while clock.now < down_until:
        deliver_due(app.Session, app.secret, clock)
        clock.advance(timedelta(minutes=5))
    tried = deliveries_of(db)
    assert receiver.received == [] and all(delivery.status == "pending" for delivery in tried)
    assert all(delivery.attempts >= 3 for delivery in tried)
    assert secret not in caplog.text

    # Back up; its first answer is lost after it stored the event (500): that event comes again.
    receiver.answers = [500]
    receiver.start()
    for _ in range(24 * 12):
        if all(delivery.status == "delivered" for delivery in deliveries_of(db)):
            break
        deliver_due(app.Session, app.secret, clock)
        clock.advance(timedelta(minutes=5))
    assert [delivery.status for delivery in deliveries_of(db)] == ["delivered"] * len(made)
    assert all(got.answer != 401 for got in receiver.received)  # every signature verified
    stored: dict[str, dict[str, Any]] = {}
    for got in receiver.received:
        body = json.loads(got.body)
        assert got.headers["Coretrack-Event-Id"] == body["id"]
        stored.setdefault(body["id"], body)
    assert len(receiver.received) == len(made) + 1  # the lost answer's event, twice
    assert set(stored) == made
    assert sorted(body["type"] for body in stored.values()) == sorted(events.TYPES)


def test_a_refusal_is_a_dead_letter_at_once_while_timeouts_throttling_and_server_errors_are_tried_again(
        app, db, admin, receiver, clock):
    add_endpoint(admin, receiver.url, [events.CONSENT_GIVEN])
    outcomes = {}
    for number, status in enumerate((400, 401, 404, 410, 422, 408, 429, 500, 502, 503)):
        receiver.answers = [status]
        consent.record(db, f"person{number}@example.test", consent.GRANTED, consent.STAFF, source="phone")
        db.commit()
        deliver_due(app.Session, app.secret, clock)
        delivery = deliveries_of(db)[-1]
        outcomes[status] = (delivery.status, delivery.attempts, delivery.last_status)
        if delivery.status == "pending":
            assert delivery.next_attempt_at == clock.now + RETRY_DELAYS[0]
    assert outcomes == {status: ("dead", 1, status) for status in (400, 401, 404, 410, 422)} | {
        status: ("pending", 1, status) for status in (408, 429, 500, 502, 503)}


def test_a_failing_delivery_is_tried_for_more_than_a_day_then_is_a_dead_letter_and_can_be_sent_again(
        app, db, admin, receiver, clock):
    add_endpoint(admin, receiver.url, [events.CONSENT_GIVEN])
    consent.record(db, "dora@example.test", consent.GRANTED, consent.STAFF, source="phone")
    db.commit()
    receiver.answers = [503] * 100
    first = clock.now
    deliver_due(app.Session, app.secret, clock)
    while (delivery := deliveries_of(db)[0]).status == "pending":
        assert delivery.next_attempt_at is not None
        clock.now = delivery.next_attempt_at
        deliver_due(app.Session, app.secret, clock)
    dead = deliveries_of(db)[0]
    assert dead.status == "dead" and dead.attempts == len(RETRY_DELAYS) + 1 == 13
    assert dead.last_attempt_at - first >= timedelta(hours=24)
    assert len(receiver.received) == 13 and len({got.headers["Coretrack-Event-Id"] for got in receiver.received}) == 1

    page = admin.get(f"/settings/webhooks/{dead.endpoint_id}")
    assert "dead letter" in page.text
    receiver.answers = []
    page.forms[2].submit(status=303)  # the delivery's "Send again"
    deliver_due(app.Session, app.secret, Clock(utcnow()))
    again = deliveries_of(db)[0]
    assert (again.status, again.attempts, again.last_status) == ("delivered", 1, 200)
    assert receiver.received[-1].headers["Coretrack-Event-Id"] == receiver.received[0].headers["Coretrack-Event-Id"]


def test_after_a_rotation_both_secrets_sign_for_a_day_then_only_the_new_one(app, db, admin, receiver):
    add_endpoint(admin, receiver.url, [events.CONSENT_GIVEN])
    endpoint = the_endpoint(db)
    old = endpoints.secret(app.secret, endpoint)
    page = admin.get(f"/settings/webhooks/{endpoint.id}")
    assert old in page.text  # shown to the admin, behind "Show the signing secret"
    page.forms["rotate"].submit(status=303)
    new = endpoints.secret(app.secret, the_endpoint(db))
    assert new != old and old not in the_endpoint(db).secret + the_endpoint(db).previous_secret  # kept encrypted
    verify = documented_verify()
    for number, later in enumerate((timedelta(hours=1), endpoints.ROTATION_WINDOW + timedelta(minutes=1))):
        clock = Clock(utcnow() + later)
        consent.record(db, f"erin{number}@example.test", consent.GRANTED, consent.STAFF, source="phone")
        db.commit()
        deliver_due(app.Session, app.secret, clock)
        got = receiver.received[-1]
        checks = [verify(secret, got.headers, got.body, now=clock.timestamp()) for secret in (new, old)]
        assert checks == ([True, True] if number == 0 else [True, False])
        assert not verify(new, got.headers, got.body + b" ", now=clock.timestamp())  # the body as signed only
        assert not verify(new, got.headers, got.body, now=clock.timestamp() + 600)  # a replay, later


def test_the_webhook_pages_are_for_admins_and_their_forms_need_the_csrf_token(app, db, admin, staff, receiver):
    staff.get("/settings/webhooks", status=403)
    sams_token = csrf.make_token(app.secret, "sam")
    staff.post("/settings/webhooks", {"csrf_token": sams_token, "url": receiver.url, "events": events.DELIVERED},
               status=403)
    admin.post("/settings/webhooks", {"url": receiver.url, "events": events.DELIVERED}, status=403)
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0

    form = admin.get("/settings/webhooks").forms["add-endpoint"]
    form["url"] = "ftp://example.test/"
    refused = form.submit(status=400)
    assert "enter an http:// or https:// URL" in refused.text
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
    add_endpoint(admin, receiver.url)
    endpoint = the_endpoint(db)
    for path in (f"/settings/webhooks/{endpoint.id}", f"/settings/webhooks/{endpoint.id}/rotate",
                 f"/settings/webhooks/{endpoint.id}/delete"):
        staff.get(f"/settings/webhooks/{endpoint.id}", status=403)
        staff.post(path, {"csrf_token": sams_token, "url": receiver.url, "confirm": "yes"}, status=403)
        admin.post(path, {"url": receiver.url, "confirm": "yes"}, status=403)
    assert the_endpoint(db).secret == endpoint.secret and the_endpoint(db).url == receiver.url

    page = admin.get(f"/settings/webhooks/{endpoint.id}")
    edit = page.forms["endpoint"]
    edit["active"] = False
    edit.submit(status=303)
    assert not the_endpoint(db).active
    page = admin.get(f"/settings/webhooks/{endpoint.id}")
    page.forms["delete-endpoint"]["confirm"] = True
    page.forms["delete-endpoint"].submit(status=303)
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_erasing_a_person_removes_the_events_about_their_address_sent_or_not(app, db, admin, email, clock):
    add_endpoint(admin, "https://hooks.example.test/in")
    every_event(app, db, email)
    deliver_due(app.Session, app.secret, clock)  # deliveries made (and failed: no such host)
    assert any(json.loads(event.data).get("address") == "ann@example.test" for event in outbox(db))
    erasure.erase(db, app.secret, "Ann@Example.test", "admin")
    left = outbox(db)
    assert left and all("ann@example.test" not in event.data.lower() for event in left)
    assert len(deliveries_of(db)) == len(left)


def test_the_worker_job_sends_a_new_event_within_seconds(app, db, admin, receiver):
    add_endpoint(admin, receiver.url, [events.CONSENT_GIVEN])
    stop = threading.Event()
    job = threading.Thread(target=watch_webhooks, args=(app.Session, app.config, stop), kwargs={"interval": 0.1})
    job.start()
    try:
        consent.record(db, "fay@example.test", consent.GRANTED, consent.PAGE)
        db.commit()
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        job.join()
    assert [json.loads(got.body)["data"]["address"] for got in receiver.received] == ["fay@example.test"]


def test_one_batch_of_hits_writes_each_recipients_first_open_once(app, db, admin, users):
    add_endpoint(admin, "https://hooks.example.test/in", [events.OPENED])
    email = Email(subject="News", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT)
    email.recipients = [Recipient(address=f"reader{number}@example.test", token=tokens.new_token(app.secret),
                                  status="sent", sent_at=SENT) for number in range(300)]
    db.add(email)
    db.commit()
    batch = [Hit(recipient.token, datetime(2026, 12, 3, 10, minute), "203.0.113.5", THUNDERBIRD)
             for recipient in email.recipients for minute in (5, 1)]
    with write_transaction(app.engine) as connection:
        assert count_hits(connection, batch) == 600
    opened = outbox(db)
    assert sorted(json.loads(event.data)["address"] for event in opened) == sorted(
        recipient.address for recipient in email.recipients)
    assert {event.at for event in opened} == {datetime(2026, 12, 3, 10, 1)}  # the earliest of each
    load(app, email.recipients[0], datetime(2026, 12, 3, 11, 0))
    assert len(outbox(db)) == 300
