"""The public withdrawal page ("Stop measuring my reading"): GET asks and changes nothing; a POST,
with the page's button or a bare one-click POST, withdraws at once, so that the person's old image
records nothing from then on, whatever the policy; "and delete what was measured about me" removes
their events and counts and moves what they amounted to into the emails' anonymous totals."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from support.hit_load import commits, wait_until

from coretrack.models import AccessEvent, AnonymousTotal, ClickEvent, ConsentEvent, Email, EmailLink, Recipient
from coretrack.people import consent
from coretrack.people.consent import WITHDRAWAL_PATH
from coretrack.settings import SettingsService
from coretrack.tracking import tokens
from coretrack.tracking.image import TRACK_ACCESS_PATH

AGENT = "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115"
DAY1, DAY2 = datetime(2026, 3, 2, 9, 30), datetime(2026, 3, 5, 23, 59)


def new_email(app, db, users, *addresses: str) -> Email:
    email = Email(subject="Hello", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent", sent_at=DAY1 - timedelta(hours=1))
    email.recipients = [Recipient(address=address, token=tokens.new_token(app.secret), status="sent",
                                  sent_at=DAY1 - timedelta(hours=1)) for address in addresses]
    db.add(email)
    db.commit()
    return email


def history(db) -> list[ConsentEvent]:
    db.expire_all()
    return list(db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))


def test_the_page_asks_and_changes_nothing(app, anon, db, users):
    (ann,) = new_email(app, db, users, "ann@example.test").recipients
    shown = anon.get(WITHDRAWAL_PATH, {"t": ann.token})
    assert shown.status_int == 200 and "Stop measuring my reading" in shown.text
    form = shown.forms[0]
    assert "delete" in form.fields and not form["delete"].checked and "csrf_token" not in form.fields
    assert "and delete what was measured about me" in shown.text
    anon.head(f"{WITHDRAWAL_PATH}?t={ann.token}")
    assert history(db) == [] and consent.state(db, ann.address) == ""


@pytest.mark.parametrize("body", [b"", b"List-Unsubscribe=One-Click"], ids=["no-body", "rfc8058-body"])
def test_a_bare_post_withdraws_at_once_like_a_one_click_unsubscribe(app, anon, db, users, body):
    (ann,) = new_email(app, db, users, "Ann@example.test").recipients
    consent.record(db, ann.address, consent.GRANTED, consent.STAFF, "asked on the phone")
    db.commit()
    done = anon.post(f"{WITHDRAWAL_PATH}?t={ann.token}", body, extra_environ={"REMOTE_ADDR": "2001:db8:1:2::7"},
                     headers={"User-Agent": AGENT}, content_type="application/x-www-form-urlencoded" if body else None)
    assert done.status_int == 200 and "Your reading is no longer measured" in done.text
    granted, withdrawn = history(db)
    assert (withdrawn.state, withdrawn.means, withdrawn.ip, withdrawn.user_agent, withdrawn.email_id) == (
        consent.WITHDRAWN, consent.PAGE, "2001:db8:1::", AGENT, ann.email_id)
    assert not withdrawn.measurements_deleted and withdrawn.text_version is None
    assert consent.state(db, "ann@example.test") == consent.WITHDRAWN


@pytest.mark.parametrize("policy", [consent.CONSENTED, consent.EVERYONE])
def test_after_a_withdrawal_a_hit_on_the_old_image_a_second_later_records_nothing(app, anon, db, users, policy):
    SettingsService(db, app.config).update({"tracking_policy": policy}, "admin")
    ann, bob = new_email(app, db, users, "ann@example.test", "bob@example.test").recipients
    if policy == consent.CONSENTED:
        for address in ("ann@example.test", "bob@example.test"):
            consent.record(db, address, consent.GRANTED, consent.STAFF, "signed the form at the fair")
        db.commit()

    def hit(recipient) -> tuple[int, int]:
        written = commits(app.tracker.engine)
        anon.get(TRACK_ACCESS_PATH, {"t": recipient.token}, headers={"User-Agent": AGENT})
        wait_until(lambda: written, "the hit to be written", 10)
        db.expire_all()
        events = db.scalar(select(func.count()).where(AccessEvent.recipient_id == recipient.id))
        return db.get(Recipient, recipient.id).access_count, events

    assert hit(ann) == (1, 1)
    anon.get(WITHDRAWAL_PATH, {"t": ann.token}).forms[0].submit()
    time.sleep(1)
    assert hit(ann) == (1, 1)
    assert hit(bob) == (1, 1)  # the same email's other recipient still counts


def add_events(db, recipient: Recipient, link: EmailLink, loads: list[tuple[datetime, int, str]],
               clicks: list[tuple[datetime, int]], uncounted: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Events as counting would have left them, and the counts they and ``uncounted`` (loads, human
    loads, clicks whose events are gone: purged, or coreBOS's imported count) make."""
    db.add_all(AccessEvent(recipient_id=recipient.id, at=at, hits=hits, verdict=verdict, ip="203.0.113.0",
                           user_agent=AGENT) for at, hits, verdict in loads)
    db.add_all(ClickEvent(recipient_id=recipient.id, link_id=link.id, at=at, hits=hits) for at, hits in clicks)
    recipient.access_count = sum(hits for _, hits, _ in loads) + uncounted[0]
    recipient.human_opens = sum(hits for _, hits, verdict in loads if verdict == "human") + uncounted[1]
    recipient.click_count = sum(hits for _, hits in clicks) + uncounted[2]
    recipient.first_access, recipient.last_access = min(at for at, _, _ in loads), max(at for at, _, _ in loads)
    recipient.first_human_at = recipient.first_access
    link.click_count += recipient.click_count
    db.commit()


