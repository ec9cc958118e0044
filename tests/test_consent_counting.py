"""What a hit records depends on the person's consent as it stood at the hit's own time: a
recipient whose reading is not measured records nothing, a refusal or withdrawal stops recording at
once (also for hits counted later, as the hit log's lines are), and the anonymous image adds only to
its email's per-day total.  The same rules hold for clicks and SendGrid's opens and clicks."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from coretrack.delivery_reports import sendgrid
from coretrack.models import (
    AccessEvent,
    AnonymousTotal,
    ClickEvent,
    DeliveryEvent,
    Email,
    EmailLink,
    Notification,
    Recipient,
    utcnow,
)
from coretrack.people import consent
from coretrack.people.measurements import delete_measurements
from coretrack.settings import SettingsService
from coretrack.tracking import anonymous, clicks, tokens
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hits import Hit
from coretrack.tracking.image import countable

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SENT = utcnow() - timedelta(hours=2)


@pytest.fixture
def email(app, db, users):
    """An email sent two hours ago: ann@ measured, bob@ measured, cid@ not measured."""
    sent = Email(subject="Spring", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                 status="sent", sent_at=SENT)
    sent.recipients = [Recipient(address=address, token=tokens.new_token(app.secret), status="sent", sent_at=SENT,
                                 tracked=tracked)
                       for address, tracked in (("Ann@Example.test", True), ("bob@example.test", True),
                                                ("cid@example.test", False))]
    sent.links = [EmailLink(position=0, url="https://shop.example.com/")]
    db.add(sent)
    db.commit()
    return sent


def count(app, hits: list[Hit]) -> int:
    with write_transaction(app.tracker.engine) as connection:
        return count_hits(connection, hits)


def hit(token: str, at, agent: str = PERSON) -> Hit:
    return Hit(token, at, "198.51.100.7", agent)


def events_of(db, recipient: Recipient) -> tuple[int, int]:
    db.expire_all()
    return (db.get(Recipient, recipient.id).access_count,
            db.scalar(select(func.count()).select_from(AccessEvent).where(AccessEvent.recipient_id == recipient.id)))


def test_a_recipient_whose_reading_is_not_measured_records_nothing_even_with_their_own_token(app, db, email):
    ann, _, cid = email.recipients
    assert count(app, [hit(cid.token, utcnow()), hit(ann.token, utcnow())]) == 1
    assert events_of(db, cid) == (0, 0)
    assert events_of(db, ann) == (1, 1)


def test_a_withdrawal_stops_recording_from_its_moment_on_for_hits_counted_later_too(app, db, email):
    ann, bob, _ = email.recipients
    withdrawn_at = utcnow() - timedelta(minutes=5)
    consent.record(db, "ann@example.test", consent.GRANTED, consent.PAGE, at=withdrawn_at - timedelta(hours=1))
    consent.record(db, "ann@example.test", consent.WITHDRAWN, consent.PAGE, at=withdrawn_at)
    db.commit()
    # Lines of a hit log read after the withdrawal: each judged by its own time.
    before, after = withdrawn_at - timedelta(seconds=1), withdrawn_at + timedelta(seconds=1)
    assert count(app, [hit(ann.token, before), hit(ann.token, after), hit(bob.token, after)]) == 2
    assert events_of(db, ann) == (1, 1)
    assert db.scalar(select(AccessEvent.at).where(AccessEvent.recipient_id == ann.id)) == before
    assert events_of(db, bob) == (1, 1)


def test_a_refusal_stops_recording_and_a_later_grant_lets_it_resume(app, db, email):
    ann = email.recipients[0]
    refused_at = utcnow() - timedelta(minutes=10)
    consent.record(db, "ANN@example.test", consent.REFUSED, consent.STAFF, "said so on the phone", at=refused_at)
    consent.record(db, "ann@example.test", consent.GRANTED, consent.PAGE, at=refused_at + timedelta(minutes=5))
    db.commit()
    assert count(app, [hit(ann.token, refused_at + timedelta(minutes=1)),
                       hit(ann.token, refused_at + timedelta(minutes=6))]) == 1
    assert events_of(db, ann) == (1, 1)


def test_the_anonymous_image_adds_to_its_email_s_total_for_the_day_and_keeps_nothing_personal(app, db, email):
    token = anonymous.token(app.secret, email.id)
    assert countable(app.secret, token)
    today = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    loads = [hit(token, today), hit(token, today + timedelta(minutes=1)),
             hit(token, today + timedelta(minutes=2), agent="YahooMailProxy"),
             hit(token, today - timedelta(days=1))]
    assert count(app, loads + [loads[0]]) == 4  # the same hit twice in a batch counts once
    totals = {row.day: (row.loads, row.human_loads) for row in db.scalars(
        select(AnonymousTotal).where(AnonymousTotal.email_id == email.id))}
    assert totals == {today.date(): (3, 2), (today - timedelta(days=1)).date(): (1, 1)}
    assert count(app, [hit(token, today + timedelta(minutes=3))]) == 1
    db.expire_all()
    assert db.get(AnonymousTotal, (email.id, today.date())).loads == 4
    assert db.scalar(select(func.count()).select_from(AccessEvent)) == 0
    assert sum(recipient.access_count for recipient in db.scalars(select(Recipient))) == 0


def test_an_anonymous_token_is_signed_and_names_only_an_existing_email(app, db, email):
    forged = f"{anonymous.PREFIX}{email.id}.{'A' * 22}"
    assert not countable(app.secret, forged)
    assert not anonymous.verify(app.secret, anonymous.token(b"another install", email.id))
    assert count(app, [hit(anonymous.token(app.secret, email.id + 1000), utcnow())]) == 0
    assert db.scalar(select(func.count()).select_from(AnonymousTotal)) == 0


def test_anonymous_loads_made_while_tracking_was_off_count_nothing(app, db, email):
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, user_name="admin")
    assert count(app, [hit(anonymous.token(app.secret, email.id), utcnow() + timedelta(seconds=1))]) == 0


def test_clicks_of_an_unmeasured_or_withdrawn_recipient_record_nothing(app, db, email):
    ann, bob, cid = email.recipients
    link = email.links[0]
    consent.record(db, "bob@example.test", consent.WITHDRAWN, consent.PAGE, at=utcnow() - timedelta(seconds=1))
    db.commit()
    assert clicks.record(db, cid, link, "198.51.100.7", PERSON, "truncated") is None
    assert clicks.record(db, bob, link, "198.51.100.7", PERSON, "truncated") is None
    assert clicks.record(db, ann, link, "198.51.100.7", PERSON, "truncated") == "human"
    db.expire_all()
    assert [(r.address, r.click_count) for r in db.scalars(select(Recipient).order_by(Recipient.id))] == [
        ("Ann@Example.test", 1), ("bob@example.test", 0), ("cid@example.test", 0)]
    assert db.scalar(select(func.count()).select_from(ClickEvent)) == 1


def test_sendgrid_opens_and_clicks_of_those_not_measured_keep_nothing_while_deliveries_still_apply(app, db, email):
    ann, bob, cid = email.recipients
    consent.record(db, "bob@example.test", consent.WITHDRAWN, consent.PAGE, at=utcnow() - timedelta(minutes=1))
    db.commit()
    now = int(time.time())
    events = []
    for number, recipient in enumerate((ann, bob, cid)):
        for kind in ("open", "click", "delivered"):
            events.append({"sg_event_id": f"{kind}-{number}", "event": kind, "timestamp": now,
                           sendgrid.UNIQUE_ARG: recipient.token, "url": "https://shop.example.com/",
                           "useragent": PERSON, "ip": "198.51.100.7"})
    sendgrid.apply_events(db, app.secret, events)
    db.commit()
    kept = {(recipient_id, kind) for recipient_id, kind in db.execute(select(DeliveryEvent.recipient_id,
                                                                             DeliveryEvent.event))}
    assert kept == {(ann.id, "open"), (ann.id, "click"), (ann.id, "delivered"), (bob.id, "delivered"),
                    (cid.id, "delivered")}
    assert [events_of(db, recipient)[0] for recipient in (ann, bob, cid)] == [1, 0, 0]
    assert db.get(Recipient, cid.id).delivery_status == "delivered"


def test_a_hit_made_before_a_withdrawal_that_deleted_the_measurements_records_nothing_when_counted_after(
        app, db, email):
    ann, bob, _ = email.recipients
    made = utcnow() - timedelta(seconds=30)  # made just before; its log line is read just after
    consent.record(db, "ann@example.test", consent.WITHDRAWN, consent.PAGE, measurements_deleted=True)
    consent.record(db, "bob@example.test", consent.WITHDRAWN, consent.PAGE)  # withdrawn, nothing deleted
    db.commit()
    assert count(app, [hit(ann.token, made), hit(bob.token, made)]) == 1
    assert events_of(db, ann) == (0, 0)
    assert events_of(db, bob) == (1, 1)


def test_deleting_what_was_measured_also_deletes_providers_reports_of_reading_and_the_senders_notices(
        app, db, email, users):
    ann = email.recipients[0]
    sendgrid.apply_events(db, app.secret, [
        {"sg_event_id": f"{kind}-1", "event": kind, "timestamp": int(time.time()), sendgrid.UNIQUE_ARG: ann.token,
         "url": "https://shop.example.com/", "useragent": PERSON, "ip": "198.51.100.7"}
        for kind in ("open", "click", "delivered")])
    db.add(Notification(user_id=users["sam"].id, email_id=email.id, recipient_id=ann.id, at=utcnow()))
    db.commit()
    delete_measurements(db, "ANN@example.test")
    db.commit()
    assert set(db.scalars(select(DeliveryEvent.event).where(DeliveryEvent.recipient_id == ann.id))) == {"delivered"}
    assert db.scalar(select(func.count()).select_from(Notification)) == 0
    assert db.get(Recipient, ann.id).notified_at is None
