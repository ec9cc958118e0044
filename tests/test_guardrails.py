"""Guardrails: a mass send whose hard bounces or spam complaints (reported by SendGrid's signed
webhook) cross the thresholds of the settings, once enough are delivered, is paused before its next
batch; its sender is told in the app and by email with the figures; an admin resumes it (then it is
not paused again) or it is cancelled, each audited; a batch already claimed is still sent and recorded.
The deliverability panel shows the rates against Gmail's and Yahoo's limits."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from coretrack.delivery_reports import classes, deliveries, sendgrid
from coretrack.models import Email, Notification, Recipient, SendPause, utcnow
from coretrack.sending import delivery, guardrails
from coretrack.sending.claims import Outcome, claim_batch, record_batch
from coretrack.sending.delivery import deliver
from coretrack.sending.measuring import Measuring
from coretrack.sending.worker import run_worker
from coretrack.settings import SettingsService
from coretrack.validation import ValidationError

ADDRESSES = [f"person{number:02}@example.test" for number in range(20)]


@pytest.fixture
def signing_key(db, config):
    """SendGrid's webhook key pair: its public half pasted into the settings."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    SettingsService(db, config).update({"sendgrid_webhook_key": base64.b64encode(der).decode()}, user_name="admin")
    return key


def report(anon, key, recipient: Recipient, kind: str, event_id: str, **fields) -> None:
    """One event posted to the SendGrid webhook, signed as SendGrid signs it."""
    body = json.dumps([{"email": recipient.address, "timestamp": int(time.time()), "event": kind,
                        "sg_event_id": event_id, "sg_message_id": "m1.filter", sendgrid.UNIQUE_ARG: recipient.token,
                        **fields}]).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    anon.post("/webhooks/sendgrid", body, content_type="application/json", status=204,
              headers={sendgrid.SIGNATURE_HEADER: signature, sendgrid.TIMESTAMP_HEADER: stamp})


def hard_bounce(anon, key, recipient: Recipient) -> None:
    report(anon, key, recipient, "bounce", f"bounce-{recipient.id}", status="5.1.1", reason="550 no such user",
           type="bounce")


@pytest.fixture
def guarded(db, config, smtp_settings):
    """Small thresholds' base, so that eight messages are enough to judge a send."""
    SettingsService(db, config).update({"guardrail_minimum": "5"}, user_name="admin")
    return smtp_settings[0]


@pytest.fixture
def mass_send(db, send, guarded) -> Email:
    """A mass send to 20, queued for the worker; its first 8 delivered (one worker turn's worth)."""
    email = send.compose(to=ADDRESSES, subject="Spring news").email
    email.mass_send = True
    db.commit()
    turn(send.app, email)
    return email


def turn(app, email: Email, limit: int = 8) -> int:
    """One turn of the worker for the email: what it sent."""
    return deliver(app.Session, app.config, email.id, limit=limit).processed


def statuses(db, email: Email) -> dict[str, int]:
    db.expire_all()
    return dict(db.execute(select(Recipient.status, func.count()).where(Recipient.email_id == email.id)
                           .group_by(Recipient.status)).all())


def sent_recipients(db, email: Email) -> list[Recipient]:
    return list(db.scalars(select(Recipient).where(Recipient.email_id == email.id, Recipient.status == "sent")
                           .order_by(Recipient.id)))


def paused_messages(sink) -> list:
    return [mail for mail in sink.received if str(mail.message["Subject"]).startswith("Paused:")]


def test_a_mass_send_past_the_hard_bounce_threshold_is_paused_and_its_sender_told_with_the_figures(
        app, anon, staff, db, mass_send, signing_key, guarded):
    assert turn(app, mass_send) == 8  # nothing bounced yet: the next turn goes
    hard_bounce(anon, signing_key, sent_recipients(db, mass_send)[0])
    assert turn(app, mass_send) == 0  # judged before its next batch: nothing more claimed
    assert statuses(db, mass_send) == {"sent": 16, "pending": 4}
    assert db.get(Email, mass_send.id).status == "paused"
    figures = "1 hard bounce of 16 handed over (6.2%), 0 spam complaints of 15 delivered (0.0%)"
    told = paused_messages(guarded)
    assert len(told) == 1 and told[0].rcpt_tos == ["crm@example.test"]  # sam has no notification address
    assert f"hard bounces reached 2%: {figures}" in told[0].message.get_content()
    assert len(guarded.received) == 16 + 1
    notification = db.scalars(select(Notification).where(Notification.kind == "paused")).one()
    assert (notification.user_id, notification.email_id, notification.recipient_id) == (
        mass_send.sender_id, mass_send.id, None)
    assert figures in staff.get("/notifications").html.select_one("td.paused").text
    page = staff.get(f"/emails/{mass_send.id}")
    assert figures in page.html.select_one("#paused").text
    assert "resume" not in page.forms  # the sender may cancel it; only an admin may resume it
    # The worker leaves it alone until then: no further turn sends anything, and no second pause.
    run_worker(app.Session, app.config, once=True)
    assert statuses(db, mass_send) == {"sent": 16, "pending": 4}
    assert len(paused_messages(guarded)) == 1
    assert db.scalar(select(func.count()).select_from(SendPause)) == 1


