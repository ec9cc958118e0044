"""SendGrid: the relay preset tags each message with its recipient; the signed Event Webhook is
verified (forged, stale, replayed, tampered deliveries refused or ignored) and applied in order of
strength (a late "delivered" never undoes a bounce)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from coretrack.delivery_reports import sendgrid
from coretrack.models import AccessEvent, ClickEvent, Contact, DeliveryEvent, Lead, Recipient, Setting
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver
from coretrack.sending.mime import MessageTemplate
from coretrack.settings import SettingsService
from coretrack.tracking import tokens
from coretrack.tracking.counting import EVENTS_PER_RECIPIENT_PER_MINUTE
from coretrack.tracking.hits import Hit
from coretrack.validation import ValidationError

WEBHOOK = "/webhooks/sendgrid"


def public_key_text(private_key) -> str:
    der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture
def signing_key(db, config):
    """A key pair made for the test; its public half pasted into the configuration editor."""
    key = ec.generate_private_key(ec.SECP256R1())
    SettingsService(db, config).update({"sendgrid_webhook_key": public_key_text(key)}, user_name="admin")
    return key


def signed_headers(key, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(), sendgrid.TIMESTAMP_HEADER: stamp}


def post(anon, key, events, *, timestamp=None, status=204, body: bytes | None = None):
    body = json.dumps(events).encode() if body is None else body
    return anon.post(WEBHOOK, body, headers=signed_headers(key, body, timestamp), content_type="application/json",
                     status=status)


@pytest.fixture
def contact(db):
    person = Contact(first_name="Ann", last_name="Example", email="ann@example.test")
    db.add(person)
    db.commit()
    return person


@pytest.fixture
def recipient(app, db, users, contact) -> Recipient:
    prepared = prepare(db, to=[f"contact:{contact.id}"], subject="Hello", html="<p>Hi</p>")
    email = compose(db, app.config, users["sam"], prepared).email
    return email.recipients[0]


def event(recipient, kind: str, event_id: str, at: int | None = None, **fields):
    return {"email": recipient.address, "timestamp": at or int(time.time()), "event": kind, "sg_event_id": event_id,
            "sg_message_id": "m1.filter", sendgrid.UNIQUE_ARG: recipient.token, **fields}


def state(db, recipient) -> tuple[str, str]:
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    return row.delivery_status, row.delivery_detail


def stored_events(db) -> list[tuple[str, str]]:
    return [(row.event_id, row.event) for row in db.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id))]


# -- the preset and the tag ------------------------------------------------------------------------


def test_the_sendgrid_preset_fills_in_the_relay_whatever_the_form_says(db, config):
    settings = SettingsService(db, config)
    settings.update({"smtp_preset": "sendgrid", "smtp_host": "mail.example.test", "smtp_port": "25",
                     "smtp_security": "none", "smtp_username": "", "smtp_password": "SG.secret-api-key"},
                    user_name="admin")
    server = settings.smtp_server()
    assert (server.host, server.port, server.security, server.username, server.password) == (
        "smtp.sendgrid.net", 587, "starttls", "apikey", "SG.secret-api-key")


def test_the_configuration_editor_offers_the_preset(admin):
    form = admin.get("/settings").forms["settings-form"]
    assert form["smtp_preset"].options[1][0] == "sendgrid"
    form["smtp_preset"] = "sendgrid"
    form["smtp_password"] = "SG.key"
    form.submit().follow()
    assert admin.get("/settings").forms["settings-form"]["smtp_host"].value == "smtp.sendgrid.net"


def test_through_the_preset_each_message_names_its_recipients_token_in_x_smtpapi(app, db, users, smtp_server):
    sink, port = smtp_server
    SettingsService(db, app.config).update({"smtp_preset": "sendgrid", "from_address": "crm@example.test"},
                                           user_name="admin")
    # As if smtp.sendgrid.net were the test server (the preset holds the real relay's name).
    db.merge(Setting(key="smtp_host", value="127.0.0.1"))
    db.merge(Setting(key="smtp_port", value=str(port)))
    db.merge(Setting(key="smtp_security", value="none"))
    db.merge(Setting(key="smtp_username", value=""))
    db.commit()
    prepared = prepare(db, to=["ann@example.test", "bob@example.test"], subject="Hi", html="<p>Hi</p>")
    email = compose(db, app.config, users["sam"], prepared).email
    deliver(app.Session, app.config, email.id)
    tokens_by_address = {r.address: r.token for r in email.recipients}
    assert len(sink.received) == 2
    for mail in sink.received:
        tag = json.loads(mail.message["X-SMTPAPI"])
        assert tag == {"unique_args": {sendgrid.UNIQUE_ARG: tokens_by_address[mail.rcpt_tos[0]]}}


def test_without_the_preset_no_message_carries_x_smtpapi(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    prepared = prepare(db, to=["ann@example.test"], subject="Hi", html="<p>Hi</p>")
    deliver(app.Session, app.config, compose(db, app.config, users["sam"], prepared).email.id)
    assert sink.received[0].message["X-SMTPAPI"] is None


def test_the_verification_key_is_checked_when_saved(db, config):
    settings = SettingsService(db, config)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in ("not base64!", base64.b64encode(b"garbage").decode(), public_key_text(rsa_key)):
        with pytest.raises(ValidationError) as refused:
            settings.update({"sendgrid_webhook_key": bad}, user_name="admin")
        assert "sendgrid_webhook_key" in refused.value.errors
    assert settings.get("sendgrid_webhook_key") == ""
    good = public_key_text(ec.generate_private_key(ec.SECP256R1()))
    # Pasted with a line break in it: kept without.
    settings.update({"sendgrid_webhook_key": good[:40] + "\n" + good[40:]}, user_name="admin")
    assert settings.get("sendgrid_webhook_key") == good


# -- the webhook: who may post ---------------------------------------------------------------------


def test_a_signed_delivery_event_is_applied_to_its_recipient(anon, db, signing_key, recipient):
    post(anon, signing_key, [event(recipient, "delivered", "ev-1", response="250 2.0.0 OK")])
    assert state(db, recipient) == ("delivered", "250 2.0.0 OK")
    assert stored_events(db) == [("ev-1", "delivered")]


def test_forged_unsigned_stale_future_and_tampered_deliveries_are_refused_without_detail(
        anon, db, signing_key, recipient):
    events = [event(recipient, "bounce", "ev-1", status="5.1.1", reason="no such user")]
    body = json.dumps(events).encode()
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    attempts = {
        "signed with another key": signed_headers(other_key, body),
        "no headers": {},
        "no signature": {sendgrid.TIMESTAMP_HEADER: str(now)},
        "stale (a day and a minute)": signed_headers(signing_key, body, now - sendgrid.MAX_AGE_SECONDS - 60),
        "from the future": signed_headers(signing_key, body, now + 3600),
        "signature not base64": {**signed_headers(signing_key, body), sendgrid.SIGNATURE_HEADER: "%%%"},
        "timestamp changed after signing": {**signed_headers(signing_key, body, now - 5),
                                            sendgrid.TIMESTAMP_HEADER: str(now)},
    }
    answers = set()
    for name, headers in attempts.items():
        reply = anon.post(WEBHOOK, body, headers=headers, content_type="application/json", expect_errors=True)
        assert reply.status_int == 403, name
        answers.add(reply.body)
    tampered = body.replace(b"5.1.1", b"5.1.2")
    reply = anon.post(WEBHOOK, tampered, headers=signed_headers(signing_key, body), content_type="application/json",
                      expect_errors=True)
    assert reply.status_int == 403
    answers.add(reply.body)
    assert answers == {b"forbidden\n"}  # the same answer whatever was wrong
    assert state(db, recipient) == ("", "")
    assert stored_events(db) == []
    assert not db.get(Contact, recipient.contact_id).email_opt_out


def test_a_retry_signed_23_hours_ago_is_still_taken_and_a_replay_of_it_changes_nothing(
        anon, db, signing_key, recipient):
    """SendGrid retries for up to 24 hours and does not say it signs a retry afresh."""
    signed_long_ago = int(time.time()) - 23 * 3600
    post(anon, signing_key, [event(recipient, "processed", "ev-1")], timestamp=signed_long_ago)
    assert state(db, recipient)[0] == "processed"
    post(anon, signing_key, [event(recipient, "processed", "ev-1"), event(recipient, "open", "ev-2")],
         timestamp=signed_long_ago)
    post(anon, signing_key, [event(recipient, "open", "ev-2")], timestamp=signed_long_ago)
    assert stored_events(db) == [("ev-1", "processed"), ("ev-2", "open")]
    db.expire_all()
    assert db.get(Recipient, recipient.id).access_count == 1


def test_without_a_key_configured_every_delivery_is_refused(anon, db, recipient):
    key = ec.generate_private_key(ec.SECP256R1())
    post(anon, key, [event(recipient, "delivered", "ev-1")], status=403)
    assert stored_events(db) == []


@pytest.mark.parametrize("body", [b"not json", b'{"event": "delivered"}', b"[" * 100000])
def test_a_signed_body_that_is_not_a_list_of_events_gets_400(anon, db, signing_key, body):
    reply = post(anon, signing_key, None, body=body, status=400)
    assert reply.content_type == "text/plain"
    assert stored_events(db) == []


def test_malformed_events_are_skipped_and_logged_and_the_rest_of_the_batch_applied(
        anon, db, signing_key, recipient, caplog):
    """SendGrid would send a malformed event alike again: refusing the batch would have it retry the
    good events with it for a day and then drop them all."""
    good = [event(recipient, "delivered", "ev-1", response="250 OK"), event(recipient, "open", "ev-5")]
    malformed = ["x", {"event": "open", "email": recipient.address, sendgrid.UNIQUE_ARG: recipient.token},
                 {**event(recipient, "click", "ev-3"), "timestamp": "soon"},
                 {**event(recipient, "bounce", "ev-4"), "timestamp": True},
                 {**event(recipient, "open", "ev-6"), "event": ""}]
    with caplog.at_level("WARNING", logger="coretrack.delivery_reports.sendgrid"):
        reply = post(anon, signing_key, [malformed[0], good[0], *malformed[1:], good[1]])
    assert reply.status_int == 204
    assert stored_events(db) == [("ev-1", "delivered"), ("ev-5", "open")]
    assert state(db, recipient) == ("delivered", "250 OK")
    assert [record.getMessage().split(";")[0] for record in caplog.records] == [
        "SendGrid event webhook: event 1 is not an object",
        "SendGrid event webhook: event 3 has no valid sg_event_id",
        "SendGrid event webhook: event 4 (ev-3) has no valid timestamp",
        "SendGrid event webhook: event 5 (ev-4) has no valid timestamp",
        "SendGrid event webhook: event 6 (ev-6) has no valid event"]
    # Who the events were about stays out of the log.
    assert not any(recipient.address in record.getMessage() or recipient.token in record.getMessage()
                   for record in caplog.records)
    # A batch of nothing but malformed events is answered alike: a retry would be no better.
    post(anon, signing_key, malformed, status=204)
    assert stored_events(db) == [("ev-1", "delivered"), ("ev-5", "open")]


# -- the webhook: what it does ---------------------------------------------------------------------


def test_a_replayed_event_is_applied_once(anon, app, db, signing_key, recipient):
    opened = event(recipient, "open", "ev-open", useragent="Mozilla/5.0 (Windows NT 10.0) Thunderbird", ip="192.0.2.7")
    post(anon, signing_key, [opened])
    post(anon, signing_key, [opened, opened])  # SendGrid retries, later and re-signed
    db.expire_all()
    assert db.get(Recipient, recipient.id).access_count == 1
    assert stored_events(db) == [("ev-open", "open")]


def test_events_arriving_out_of_order_never_undo_a_bounce(anon, db, signing_key, recipient):
    now = int(time.time())
    post(anon, signing_key, [event(recipient, "bounce", "ev-3", now - 10, status="5.1.1", reason="no such user",
                                   type="bounce")])
    post(anon, signing_key, [event(recipient, "delivered", "ev-2", now - 20, response="250 OK"),
                             event(recipient, "processed", "ev-1", now - 30),
                             event(recipient, "deferred", "ev-0", now - 25, response="421 try later")])
    assert state(db, recipient) == ("bounced", "5.1.1 no such user bounce")
    # In one batch too, in any order.
    post(anon, signing_key, [event(recipient, "delivered", "ev-4", now)])
    assert state(db, recipient)[0] == "bounced"


def test_a_later_deferral_is_kept_and_delivery_follows_it(anon, db, signing_key, recipient):
    now = int(time.time())
    post(anon, signing_key, [event(recipient, "deferred", "ev-2", now - 10, response="421 second try"),
                             event(recipient, "deferred", "ev-1", now - 60, response="421 first try")])
    assert state(db, recipient) == ("deferred", "421 second try")
    post(anon, signing_key, [event(recipient, "delivered", "ev-3", now, response="250 OK")])
    assert state(db, recipient) == ("delivered", "250 OK")


@pytest.mark.parametrize(("kind", "fields", "reason"), [
    ("bounce", {"status": "5.1.1", "reason": "550 no such user", "type": "bounce"},
     "bounced (SendGrid): 5.1.1 550 no such user bounce"),
    ("dropped", {"reason": "Invalid"}, "dropped by SendGrid: Invalid"),
    ("dropped", {"reason": "Bounced Address"}, "dropped by SendGrid: Bounced Address"),
    ("unsubscribe", {}, "unsubscribed through SendGrid"),
    ("group_unsubscribe", {"asm_group_id": 42}, "unsubscribed through SendGrid (group 42)"),
    ("spamreport", {}, "reported the email as spam (SendGrid)"),
])
def test_hard_bounces_invalid_drops_unsubscribes_and_spam_reports_opt_the_person_out(
        anon, db, signing_key, recipient, kind, fields, reason):
    lead_with_address = Lead(last_name="Same person", email="ANN@example.test")
    db.add(lead_with_address)
    db.commit()
    post(anon, signing_key, [event(recipient, kind, "ev-1", **fields)])
    db.expire_all()
    for record in (db.get(Contact, recipient.contact_id), db.get(Lead, lead_with_address.id)):
        assert record.email_opt_out
        assert record.email_opt_out_reason == reason
    # What the person did about this email (its unsubscribe and complaint rates); a bounce is no such answer.
    answer = {"unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe", "spamreport": "complaint"}
    assert db.get(Recipient, recipient.id).opted_out_as == answer.get(kind, "")


@pytest.mark.parametrize(("kind", "fields"), [
    ("bounce", {"status": "4.2.2", "reason": "mailbox full", "type": "blocked"}),
    ("bounce", {"status": "5.7.1", "reason": "blocked by policy", "type": "blocked"}),
    ("dropped", {"reason": "Invalid SMTPAPI header"}),
    ("deferred", {"response": "421 later"}),
    ("click", {"url": "https://example.test/"}),
])
def test_soft_bounces_and_other_events_leave_the_opt_out_alone(anon, db, signing_key, recipient, kind, fields):
    post(anon, signing_key, [event(recipient, kind, "ev-1", **fields)])
    db.expire_all()
    assert not db.get(Contact, recipient.contact_id).email_opt_out


def test_opens_count_through_the_tracking_rules_and_machine_opens_carry_sendgrids_verdict(
        anon, db, signing_key, recipient, monkeypatch):
    counted: list[Hit] = []
    real_count_hits = sendgrid.count_hits

    def spy(connection, hits):  # the real counting, watched
        counted.extend(hits)
        return real_count_hits(connection, hits)

    monkeypatch.setattr(sendgrid, "count_hits", spy)
    at = int(time.time()) - 120
    post(anon, signing_key, [
        event(recipient, "open", "ev-human", at, useragent="Mozilla/5.0 Thunderbird/115", ip="198.51.100.9",
              sg_machine_open=False),
        event(recipient, "open", "ev-machine", at + 1, useragent="Mozilla/5.0", ip="17.58.0.1", sg_machine_open=True),
    ])
    db.expire_all()
    assert db.get(Recipient, recipient.id).access_count == 2
    rows = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id).order_by(AccessEvent.at))
    assert [(row.user_agent, row.at.timestamp() // 1) for row in rows] == [
        ("Mozilla/5.0 Thunderbird/115", float(at)), ("Mozilla/5.0", float(at + 1))]
    assert {hit.provider_verdict for hit in counted} == {"", sendgrid.MACHINE_OPEN}
    assert all(len(hit.hit_id) == 32 and "ev-" not in hit.hit_id for hit in counted)
    assert "provider_verdict" not in counted[0].as_line()


def test_clicks_are_kept_with_their_url(anon, db, signing_key, recipient):
    post(anon, signing_key, [event(recipient, "click", "ev-1", url="https://example.test/offer")])
    row = db.scalar(select(DeliveryEvent))
    assert (row.event, row.recipient_id, row.detail) == ("click", recipient.id, "https://example.test/offer")


def test_sendgrids_clicks_are_kept_at_most_ten_a_recipient_a_minute_as_coretracks_own_are(
        anon, db, signing_key, recipient):
    """They count nothing (clicks count at coretrack's own redirect); past the bound they are not kept."""
    minute = int(time.time()) // 60 * 60 - 120
    clicks = [event(recipient, "click", f"ev-{second}", minute + second, url="https://example.test/offer")
              for second in range(25)]
    post(anon, signing_key, clicks[:15])
    post(anon, signing_key, clicks[15:] + [event(recipient, "click", "ev-next", minute + 60, url="https://x.test/")])
    post(anon, signing_key, clicks)  # again, as SendGrid retries: nothing more kept
    kept = [(row.event_id, row.at.timestamp() // 60 * 60) for row in db.scalars(
        select(DeliveryEvent).where(DeliveryEvent.recipient_id == recipient.id).order_by(DeliveryEvent.id))]
    assert kept == [(f"ev-{second}", minute) for second in range(EVENTS_PER_RECIPIENT_PER_MINUTE)] + [
        ("ev-next", minute + 60)]


def test_events_for_other_senders_or_forged_tokens_are_stored_but_touch_no_one(anon, db, signing_key, recipient):
    forged = recipient.token[:-1] + ("A" if recipient.token[-1] != "A" else "B")
    events = [event(recipient, "unsubscribe", "ev-1"), event(recipient, "bounce", "ev-2", status="5.1.1")]
    events[0][sendgrid.UNIQUE_ARG] = forged
    del events[1][sendgrid.UNIQUE_ARG]
    post(anon, signing_key, [*events, event(recipient, "spamreport", "ev-3", **{sendgrid.UNIQUE_ARG: ["x"]})])
    assert state(db, recipient) == ("", "")
    assert not db.get(Contact, recipient.contact_id).email_opt_out
    assert {row.recipient_id for row in db.scalars(select(DeliveryEvent))} == {None}


def test_the_delivery_state_shows_on_the_email_page_and_in_the_api(anon, admin, db, signing_key, recipient):
    post(anon, signing_key, [event(recipient, "bounce", "ev-1", status="5.1.1", reason="550 no such user")])
    page = admin.get(f"/emails/{recipient.email_id}")
    assert "then bounced" in page.text and "5.1.1 550 no such user" in page.text
    detail = admin.get(f"/api/emails/{recipient.email_id}").json["recipient_list"][0]
    assert detail["delivery_status"] == "bounced"
    assert detail["delivery_detail"] == "5.1.1 550 no such user"
    assert detail["delivery_at"].endswith("Z")


def test_the_webhook_is_public_and_answers_post_only(app, anon):
    assert app.is_public_path(WEBHOOK)
    anon.get(WEBHOOK, status=401)  # no GET rule: a stranger learns nothing


def test_the_standalone_servers_basic_auth_lets_the_webhook_through(standalone, db, signing_key, recipient):
    post(standalone, signing_key, [event(recipient, "delivered", "ev-1")])
    assert state(db, recipient)[0] == "delivered"
    standalone.get(WEBHOOK, status=401)


def test_opens_of_an_email_sent_untracked_count_and_keep_nothing(anon, db, signing_key, recipient):
    """Not even as a delivery report: an open is a measurement of the person's reading."""
    db.get(Recipient, recipient.id).email.tracking = False
    db.commit()
    post(anon, signing_key, [event(recipient, "open", "ev-1", useragent="Mozilla/5.0 Thunderbird/115"),
                             event(recipient, "delivered", "ev-2")])
    db.expire_all()
    assert db.get(Recipient, recipient.id).access_count == 0
    assert stored_events(db) == [("ev-2", "delivered")]


def test_the_tag_names_the_recipient_also_when_the_email_is_not_tracked(app):
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Hi", html="<p>Hi</p>",
                               public_url=None, sendgrid_tag=True)
    token = tokens.new_token(app.config.secret_key())
    message = message_from_bytes(template.render("ann@example.test", "", token), policy=policy.default)
    assert json.loads(message["X-SMTPAPI"])["unique_args"] == {sendgrid.UNIQUE_ARG: token}
    assert "TrackAccess" not in message.as_string()
    with pytest.raises(ValueError, match="token"):
        template.render("ann@example.test", "", None)


GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"


def test_sendgrids_opens_are_judged_by_the_rules_of_every_load_with_the_delivery_it_reported(
        anon, db, signing_key, recipient):
    at = int(time.time()) - 3600
    post(anon, signing_key, [event(recipient, "delivered", "ev-delivered", at)])
    post(anon, signing_key, [
        event(recipient, "open", "ev-fetch", at + 20, useragent=YAHOO, ip="98.137.1.2"),
        event(recipient, "open", "ev-person", at + 1800, useragent=GMAIL, ip="66.249.84.2"),
        event(recipient, "open", "ev-machine", at + 1900, useragent="Mozilla/5.0", ip="17.58.0.1",
              sg_machine_open=True),
    ])
    db.expire_all()
    rows = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id).order_by(AccessEvent.at))
    assert [(row.verdict, row.reason) for row in rows] == [
        ("mail_proxy", "Yahoo image proxy: fetched at delivery"), ("human", "Google image proxy: opened by a person"),
        ("mail_proxy", sendgrid.MACHINE_OPEN)]
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.human_opens, row.first_human_at) == (
        3, 1, datetime.fromtimestamp(at + 1800, UTC).replace(tzinfo=None))


def test_sendgrids_clicks_count_no_click_of_a_person_or_a_machine(anon, db, signing_key, recipient):
    post(anon, signing_key, [
        event(recipient, "click", "ev-person", useragent="Mozilla/5.0 Firefox/128.0", ip="198.51.100.7",
              url="https://example.test/offer"),
        event(recipient, "click", "ev-scanner", useragent="Mozilla/5.0 Chrome/124.0", ip="40.94.1.2",
              url="https://example.test/offer"),
    ])
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.click_count, row.human_clicks, row.first_human_at) == (0, 0, None)
    assert db.scalar(select(func.count()).select_from(ClickEvent)) == 0
    assert db.scalar(select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.event == "click")) == 2
