"""Opens people can trust: every load is kept and counted, each with its verdict and reason, and
the likely-human ones counted apart (tracking.classify, applied by count_hits on every hit path)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from coretrack import sendgrid, tokens
from coretrack.models import AccessEvent, Email, Recipient
from coretrack.tracking import Hit

SENT = datetime(2026, 11, 2, 9, 0)
LATER = SENT + timedelta(hours=2)
READER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.fixture
def recipient(app, db, users):
    email = Email(subject="Hello", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT)
    email.recipients = [Recipient(address="ann@example.test", token=tokens.new_token(app.secret), status="sent",
                                  sent_at=SENT)]
    db.add(email)
    db.commit()
    return email.recipients[0]


def judged(app, db, recipient, hit_kwargs):
    """The stored verdict and reason of one load, and the recipient's two counts after it."""
    hit = Hit(recipient.token, **{"at": LATER, "ip": "198.51.100.7", "user_agent": READER, **hit_kwargs})
    app.tracker.record([hit])
    db.expire_all()
    event = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id)).one()
    row = db.get(Recipient, recipient.id)
    return event.verdict, event.reason, row.access_count, row.human_opens, row.first_human_at


@pytest.mark.parametrize(
    "hit, verdict, reason",
    [
        ({"user_agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"},
         "mail_proxy", "Google image proxy"),
        ({"user_agent": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"},
         "mail_proxy", "Yahoo image proxy"),
        ({"user_agent": "Mozilla/5.0 (Windows NT 10.0) Outlook-Image-Proxy"}, "mail_proxy", "Outlook image proxy"),
        ({"user_agent": "Mozilla/5.0"}, "privacy_prefetch", "Apple Mail Privacy Protection's bare agent"),
        ({"ip": "17.58.101.4"}, "privacy_prefetch", "Apple address block (17.0.0.0/8)"),
        ({"at": SENT + timedelta(seconds=40)}, "privacy_prefetch", "loaded right at delivery"),
        ({"user_agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}, "scanner", "security scanner's agent"),
        ({"at": SENT + timedelta(seconds=3)}, "scanner", "loaded within seconds of the send"),
        ({"provider_verdict": sendgrid.MACHINE_OPEN}, "mail_proxy", "SendGrid sg_machine_open"),
    ],
)
def test_a_machine_load_is_counted_and_kept_with_its_reason_but_is_no_human_open(app, db, recipient, hit, verdict,
                                                                                  reason):
    assert judged(app, db, recipient, hit) == (verdict, reason, 1, 0, None)


def test_a_reader_load_later_on_is_a_human_open(app, db, recipient):
    assert judged(app, db, recipient, {}) == ("human", "", 1, 1, LATER)


def test_the_apple_address_is_judged_before_the_storage_policy_truncates_it(app, db, recipient):
    app.settings(db).update({"ip_storage": "truncated"}, "admin")
    verdict, _, _, _, _ = judged(app, db, recipient, {"ip": "17.58.101.4"})
    stored = db.scalar(select(AccessEvent.ip).where(AccessEvent.recipient_id == recipient.id))
    assert (verdict, stored) == ("privacy_prefetch", "17.58.101.0")


def test_at_delivery_means_the_providers_delivery_time_when_it_reported_one(app, db, recipient):
    recipient.delivery_at = SENT + timedelta(minutes=30)
    db.commit()
    verdict, reason, *_ = judged(app, db, recipient, {"at": SENT + timedelta(minutes=30, seconds=20)})
    assert (verdict, reason) == ("privacy_prefetch", "loaded right at delivery")


def test_a_batch_counts_every_load_and_the_human_ones_apart(app, db, recipient):
    app.tracker.record([Hit(recipient.token, LATER, "198.51.100.7", READER),
                        Hit(recipient.token, LATER + timedelta(minutes=1), "198.51.100.7", "Mozilla/5.0"),
                        Hit(recipient.token, LATER + timedelta(minutes=2), "198.51.100.7", READER)])
    app.tracker.record([Hit(recipient.token, LATER + timedelta(minutes=3), "198.51.100.7", READER)])
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.human_opens, row.first_human_at) == (4, 3, LATER)