def test_an_admin_resumes_a_paused_send_which_then_goes_out_whole_and_is_not_paused_again(
        app, anon, admin, staff, db, mass_send, signing_key, guarded):
    hard_bounce(anon, signing_key, sent_recipients(db, mass_send)[0])
    turn(app, mass_send)
    staff.post(f"/emails/{mass_send.id}/resume", {"csrf_token": "x"}, status=403)
    page = admin.get(f"/emails/{mass_send.id}")
    answer = page.forms["resume"].submit(status=303).follow()
    assert "Resumed" in answer.text
    run_worker(app.Session, app.config, once=True)
    assert statuses(db, mass_send) == {"sent": 20}
    assert sorted(mail.rcpt_tos[0] for mail in guarded.received if mail.rcpt_tos[0] in ADDRESSES) == ADDRESSES
    audit = db.scalars(select(SendPause)).one()
    assert (audit.ended_as, audit.ended_by, audit.hard_bounced, audit.sent) == ("resumed", "admin", 1, 8)
    assert len(paused_messages(guarded)) == 1
    # A second resume finds nothing paused: a clear refusal, nothing changed.
    admin.post(f"/emails/{mass_send.id}/resume", {"csrf_token": page.forms["resume"]["csrf_token"].value},
               status=409)


def test_a_paused_send_cancelled_stops_its_unsent_recipients_and_the_pause_ends_as_cancelled(
        app, anon, admin, db, mass_send, signing_key):
    hard_bounce(anon, signing_key, sent_recipients(db, mass_send)[0])
    turn(app, mass_send)
    form = admin.get(f"/emails/{mass_send.id}?confirm=cancel").forms["cancel"]
    form["confirm"] = True
    assert "12 recipients will not get this email" in form.submit(status=303).follow().text
    assert statuses(db, mass_send) == {"sent": 8, "cancelled": 12}
    assert db.get(Email, mass_send.id).status == "cancelled"
    audit = db.scalars(select(SendPause)).one()
    assert (audit.ended_as, audit.ended_by) == ("cancelled", "admin") and audit.ended_at is not None
    assert admin.get(f"/emails/{mass_send.id}").html.select_one("#paused") is None


def test_spam_complaints_past_their_threshold_pause_the_send_too(app, anon, db, mass_send, signing_key, guarded):
    report(anon, signing_key, sent_recipients(db, mass_send)[3], "spamreport", "complaint-1")
    turn(app, mass_send)
    assert statuses(db, mass_send) == {"sent": 8, "pending": 12}
    audit = db.scalars(select(SendPause)).one()
    assert audit.reason == ("spam complaints reached 0.1%: 0 hard bounces of 8 handed over (0.0%), "
                            "1 spam complaint of 8 delivered (12.5%)")


def test_below_the_minimum_delivered_or_with_the_thresholds_at_0_or_for_a_single_email_nothing_is_paused(
        app, anon, db, config, send, mass_send, signing_key, guarded):
    settings = SettingsService(db, config)
    settings.update({"guardrail_minimum": "8"}, user_name="admin")
    hard_bounce(anon, signing_key, sent_recipients(db, mass_send)[0])  # 7 delivered: too few to judge
    assert turn(app, mass_send, limit=2) == 2
    settings.update({"guardrail_minimum": "5", "guardrail_bounce_percent": "0"}, user_name="admin")
    assert turn(app, mass_send, limit=2) == 2  # bounces never pause now
    settings.update({"guardrail_bounce_percent": "50"}, user_name="admin")
    assert turn(app, mass_send, limit=2) == 2  # 1 of 12: under 50%
    single = send.compose(to=ADDRESSES[:8], subject="Not a mass send").email
    turn(app, single)
    hard_bounce(anon, signing_key, sent_recipients(db, single)[0])
    hard_bounce(anon, signing_key, sent_recipients(db, single)[1])
    settings.update({"guardrail_bounce_percent": "2"}, user_name="admin")
    assert db.scalar(select(func.count()).select_from(SendPause)) == 0
    assert db.get(Email, single.id).paused_at is None


