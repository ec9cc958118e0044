"""Bounces without a provider: each message's return path names its recipient (signed); a real
Dovecot holds the bounce mailbox, real delivery status notifications are appended to it over IMAP,
and `coretrack bounces` (or the worker) marks, opts out and moves them."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.constants import PUBLIC_URL
from support.dovecot import Dovecot
from support.hit_load import wait_until
from support.ports import free_port

from coretrack import csrf, secretbox
from coretrack.cli import main as cli_main
from coretrack.delivery_reports import bounces
from coretrack.models import AccessEvent, Contact, Recipient, Setting, utcnow
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver
from coretrack.settings import SettingsService
from coretrack.tracking import tokens
from coretrack.validation import ValidationError

BOUNCE_ADDRESS = "bounces@example.test"
_users = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot(certificates):
    _, cert, key = certificates
    server = Dovecot((cert, key)).start()
    # Every test's user at once: Dovecot notices a changed passwd file by its time, in whole seconds.
    for number in range(1, 301):
        server.add_user(f"bounces{number}", "imap-secret")
    yield server
    server.stop()


@pytest.fixture
def mailbox(db, config, dovecot):
    """A fresh bounce mailbox, configured in the settings: (user, password)."""
    user, password = f"bounces{next(_users)}", "imap-secret"
    SettingsService(db, config).update(
        {"bounce_address": BOUNCE_ADDRESS, "bounce_imap_host": "127.0.0.1", "bounce_imap_port": str(dovecot.port),
         "bounce_imap_security": "none", "bounce_imap_username": user, "bounce_imap_password": password},
        user_name="admin")
    return user, password


@pytest.fixture
def sent(app, db, users, smtp_settings, mailbox):
    """A message sent to contact Ann and one to Bob, as the receiving server got them (by address)."""
    sink, _ = smtp_settings
    db.add(Contact(first_name="Ann", last_name="Example", email="ann@example.test"))
    db.commit()
    prepared = prepare(db, to=["ann@example.test", "bob@example.test"], subject="Offer",
                       html="<html><body><p>Hi</p></body></html>")
    deliver(app.Session, app.config, compose(db, app.config, users["sam"], prepared).email.id)
    return {mail.rcpt_tos[0]: mail for mail in sink.received}


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def headers_of(mail) -> str:
    return mail.data.decode().replace("\r\n", "\n").split("\n\n", 1)[0]


def rfc3464(mail, *, action="failed", status="5.1.1",
            diagnostic="smtp; 550 5.1.1 <ann@example.test>: Recipient address rejected: User unknown",
            to: str | None = None, returned: str = "headers") -> bytes:
    """A delivery status notification as Postfix writes it."""
    original = (f"Content-Type: text/rfc822-headers\n\n{headers_of(mail)}\n" if returned == "headers" else
                f"Content-Type: message/rfc822\n\n{mail.data.decode()}\n")
    return crlf(f"""Return-Path: <>
Date: Thu, 03 Dec 2026 10:00:00 +0000
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to or mail.mail_from}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B-1"
Message-Id: <20261203100000.1@mx.example.net>

This is a MIME-encapsulated message.

--B-1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{mail.rcpt_tos[0]}>: host mx.example.net[192.0.2.1] said: 550 5.1.1 unknown

--B-1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4F3A01234
Arrival-Date: Thu, 03 Dec 2026 09:59:58 +0000

Final-Recipient: rfc822; {mail.rcpt_tos[0]}
Original-Recipient: rfc822;{mail.rcpt_tos[0]}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: {diagnostic}

--B-1
Content-Description: Undelivered Message
{original}
--B-1--
""")


def qmail(mail) -> bytes:
    return crlf(f"""Return-Path: <>
Date: 3 Dec 2026 10:00:00 -0000
From: MAILER-DAEMON@mx.example.net
To: {mail.mail_from}
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{mail.rcpt_tos[0]}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

{mail.data.decode()}""")


def exim(mail) -> bytes:
    return crlf(f"""Return-path: <>
