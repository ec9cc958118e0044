"""Bounce classes and complaints: each failure is classed by its RFC 3463 status (or SendGrid's own
classification) and shown per recipient; a hard bounce suppresses at once, soft bounces only by the
stated rule (3 in 7 days by default), a block or policy refusal never; an ARF complaint (RFC 5965)
read from the real Dovecot mailbox suppresses its address as "complaint"; the raw reports are kept
as evidence until the retention period ends, and go with an erasure."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from test_bounces import BOUNCE_ADDRESS, crlf, dovecot, headers_of, mailbox, read, rfc3464  # noqa: F401
from test_sendgrid import event, post, signing_key  # noqa: F401  (signing_key: a fixture)

from coretrack.delivery_reports import bounces, classes, mail_reports
from coretrack.models import Address, MailReport, Recipient, WebhookEvent, utcnow
from coretrack.models.emails import SOFT_BOUNCED
from coretrack.people import erasure, suppression
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver
from coretrack.settings import SettingsService
from coretrack.tracking.retention import purge
from coretrack.webhooks import endpoints as webhook_endpoints
from coretrack.webhooks.events import COMPLAINED

ANN = "ann@example.test"


@pytest.mark.parametrize(("action", "status", "expected"), [
    ("failed", "5.1.1", classes.HARD), ("failed", "5.1.10", classes.HARD), ("failed", "5.2.1", classes.HARD),
    ("failed", "5.0.0", classes.HARD), ("failed", "5.2.2", classes.MAILBOX_FULL),
    ("failed", "4.2.2", classes.MAILBOX_FULL), ("failed", "4.4.1", classes.SOFT), ("failed", "5.4.7", classes.SOFT),
    ("failed", "5.7.1", classes.BLOCK), ("failed", "4.7.28", classes.BLOCK), ("failed", "5.7.26", classes.POLICY),
    ("failed", "5.7.23", classes.POLICY), ("failed", "5.6.0", classes.CONTENT), ("failed", "5.3.4", classes.CONTENT),
    ("delayed", "4.4.1", classes.DELAYED),
])
def test_each_rfc_3463_status_has_its_class(action, status, expected):
    assert classes.classify(action, status) == expected


@pytest.mark.parametrize(("fields", "expected"), [
    ({"bounce_classification": "Invalid Address", "status": "5.7.1"}, classes.HARD),
    ({"bounce_classification": "Reputation", "status": "5.1.1"}, classes.BLOCK),
    ({"bounce_classification": "Mailbox Unavailable"}, classes.SOFT),
    ({"bounce_classification": "Unclassified", "status": "5.1.1"}, classes.HARD),
    ({"type": "blocked", "status": "5.0.0"}, classes.BLOCK),
])
def test_sendgrids_own_classification_comes_before_the_status(fields, expected):
    assert classes.classify_sendgrid("bounce", fields.get("status", ""), fields.get("type", "bounce"),
                                     fields.get("bounce_classification", "")) == expected


def send_to_ann(app, db, users, sink, subject: str = "Offer"):
    """One email to Ann, as the receiving server got it."""
    before = len(sink.received)
    prepared = prepare(db, to=[ANN], subject=subject, html="<html><body><p>Hi</p></body></html>")
    deliver(app.Session, app.config, compose(db, app.config, users["sam"], prepared).email.id)
    [mail] = sink.received[before:]
    return mail


@pytest.fixture
def outbox(app, db, users, smtp_settings, mailbox):  # noqa: F811  (mailbox: a fixture)
    sink, _ = smtp_settings
    return lambda subject="Offer": send_to_ann(app, db, users, sink, subject)


def recipient_of(db, mail) -> Recipient:
    """The recipient a received message was sent to, by the token in its return path."""
    db.expire_all()
    token = mail.mail_from.split("+", 1)[1].split("@", 1)[0]
    return db.scalars(select(Recipient).where(Recipient.token == token)).one()


def suppressed(db, address: str = ANN) -> Address | None:
    db.expire_all()
    found = suppression.state(db, address)
    return found if found is not None and found.opted_out_at is not None else None


def test_a_block_is_shown_on_the_recipient_and_never_suppresses(app, db, admin, dovecot, mailbox, outbox):  # noqa: F811
    mail = outbox()
    dovecot.append(*mailbox, rfc3464(mail, status="5.7.1",
                                     diagnostic="smtp; 550 5.7.1 Service unavailable; client host blocked"))
    read(app)
    recipient = recipient_of(db, mail)
    assert (recipient.delivery_status, recipient.bounce_class) == ("bounced", classes.BLOCK)
    assert suppressed(db) is None
    page = admin.get(f"/emails/{recipient.email_id}")
    assert page.html.select_one(".bounce-class").text == "blocked"
    api = admin.get(f"/api/emails/{recipient.email_id}").json
    assert api["recipient_list"][0]["bounce_class"] == "block"


def test_a_hard_bounce_suppresses_at_once_with_its_report_as_evidence(app, db, admin, dovecot, mailbox, outbox):  # noqa: F811
    mail = outbox()
    report = rfc3464(mail)
    dovecot.append(*mailbox, report)
    read(app)
    found = suppressed(db)
    assert (found.opt_out_category, found.opt_out_source) == (suppression.HARD_BOUNCE, suppression.BOUNCE)
    kept = db.get(MailReport, found.evidence_report_id)
    assert (kept.kind, kept.status, kept.bounce_class) == ("dsn", "5.1.1", classes.HARD)
    assert kept.raw.encode() == report
    page = admin.get(f"/suppressions/{found.id}")
    assert page.html.select_one("#category").text == "Hard bounce"
    assert "Final-Recipient: rfc822; ann@example.test" in page.html.select_one("#raw-report pre").text


def test_soft_bounces_suppress_on_the_third_message_within_seven_days(app, db, dovecot, mailbox, outbox):  # noqa: F811
    for number in (1, 2, 3):
        mail = outbox(f"Offer {number}")
        dovecot.append(*mailbox, rfc3464(mail, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
        # The same message's report read twice counts once: each message once, whatever its reports.
        dovecot.append(*mailbox, rfc3464(mail, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
        read(app)
        assert recipient_of(db, mail).bounce_class == classes.MAILBOX_FULL
        assert (suppressed(db) is not None) == (number == 3)
    found = suppressed(db)
    assert (found.opt_out_category, found.opt_out_source) == (suppression.SOFT_BOUNCE, suppression.SOFT_BOUNCES)
    assert found.opt_out_reason.startswith("3 soft bounces within 7 days (rule: 3 in 7 days)")


def test_soft_bounces_older_than_the_rules_days_do_not_count(app, db, dovecot, mailbox, outbox):  # noqa: F811
    SettingsService(db, app.config).update({"soft_bounce_limit": "2", "soft_bounce_days": "3"}, user_name="admin")
    first = outbox("Offer 1")
    dovecot.append(*mailbox, rfc3464(first, status="4.4.7", diagnostic="smtp; 4.4.7 Delivery time expired"))
    read(app)
    db.execute(Recipient.__table__.update().where(Recipient.id == recipient_of(db, first).id)
               .values(delivery_at=datetime(2026, 11, 29)))  # the reports are of 3 December
    db.commit()
    second = outbox("Offer 2")
    dovecot.append(*mailbox, rfc3464(second, status="4.4.7", diagnostic="smtp; 4.4.7 Delivery time expired"))
    read(app)
    assert suppressed(db) is None  # the first is 4 days older: one soft bounce within 3 days
    third = outbox("Offer 3")
    dovecot.append(*mailbox, rfc3464(third, status="4.4.7", diagnostic="smtp; 4.4.7 Delivery time expired"))
    read(app)
    assert suppressed(db).opt_out_category == suppression.SOFT_BOUNCE


def test_with_the_rule_set_to_0_soft_bounces_never_suppress(app, db, dovecot, mailbox, outbox):  # noqa: F811
    SettingsService(db, app.config).update({"soft_bounce_limit": "0"}, user_name="admin")
    for number in range(4):
        dovecot.append(*mailbox, rfc3464(outbox(f"Offer {number}"), status="4.2.2"))
    read(app)
    assert suppressed(db) is None


def arf(mail, feedback_type: str = "abuse", original: str | None = None) -> bytes:
    """A feedback-loop complaint (RFC 5965), as Yahoo's or Microsoft's JMRP sends it."""
    return crlf(f"""From: <feedback@fbl.example.net>