def totals(db, email_id: int) -> tuple[int, int, int]:
    """An email's loads, likely-human loads and clicks: its recipients' and its anonymous totals'."""
    db.expire_all()
    measured = db.execute(select(func.sum(Recipient.access_count), func.sum(Recipient.human_opens),
                                 func.sum(Recipient.click_count)).where(Recipient.email_id == email_id)).one()
    anonymous = db.execute(select(func.coalesce(func.sum(AnonymousTotal.loads), 0),
                                  func.coalesce(func.sum(AnonymousTotal.human_loads), 0),
                                  func.coalesce(func.sum(AnonymousTotal.clicks), 0))
                           .where(AnonymousTotal.email_id == email_id)).one()
    return tuple(int(a) + int(b) for a, b in zip(measured, anonymous, strict=True))


def test_delete_what_was_measured_removes_the_events_zeroes_the_counts_and_keeps_each_emails_totals(
        app, anon, db, users):
    first = new_email(app, db, users, "Ann@Example.test", "bob@example.test")
    second = new_email(app, db, users, "ann@example.test")
    ann1, bob = first.recipients
    (ann2,) = second.recipients
    links = [EmailLink(email_id=email.id, position=0, url="https://shop.example.com/") for email in (first, second)]
    db.add_all(links)
    # The email's shared image already counted loads that day: the deletion adds to them.
    db.add(AnonymousTotal(email_id=first.id, day=DAY1.date(), loads=7, human_loads=3, clicks=0))
    db.commit()
    add_events(db, ann1, links[0], [(DAY1, 1, "human"), (DAY1 + timedelta(minutes=1), 3, "mail_proxy"),
                                    (DAY2, 2, "human")], [(DAY1 + timedelta(minutes=2), 2)], uncounted=(4, 1, 1))
    add_events(db, bob, links[0], [(DAY1, 1, "human")], [(DAY2, 1)])
    add_events(db, ann2, links[1], [(DAY2, 5, "scanner")], [])
    before = {email.id: totals(db, email.id) for email in (first, second)}
    bob_before = (bob.access_count, bob.human_opens, bob.click_count)

    form = anon.get(WITHDRAWAL_PATH, {"t": ann2.token}).forms[0]
    form["delete"] = True
    done = form.submit()
    assert "What was measured about you is deleted" in done.text
    db.expire_all()
    for recipient in (ann1, ann2):
        row = db.get(Recipient, recipient.id)
        assert (row.access_count, row.human_opens, row.click_count) == (0, 0, 0)
        assert (row.first_access, row.last_access, row.first_human_at) == (None, None, None)
        for table in (AccessEvent, ClickEvent):
            assert db.scalar(select(func.count()).where(table.recipient_id == recipient.id)) == 0
    bob_row = db.get(Recipient, bob.id)
    assert (bob_row.access_count, bob_row.human_opens, bob_row.click_count) == bob_before
    assert db.scalar(select(func.count()).where(AccessEvent.recipient_id == bob.id)) == 1
    assert {email.id: totals(db, email.id) for email in (first, second)} == before
    by_day = {(row.email_id, row.day): (row.loads, row.human_loads, row.clicks)
              for row in db.scalars(select(AnonymousTotal))}
    # By the events' days; what no event stood for on the day of the last access.
    assert by_day == {(first.id, DAY1.date()): (7 + 1 + 3, 3 + 1, 2), (first.id, DAY2.date()): (2 + 4, 2 + 1, 1),
                      (second.id, DAY2.date()): (5, 0, 0)}
    assert [link.click_count for link in db.scalars(select(EmailLink).order_by(EmailLink.id))] == [4, 0]
    assert [(event.state, event.measurements_deleted) for event in history(db)] == [(consent.WITHDRAWN, True)]