Date: Thu, 03 Dec 2026 10:00:00 +0000
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {mail.mail_from}
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {mail.rcpt_tos[0]}
    host mx.example.net [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<{mail.rcpt_tos[0]}>:
    550 No such user here

------ This is a copy of the message, including all the headers. ------

{mail.data.decode()}""")


def recipient_of(db, mail) -> Recipient:
    db.expire_all()
    return db.query(Recipient).filter(Recipient.address == mail.rcpt_tos[0]).one()


def ann(db) -> Contact:
    db.expire_all()
    return db.query(Contact).filter(Contact.email == "ann@example.test").one()


def read(app):
    return bounces.read_mailbox(app.Session, app.config)


# -- the return path -------------------------------------------------------------------------------


def test_each_message_goes_out_with_its_recipients_signed_return_path(app, db, sent):
    assert sorted(sent) == ["ann@example.test", "bob@example.test"]  # both arrived: the loop checks each
    for mail in sent.values():
        recipient = recipient_of(db, mail)
        assert mail.mail_from == f"bounces+{recipient.token}@example.test"
        assert tokens.verify(app.config.secret_key(), mail.mail_from.split("+")[1].split("@")[0])


def test_without_a_bounce_address_the_return_path_is_the_from_address(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    prepared = prepare(db, to=["ann@example.test"], subject="Hi", html="<p>Hi</p>")
    deliver(app.Session, app.config, compose(db, app.config, users["sam"], prepared).email.id)
    assert sink.received[0].mail_from == "crm@example.test"


def test_a_bounce_address_must_leave_room_for_the_token(db, config):
    settings = SettingsService(db, config)
    with pytest.raises(ValidationError) as refused:
        settings.update({"bounce_address": "x" * 19 + "@example.test"}, user_name="admin")
    assert "at most 18 characters" in refused.value.errors["bounce_address"]
    settings.update({"bounce_address": "x" * 18 + "@example.test"}, user_name="admin")
    assert settings.get("bounce_address") == "x" * 18 + "@example.test"


# -- reading the mailbox ---------------------------------------------------------------------------


def test_a_standard_report_marks_the_recipient_bounced_opts_them_out_and_is_moved(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, rfc3464(mail))
    report = read(app)
    assert (report.bounces, report.hard, report.unknown, report.left) == (1, 1, 0, 0)
    recipient = recipient_of(db, mail)
    assert recipient.delivery_status == "bounced"
    assert recipient.delivery_detail == "5.1.1 550 5.1.1 <ann@example.test>: Recipient address rejected: User unknown"
    assert ann(db).email_opt_out
    assert ann(db).email_opt_out_reason.startswith("bounced: 5.1.1 550 5.1.1")
    assert dovecot.messages(*mailbox) == []
    assert len(dovecot.messages(*mailbox, folder=bounces.PROCESSED_FOLDER)) == 1
    assert recipient_of(db, sent["bob@example.test"]).delivery_status == ""


@pytest.mark.parametrize(("make", "status", "words"), [(qmail, "5.1.1", "Sorry, no mailbox here by that name"),
                                                       (exim, "5.0.0", "550 No such user here")])
def test_plain_text_bounces_of_qmail_and_exim_are_understood(app, db, dovecot, mailbox, sent, make, status, words):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, make(mail))
    assert read(app).hard == 1
    recipient = recipient_of(db, mail)
    assert recipient.delivery_status == "bounced"
    assert recipient.delivery_detail.startswith(status) and words in recipient.delivery_detail
    assert ann(db).email_opt_out


@pytest.mark.parametrize(("action", "status", "state"), [("failed", "4.2.2", "bounced"),
                                                         ("delayed", "4.4.7", "deferred")])
def test_soft_bounces_and_delays_are_recorded_without_opting_out(app, db, dovecot, mailbox, sent, action, status,
                                                                 state):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, rfc3464(mail, action=action, status=status, diagnostic="smtp; 452 4.2.2 mailbox full"))
    report = read(app)
    assert (report.bounces, report.hard) == (1, 0)
    assert recipient_of(db, mail).delivery_status == state
    assert recipient_of(db, mail).delivery_detail.startswith(status)
    assert not ann(db).email_opt_out


def test_a_delay_read_after_the_failure_does_not_undo_it(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, rfc3464(mail))
    dovecot.append(*mailbox, rfc3464(mail, action="delayed", status="4.4.7", diagnostic="smtp; 421 later"))
    assert read(app).bounces == 2
    assert recipient_of(db, mail).delivery_status == "bounced"


def test_a_bounce_whose_return_path_was_lost_is_matched_by_the_message_it_returns(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, rfc3464(mail, to=BOUNCE_ADDRESS, returned="message"))
    report = read(app)
    assert (report.bounces, report.unknown) == (1, 0)
    assert recipient_of(db, mail).delivery_status == "bounced"


def test_a_forged_bounce_opts_no_one_out(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    token = recipient_of(db, mail).token
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    raw = rfc3464(mail).replace(token.encode(), forged.encode())
    dovecot.append(*mailbox, raw)
    report = read(app)
    assert (report.bounces, report.unknown) == (1, 1)
    assert recipient_of(db, mail).delivery_status == ""
    assert not ann(db).email_opt_out
    assert len(dovecot.messages(*mailbox, folder=bounces.PROCESSED_FOLDER)) == 1


def test_mail_that_is_no_bounce_is_left_in_place_unread(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, crlf(f"""From: Ann <ann@example.test>
To: {mail.mail_from}
Subject: Out of office
Auto-Submitted: auto-replied
Date: Thu, 03 Dec 2026 10:00:00 +0000

I am away until Monday; this message could not be answered sooner.
"""))
    report = read(app)
    assert (report.bounces, report.left) == (0, 1)
    [(flags, _)] = dovecot.messages(*mailbox)
    assert b"\\Seen" not in flags
    assert recipient_of(db, mail).delivery_status == ""
    assert not ann(db).email_opt_out


def test_a_report_of_successful_delivery_is_no_bounce(app, db, dovecot, mailbox, sent):
    mail = sent["ann@example.test"]
    dovecot.append(*mailbox, rfc3464(mail, action="delivered", status="2.0.0", diagnostic="smtp; 250 2.0.0 OK"))
    report = read(app)
    assert (report.bounces, report.left) == (0, 1)
    assert recipient_of(db, mail).delivery_status == ""


# -- the connection --------------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_the_mailbox_is_read_over_verified_tls(app, db, config, dovecot, mailbox, sent, certificates, monkeypatch,
                                               security):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))  # the install trusts the test CA
    SettingsService(db, config).update({"bounce_imap_security": security, "bounce_imap_password": mailbox[1],
                                        "bounce_imap_port": str(dovecot.port if security == "starttls"
                                                                else dovecot.tls_port)}, user_name="admin")
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    assert read(app).hard == 1


def test_a_certificate_the_install_does_not_trust_is_refused_and_nothing_is_read(
        app, db, config, dovecot, mailbox, sent, tmp_path, monkeypatch):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    SettingsService(db, config).update({"bounce_imap_security": "tls", "bounce_imap_port": str(dovecot.tls_port),
                                        "bounce_imap_password": mailbox[1]}, user_name="admin")
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    with pytest.raises(bounces.BounceError, match="(?i)certificate verify failed"):
        read(app)
    assert len(dovecot.messages(*mailbox)) == 1


def test_no_security_is_refused_off_loopback_before_connecting(app, db, config, mailbox):
    SettingsService(db, config).update({"bounce_imap_host": "192.0.2.1", "bounce_imap_password": "pw"},
                                       user_name="admin")
    with pytest.raises(bounces.BounceError, match="needs TLS or STARTTLS"):
        read(app)


def test_a_wrong_password_is_a_clear_error_and_nothing_is_lost(app, db, config, dovecot, mailbox, sent):
    SettingsService(db, config).update({"bounce_imap_password": "wrong"}, user_name="admin")
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    with pytest.raises(bounces.BounceError, match="could not open the bounce mailbox 127.0.0.1"):
        read(app)
    assert len(dovecot.messages(*mailbox)) == 1
    assert recipient_of(db, sent["ann@example.test"]).delivery_status == ""


def test_the_mailbox_password_is_stored_encrypted_and_only_for_its_server(app, db, config, mailbox):
    stored = db.get(Setting, "bounce_imap_password").value
    assert mailbox[1] not in stored
    assert secretbox.decrypt(config.secret_key(), stored) == mailbox[1]
    settings = SettingsService(db, config)
    settings.update({"bounce_imap_host": "imap.example.test"}, user_name="admin")
    assert settings.get("bounce_imap_password") == ""


# -- the command and the worker --------------------------------------------------------------------


def test_the_bounces_command_reads_the_mailbox_and_says_what_it_did(app, db, dovecot, mailbox, sent, monkeypatch):
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)
    dovecot.append(*mailbox, qmail(sent["ann@example.test"]))
    result = CliRunner().invoke(cli_main, ["bounces"])
    assert result.exit_code == 0, result.output
    assert "1 bounce(s) read and moved to coretrack-processed (1 hard: opted out; 0 for no known recipient)" \
        in result.output
    assert ann(db).email_opt_out


def test_the_bounces_command_without_a_mailbox_says_so(app, monkeypatch):
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    result = CliRunner().invoke(cli_main, ["bounces"])
    assert result.exit_code == 1
    assert "no bounce mailbox is configured" in result.output


def test_the_worker_reads_the_mailbox_periodically(app, db, dovecot, mailbox, sent):
    stop = threading.Event()
    watch = threading.Thread(target=bounces.watch_mailbox, args=(app.Session, app.config, stop, 0.2))
    watch.start()
    try:
        dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
        wait_until(lambda: ann(db).email_opt_out, "the bounce to be read", 10)
    finally:
        stop.set()
        watch.join()
    assert dovecot.messages(*mailbox) == []



def test_the_worker_command_reads_the_mailbox_beside_sending(app, db, dovecot, mailbox, sent):
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    env = {**os.environ, "CORETRACK_HOME": str(app.config.home), "CORETRACK_PUBLIC_URL": PUBLIC_URL}
    worker = subprocess.Popen([str(Path(sys.prefix) / "bin" / "coretrack"), "worker", "--interval", "0.2"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: ann(db).email_opt_out, "the worker to read the bounce", 20)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert dovecot.messages(*mailbox) == []


def test_the_serve_command_runs_every_background_job(app, db, dovecot, mailbox, sent):
    """`coretrack serve` runs what `coretrack worker` runs (jobs.py), not delivery alone: here the bounce
    mailbox is read and retention purges old events."""
    bob = recipient_of(db, sent["bob@example.test"])
    db.add(AccessEvent(recipient_id=bob.id, at=utcnow() - timedelta(days=40), ip="192.0.2.0", user_agent="Mail"))
    db.commit()
    SettingsService(db, app.config).update({"retention_days": "30"}, user_name="admin")
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))

    env = {**os.environ, "CORETRACK_HOME": str(app.config.home), "CORETRACK_PUBLIC_URL": PUBLIC_URL}
    server = subprocess.Popen([str(Path(sys.prefix) / "bin" / "coretrack"), "serve", "--port", str(free_port())],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: ann(db).email_opt_out, "the server to read the bounce", 30)
        wait_until(lambda: db.scalar(select(func.count()).select_from(AccessEvent)) == 0,
                   "the server to purge the old event", 30)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output
    assert dovecot.messages(*mailbox) == []


def test_the_worker_reads_a_mailbox_within_seconds_of_its_settings_being_saved(app, db, config, dovecot, mailbox,
                                                                                 sent):
    settings = SettingsService(db, config)
    settings.update({"bounce_imap_host": ""}, user_name="admin")  # no mailbox yet
    stop = threading.Event()
    watch = threading.Thread(target=bounces.watch_mailbox, args=(app.Session, app.config, stop))  # every 5 minutes
    watch.start()
    try:
        dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
        settings.update({"bounce_imap_host": "127.0.0.1", "bounce_imap_password": mailbox[1]}, user_name="admin")
        wait_until(lambda: ann(db).email_opt_out, "the newly configured mailbox to be read", 15)

        other = f"bounces{next(_users)}"  # another mailbox: read at once too, not in 5 minutes
        dovecot.append(other, mailbox[1], rfc3464(sent["bob@example.test"]))
        settings.update({"bounce_imap_username": other, "bounce_imap_password": mailbox[1]}, user_name="admin")
        wait_until(lambda: recipient_of(db, sent["bob@example.test"]).delivery_status == "bounced",
                   "the changed mailbox to be read", 15)
    finally:
        stop.set()
        watch.join()
    assert dovecot.messages(other, mailbox[1]) == []


def test_check_now_reads_the_mailbox_and_says_what_it_found(app, db, admin, dovecot, mailbox, sent):
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    checked = admin.get("/settings").forms["check-bounces"].submit().follow()
    assert checked.request.path == "/settings"
    notice = checked.html.select_one("[role=status]").text
    assert ("Bounce mailbox checked: 1 bounce(s) read and moved to coretrack-processed (1 hard: opted out; "
            "0 for no known recipient); 0 complaint(s) read and moved; 0 other message(s) left in place." in notice)
    assert ann(db).email_opt_out


def test_check_now_says_why_the_mailbox_could_not_be_read(app, db, config, admin, dovecot, mailbox, sent):
    SettingsService(db, config).update({"bounce_imap_password": "wrong"}, user_name="admin")
    dovecot.append(*mailbox, rfc3464(sent["ann@example.test"]))
    checked = admin.get("/settings").forms["check-bounces"].submit().follow()
    assert "Bounce mailbox not read: could not open the bounce mailbox 127.0.0.1" in checked.text
    assert len(dovecot.messages(*mailbox)) == 1


def test_only_an_admin_checks_the_mailbox_and_only_with_the_forms_token(app, admin, staff, mailbox):
    staff.post("/settings/bounces/check", {"csrf_token": csrf.make_token(app.secret, "sam")}, status=403)
    admin.post("/settings/bounces/check", status=403)
    assert "check-bounces" not in staff.get("/settings", status=403).forms


MAIL_LIKE = st.lists(st.sampled_from([
    b"From: MAILER-DAEMON@x\r\n", b"Subject: Undelivered Mail\r\n", b"Content-Type: multipart/report; boundary=B\r\n",
    b"Content-Type: message/delivery-status\r\n", b"--B\r\n", b"\r\n", b"Action: failed\r\n", b"Status: 5.1.1\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"=?utf-8?q?=FF?=\r\n", b"550 5.1.1 no\r\n", b"\xff\xfe\r\n",
    b"To: bounces+abc@example.test\r\n", b"Content-Type: text/plain; charset=unknown-8bit\r\n",
])).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=400), MAIL_LIKE))
def test_any_message_is_either_a_bounce_or_none_and_never_an_error(raw):
    found = bounces.parse(raw, BOUNCE_ADDRESS, b"k" * 32)
    assert found is None or (found.action in ("failed", "delayed") and found.status[0] in "45"
                             and found.tokens == ())