Date: Thu, 03 Dec 2026 11:00:00 +0000
Subject: Complaint about message from 192.0.2.1
To: {BOUNCE_ADDRESS}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part1"

--part1
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part1
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{mail.mail_from}>
Original-Rcpt-To: <{mail.rcpt_tos[0]}>
Reporting-MTA: dns; fbl.example.net
Source-IP: 192.0.2.1

--part1
Content-Type: text/rfc822-headers

{headers_of(mail) if original is None else original}
--part1--
""")


def test_an_arf_complaint_from_the_mailbox_suppresses_the_address_as_complaint(app, db, admin, dovecot, mailbox,  # noqa: F811
                                                                              outbox):
    mail = outbox()
    dovecot.append(*mailbox, arf(mail))
    report = read(app)
    assert (report.complaints, report.left, report.unknown) == (1, 0, 0)
    found = suppressed(db)
    assert (found.opt_out_category, found.opt_out_source) == (suppression.COMPLAINT, suppression.COMPLAINT_REPORT)
    assert found.opt_out_reason == "complained: abuse report from fbl.example.net"
    kept = db.get(MailReport, found.evidence_report_id)
    assert (kept.kind, kept.status) == ("arf", "abuse")
    assert [raw for _, raw in dovecot.messages(*mailbox, folder=bounces.PROCESSED_FOLDER)] == [arf(mail)]
    page = admin.get("/suppressions?category=complaint")
    assert [a.text for a in page.html.select("#suppressions tbody td:first-child a")] == [ANN]
    assert "ARF report (kept)" in page.html.select_one("#suppressions tbody").text
    exported = admin.get("/suppressions.csv").body.decode().splitlines()
    assert exported[1].startswith(f"{ANN},complaint,complaint,complained: abuse report from fbl.example.net,")
    assert exported[1].endswith(",ARF report")


def test_an_authentication_failure_report_is_no_complaint_and_stays_in_the_folder(app, db, dovecot, mailbox,  # noqa: F811
                                                                                 outbox):
    dovecot.append(*mailbox, arf(outbox(), feedback_type="auth-failure"))
    assert read(app).left == 1
    assert suppressed(db) is None


def test_a_complaint_without_a_signed_token_suppresses_no_one(app, db, dovecot, mailbox, outbox):  # noqa: F811
    mail = outbox()
    forged = arf(mail, original=f"From: crm@example.test\nTo: {ANN}\nSubject: Offer\n").replace(
        mail.mail_from.encode(), BOUNCE_ADDRESS.encode())
    dovecot.append(*mailbox, forged)
    assert read(app).unknown == 1
    assert suppressed(db) is None
    assert db.scalar(select(MailReport.id)) is None  # nothing kept of a report naming no one


def test_sendgrid_bounces_are_classed_and_an_invalid_address_suppresses(app, db, anon, users, signing_key,  # noqa: F811
                                                                         smtp_settings):
    sink, _ = smtp_settings
    send_to_ann(app, db, users, sink)
    recipient = db.scalar(select(Recipient).where(Recipient.address == ANN))
    post(anon, signing_key, [event(recipient, "bounce", "ev-1", status="5.1.1", type="bounce",
                                   reason="550 reputation", bounce_classification="Reputation")])
    db.expire_all()
    assert db.get(Recipient, recipient.id).bounce_class == classes.BLOCK
    assert suppressed(db) is None
    post(anon, signing_key, [event(recipient, "bounce", "ev-2", status="5.1.1", type="bounce",
                                   reason="550 no such user", bounce_classification="Invalid Address")])
    found = suppressed(db)
    assert found.opt_out_category == suppression.HARD_BOUNCE
    assert found.evidence_event_id is not None


def test_retention_empties_the_raw_report_and_keeps_its_class(app, db, admin, dovecot, mailbox, outbox):  # noqa: F811
    dovecot.append(*mailbox, rfc3464(outbox()))
    read(app)
    db.execute(MailReport.__table__.update().values(received_at=utcnow() - timedelta(days=40)))
    db.commit()
    SettingsService(db, app.config).update({"retention_days": "30"}, user_name="admin")
    assert purge(db, app.config)["mail_reports"] == 1
    found = suppressed(db)
    kept = db.get(MailReport, found.evidence_report_id)
    assert (kept.raw, kept.bounce_class, kept.status) == ("", classes.HARD, "5.1.1")
    page = admin.get(f"/suppressions/{found.id}")
    assert page.html.select_one("#raw-report") is None
    assert "no longer kept" in page.text


def test_an_erasure_takes_the_reports_that_name_the_person(app, db, dovecot, mailbox, outbox):  # noqa: F811
    first, second = outbox(), outbox("Again")
    dovecot.append(*mailbox, rfc3464(first, status="4.2.2"))
    dovecot.append(*mailbox, arf(second))
    read(app)
    assert len(db.scalars(select(MailReport)).all()) == 2
    erasure.erase(db, app.secret, ANN, "admin")
    assert db.scalars(select(MailReport)).all() == []


def test_the_soft_bounce_rule_counts_through_its_partial_index(db):
    """It counts at each soft bounce: the index holds only soft-bounced recipients, never a table scan."""
    assert SOFT_BOUNCED == "bounce_class IN ({})".format(", ".join(f"'{name}'" for name in sorted(classes.ESCALATING)))
    query = mail_reports.soft_bounces_query(ANN, datetime(2026, 12, 1))
    compiled = query.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    else:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: show that it could
        plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "ix_recipients_soft_bounced" in plan, plan
    assert mail_reports.soft_bounces(db, ANN, datetime(2026, 12, 1)) == 0


def test_an_arf_complaint_is_a_complained_event_for_the_webhooks(app, db, dovecot, mailbox, outbox):  # noqa: F811
    webhook_endpoints.create(db, app.secret, "https://hooks.example.test/in", [COMPLAINED], "admin")
    db.commit()
    dovecot.append(*mailbox, arf(outbox()))
    read(app)
    [sent] = db.scalars(select(WebhookEvent)).all()
    assert sent.type == COMPLAINED
    assert json.loads(sent.data)["address"] == ANN