def test_a_long_delivery_judges_the_send_again_between_batches_and_stops_claiming_once_paused(
        app, db, send, guarded, monkeypatch):
    monkeypatch.setattr(delivery, "BATCH_SIZE", 4)
    monkeypatch.setattr(guardrails, "CHECK_SECONDS", 0.0)  # every batch (10 s in production)
    email = send.compose(to=ADDRESSES, subject="One long turn").email
    email.mass_send = True
    db.commit()
    handed_over = []

    def bounce_the_sixth(count: int) -> None:  # a DSN arriving while the send goes on
        handed_over.append(count)
        if len(handed_over) == 6:
            with app.Session() as session:
                first = session.scalars(select(Recipient.id).where(Recipient.email_id == email.id,
                                                                   Recipient.status == "sent")).first()
                deliveries.record_delivery(session, first, "bounced", "5.1.1 no such user", utcnow(), classes.HARD)
                session.commit()

    report = deliver(app.Session, app.config, email.id, on_progress=bounce_the_sixth)
    # The sixth message was in the second batch of 4, which was finished; the third was never claimed.
    assert report.sent == 8
    assert statuses(db, email) == {"sent": 8, "pending": 12}
    assert db.get(Email, email.id).status == "paused"


def test_a_batch_claimed_before_the_pause_is_still_sent_and_recorded_and_nothing_more_is_claimed(
        app, db, config, mass_send):
    email = db.get(Email, mass_send.id)
    measuring = Measuring.of(db, config, email)
    claimed = claim_batch(db, email.id, 3, measuring)
    email.paused_at = email.created_at
    db.commit()
    assert claim_batch(db, email.id, 3, measuring) == []  # every worker: the claim itself reads the pause
    record_batch(db, email.id, [Outcome(row[0], "sent", "250 OK", email.created_at) for row in claimed], [], [])
    assert statuses(db, email) == {"sent": 11, "pending": 9}


def test_thresholds_are_settings_typed_as_percentages_and_refused_with_a_reason_when_not(db, config, admin):
    settings = SettingsService(db, config)
    assert (settings.get("guardrail_bounce_percent"), settings.get("guardrail_complaint_percent"),
            settings.get("guardrail_minimum")) == ("2", "0.1", 1000)
    settings.update({"guardrail_complaint_percent": "0,05 %"}, user_name="admin")
    assert settings.get("guardrail_complaint_percent") == "0.05"
    for bad in ("abc", "0.001", "101", "-1", "NaN"):
        with pytest.raises(ValidationError) as refused:
            settings.update({"guardrail_bounce_percent": bad}, user_name="admin")
        assert "guardrail_bounce_percent" in refused.value.errors
    assert settings.get("guardrail_bounce_percent") == "2"
    page = admin.get("/settings")
    assert page.html.select_one("#guardrails legend").text == "Guardrails"


def test_the_deliverability_panel_shows_the_rates_against_the_providers_limits(
        app, anon, admin, db, mass_send, signing_key):
    recipients = sent_recipients(db, mass_send)
    hard_bounce(anon, signing_key, recipients[0])
    report(anon, signing_key, recipients[1], "spamreport", "complaint-1")
    report(anon, signing_key, recipients[2], "unsubscribe", "unsubscribe-1")
    for page in (admin.get(f"/emails/{mass_send.id}"), admin.get("/settings/deliverability")):
        rows = {row["id"]: [cell.text.strip() for cell in row.select("td")]
                for row in page.html.select("#deliverability tbody tr")}
        assert rows["deliverability-hard_bounced"][1:3] == ["12.50%", "1 of 8 handed over"]
        assert rows["deliverability-complained"][1:3] == ["14.29%", "1 of 7 delivered"]
        assert "Gmail asks for under 0.1%" in rows["deliverability-complained"][3]
        assert rows["deliverability-complained"][4] == "over the limit"
        assert rows["deliverability-unsubscribed"][1:3] == ["14.29%", "1 of 7 delivered"]
        assert rows["deliverability-delivered"][1:3] == ["87.50%", "7 of 8 handed over"]
