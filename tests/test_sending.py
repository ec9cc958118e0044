"""Composing and delivering tracked email through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import string
import threading
from datetime import timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.constants import PUBLIC_URL
from support.hit_load import wait_until
from support.ports import free_port

from coretrack.cli import main as cli_main
from coretrack.models import Attachment, Contact, Email, Lead, Recipient, utcnow
from coretrack.people import suppression
from coretrack.sending.claims import INTERRUPTED
from coretrack.sending.compose import OPTED_OUT
from coretrack.sending.delivery import deliver, send_or_queue
from coretrack.sending.mime import MessageError, MessageTemplate, html_to_text, insert_image
from coretrack.sending.status import retry_failed
from coretrack.sending.worker import run_worker
from coretrack.settings import SettingsService
from coretrack.tracking import tokens
from coretrack.validation import ValidationError

IMAGE_URL = re.compile(r'<img src="([^"]+)" width="1" height="1" alt="">')


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ["ann@example.test"], "subject": "Hello", "html": "<html><body><p>Hi</p></body></html>"}


def add_contact(db, email="ada@example.test", **fields) -> Contact:
    contact = Contact(first_name="Ada", last_name="Lovelace", email=email, **fields)
    db.add(contact)
    db.commit()
    return contact


def html_of(mail) -> str:
    return mail.message.get_body(preferencelist=("html",)).get_content()


def by_address(sink) -> dict[str, list]:
    received: dict[str, list] = {}
    for mail in sink.received:
        for address in mail.rcpt_tos:
            received.setdefault(address, []).append(mail)
    return received


def track_path(url: str) -> str:
    """The image URL as the app sees it once Apache strips the mount prefix (/crm)."""
    parts = urlsplit(url)
    return parts.path.removeprefix(urlsplit(PUBLIC_URL).path) + "?" + parts.query


# -- one message per recipient ---------------------------------------------------------------


def test_each_recipient_gets_one_well_formed_message_addressed_to_them_alone(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    contact = add_contact(db)
    send(to=["ann@example.test", f"contact:{contact.id}"], cc=["cid@example.test"],
         bcc=["bea@example.test"], reply_to="replies@example.test",
         attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 data")])

    received = by_address(sink)
    assert sorted(received) == ["ada@example.test", "ann@example.test", "bea@example.test", "cid@example.test"]
    message_ids = set()
    for address, mails in received.items():
        assert len(mails) == 1 and mails[0].rcpt_tos == [address]
        message = mails[0].message
        assert message["To"].addresses[0].addr_spec == address and len(message["To"].addresses) == 1
        assert message["Cc"] is None and message["Bcc"] is None  # cc/bcc never exposed
        assert message["From"].addresses[0].addr_spec == "crm@example.test"
        assert message["From"].addresses[0].display_name == "Example CRM"
        assert str(message["Reply-To"]) == "replies@example.test"
        assert message["Date"].datetime is not None
        assert re.fullmatch(r"<[0-9a-f]{32}@example\.test>", message["Message-ID"])
        message_ids.add(message["Message-ID"])
        assert message.get_content_type() == "multipart/mixed"
        alternative = message.get_payload()[0]
        assert alternative.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in alternative.get_payload()] == ["text/plain", "text/html"]
        assert alternative.get_payload()[1]["Content-Transfer-Encoding"] == "quoted-printable"
        assert "Hi" in message.get_body(preferencelist=("plain",)).get_content()
        [attachment] = list(message.iter_attachments())
        assert attachment.get_filename() == "report.pdf"
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_content() == b"%PDF-1.4 data"
    assert len(message_ids) == 4
    assert received["ada@example.test"][0].message["To"].addresses[0].display_name == "Ada Lovelace"


def test_recipients_keep_their_kind_and_record_link(app, db, users, smtp_settings, send):
    contact = add_contact(db)
    result = send(to=[f"contact:{contact.id}"], cc=["cid@example.test"], bcc=["bea@example.test"])
    rows = {r.address: r for r in result.email.recipients}
    assert rows["ada@example.test"].kind == "to" and rows["ada@example.test"].contact_id == contact.id
    assert rows["cid@example.test"].kind == "cc" and rows["bea@example.test"].kind == "bcc"
    assert {r.status for r in rows.values()} == {"sent"}
    assert result.email.status == "sent" and result.email.sent_at is not None


def test_each_html_part_holds_exactly_one_image_with_the_recipients_own_token(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    result = send(to=["ann@example.test", "bob@example.test", "cid@example.test"])

    tokens_by_address = {r.address: r.token for r in result.email.recipients}
    seen = set()
    for mail in sink.received:
        [url] = IMAGE_URL.findall(html_of(mail))
        assert url == f"{PUBLIC_URL}/modules/Emails/TrackAccess.php?t={tokens_by_address[mail.rcpt_tos[0]]}"
        assert "TrackAccess" not in mail.message.get_body(preferencelist=("plain",)).get_content()
        seen.add(url)
    assert len(seen) == 3


def test_loading_a_recipients_image_counts_for_that_recipient_only(app, db, users, smtp_settings, anon, send):
    sink, _ = smtp_settings
    result = send(to=["ann@example.test", "bob@example.test"])
    [ann_mail] = by_address(sink)["ann@example.test"]
    [url] = IMAGE_URL.findall(html_of(ann_mail))

    response = anon.get(track_path(url), headers={"User-Agent": "Mozilla/5.0 (X11) Thunderbird/115"})

    assert response.content_type == "image/gif"

    def counts() -> dict[str, int]:
        db.expire_all()
        return {r.address: r.access_count for r in result.email.recipients}

    wait_until(lambda: counts()["ann@example.test"] == 1, "the hit to be counted", 10)
    assert counts() == {"ann@example.test": 1, "bob@example.test": 0}


def test_no_image_once_tracking_is_disabled(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, user_name="admin")

    result = send(to=["ann@example.test"])

    assert result.email.tracking is False
    [mail] = sink.received
    assert "TrackAccess" not in mail.data.decode("ascii")
    assert "<p>Hi</p>" in html_of(mail)


# -- skipped, refused, interrupted -----------------------------------------------------------


def test_opted_out_records_are_skipped_with_the_reason(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    contact = add_contact(db)
    lead = Lead(first_name="Lee", last_name="Opt", email="lee@example.test")
    db.add(lead)
    for record in (contact, lead):
        suppression.opt_out_record(db, record, suppression.STAFF, "asked by phone")
    db.commit()

    result = send(to=[f"contact:{contact.id}", "ann@example.test", "lee@example.test"])

    assert [mail.rcpt_tos for mail in sink.received] == [["ann@example.test"]]
    skipped = {r.address: r for r in result.email.recipients if r.status == "skipped"}
    assert set(skipped) == {"ada@example.test", "lee@example.test"}
    assert {r.reply for r in skipped.values()} == {OPTED_OUT}
    assert skipped["lee@example.test"].lead_id == lead.id  # a typed address is linked to its record
    assert result.email.status == "sent"


def test_refused_recipient_fails_with_the_server_reply_and_a_retry_sends_it_once(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    sink.refuse["x@example.test"] = "550 5.1.1 No such user"
    result = send(to=["ann@example.test", "x@example.test", "bob@example.test"])

    rows = {r.address: r for r in result.email.recipients}
    assert rows["x@example.test"].status == "failed"
    assert rows["x@example.test"].reply == "550 5.1.1 No such user"
    assert rows["x@example.test"].attempts == 1
    assert rows["ann@example.test"].status == rows["bob@example.test"].status == "sent"
    assert result.email.status == "partial"
    assert sorted(by_address(sink)) == ["ann@example.test", "bob@example.test"]

    del sink.refuse["x@example.test"]
    assert retry_failed(db, result.email.id) == 1
    deliver(app.Session, app.config, result.email.id)
    deliver(app.Session, app.config, result.email.id)  # nothing left: sends nothing more
    db.expire_all()

    assert {address: len(mails) for address, mails in by_address(sink).items()} == {
        "ann@example.test": 1, "bob@example.test": 1, "x@example.test": 1}
    assert rows["x@example.test"].status == "sent" and rows["x@example.test"].attempts == 2
    assert result.email.status == "sent"


def test_every_refusal_means_failed_when_nobody_was_sent(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    sink.refuse["x@example.test"] = "550 5.1.1 No such user"
    result = send(to=["x@example.test"])
    assert result.email.status == "failed" and result.email.sent_at is None


def test_an_unreachable_server_fails_every_recipient_with_the_reason(app, db, users, send):
    SettingsService(db, app.config).update({"smtp_host": "127.0.0.1", "smtp_port": str(free_port())}, "admin")
    result = send(to=["ann@example.test", "bob@example.test"])
    assert {r.status for r in result.email.recipients} == {"failed"}
    assert all(r.reply.startswith("could not use the mail server 127.0.0.1:") for r in result.email.recipients)
    assert result.email.status == "failed"


def test_an_interrupted_send_resumes_without_sending_anyone_twice(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    result = send.compose(to=["ann@example.test", "bob@example.test", "cid@example.test"])
    # A crash while handing ann's message over: claimed long ago, never finished.
    ann = result.email.recipients[0]
    ann.status, ann.claimed_at = "sending", utcnow() - timedelta(minutes=30)
    result.email.status = "sending"
    db.commit()

    assert run_worker(app.Session, app.config, once=True) == 2
    assert run_worker(app.Session, app.config, once=True) == 0
    db.expire_all()

    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["bob@example.test", "cid@example.test"]
    assert ann.status == "failed" and ann.reply == INTERRUPTED
    assert result.email.status == "partial"


def test_a_recent_claim_is_left_to_the_worker_holding_it(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    result = send.compose(to=["ann@example.test", "bob@example.test"])
    ann = result.email.recipients[0]
    ann.status, ann.claimed_at = "sending", utcnow()
    db.commit()

    deliver(app.Session, app.config, result.email.id)
    db.expire_all()

    assert [mail.rcpt_tos for mail in sink.received] == [["bob@example.test"]]
    assert ann.status == "sending" and result.email.status == "sending"


def test_two_workers_on_the_same_email_send_each_message_once(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    addresses = [f"r{number}@example.test" for number in range(30)]
    result = send.compose(to=addresses)
    workers = [threading.Thread(target=deliver, args=(app.Session, app.config, result.email.id))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    db.expire_all()

    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == sorted(addresses)
    assert result.email.status == "sent"


def test_a_large_send_is_queued_and_the_worker_delivers_it(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    addresses = [f"r{number}@example.test" for number in range(app.config.inline_send_limit + 1)]
    result = send.compose(to=addresses)

    assert send_or_queue(app.Session, app.config, result.email.id, result.pending) is False
    assert sink.received == [] and result.email.status == "queued"

    assert run_worker(app.Session, app.config, once=True) == len(addresses)
    db.expire_all()
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == sorted(addresses)
    assert result.email.status == "sent"


def test_a_small_send_goes_out_within_the_request(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    result = send.compose(to=["ann@example.test"])
    assert send_or_queue(app.Session, app.config, result.email.id, result.pending) is True
    assert len(sink.received) == 1


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"subject": "Hello\r\nBcc: victim@example.test"}, "subject"),
        ({"subject": "Hello\nX-Injected: 1"}, "subject"),
        ({"to": ["ann@example.test\r\nBcc: victim@example.test"]}, "to"),
        ({"cc": ["cid@example.test\nX-Injected: 1"]}, "cc"),
        ({"reply_to": "r@example.test\r\nBcc: victim@example.test"}, "reply_to"),
    ],
)
def test_header_injection_is_refused_and_nothing_is_saved(app, db, users, fields, field, send):
    with pytest.raises(ValidationError) as error:
        send.compose(**fields)
    assert field in error.value.errors
    assert db.scalar(select(Email)) is None and db.scalar(select(Recipient)) is None


def test_every_problem_is_reported_at_once(app, db, users, send):
    with pytest.raises(ValidationError) as error:
        send.compose(to=[], subject="", html="  ")
    assert set(error.value.errors) == {"to", "subject", "html"}
    with pytest.raises(ValidationError) as error:
        send.compose(to=["not-an-address", "contact:999"], subject="x" * 999)
    assert "not-an-address" in error.value.errors["to"] and "999" in error.value.errors["to"]
    assert "998" in error.value.errors["subject"]


def test_duplicate_addresses_are_collapsed_first_field_wins(app, db, users, send):
    contact = add_contact(db, email="ann@example.test")
    result = send.compose(to=["ann@example.test", "ANN@example.test", f"contact:{contact.id}"],
                          bcc=["ann@example.test", "bob@example.test"])
    assert [(r.address, r.kind) for r in result.email.recipients] == [("ann@example.test", "to"),
                                                                      ("bob@example.test", "bcc")]


def test_attachments_are_stored_under_generated_names_with_the_uploaded_name_cleaned(app, db, users, send):
    result = send.compose(attachments=[("../../etc/pass\r\nwd.txt", "text/plain", b"data")])
    [attachment] = db.scalars(select(Attachment)).all()
    assert attachment.filename == "passwd.txt"
    assert re.fullmatch(r"[0-9a-f]{32}", attachment.storage_name)
    assert (app.config.attachments_dir / attachment.storage_name).read_bytes() == b"data"
    assert attachment.size == 4 and attachment.email_id == result.email.id


# -- the MIME template ------------------------------------------------------------------------


def template(html: str, **fields) -> MessageTemplate:
    values = dict(from_address="crm@example.test", from_name="Crm Ünïcode", subject="Grüße, “friends”",
                  html=html, public_url=PUBLIC_URL)
    values.update(fields)
    return MessageTemplate(**values)


def test_the_image_goes_right_before_the_last_closing_body_tag():
    html = "<html><body><p>a</body> in text</p></BODY ></html>"
    assert insert_image(html, "<img>") == "<html><body><p>a</body> in text</p><img></BODY ></html>"


def test_without_a_closing_body_tag_the_image_goes_at_the_end():
    assert insert_image("<p>Hi</p>", "<img>") == "<p>Hi</p><img>"


@pytest.mark.parametrize("padding", range(0, 80))
def test_the_token_survives_a_quoted_printable_soft_break_at_any_position(padding):
    token = tokens.new_token(b"secret")
    data = template("x" * padding + "<p>Hi</p>").render("ann@example.test", "Ann", token)
    message = message_from_bytes(data, policy=policy.default)
    html = message.get_body(preferencelist=("html",)).get_content()
    assert IMAGE_URL.findall(html) == [f"{PUBLIC_URL}/modules/Emails/TrackAccess.php?t={token}"]
    assert html.startswith("x" * padding + "<p>Hi</p>")


def test_non_ascii_headers_are_encoded_and_parse_back():
    data = template("<p>Hi</p>").render("ann@example.test", "Ännchen von Tharau", tokens.new_token(b"k"))
    assert data.isascii()
    message = message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "Grüße, “friends”"
    assert message["From"].addresses[0].display_name == "Crm Ünïcode"
    assert message["To"].addresses[0].display_name == "Ännchen von Tharau"


ATOM_TEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"


@settings(max_examples=300, deadline=None)
@given(local=st.text(ATOM_TEXT + ".", min_size=1, max_size=40),
       domain=st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True),
       name=st.text(ATOM_TEXT + " .\"", max_size=60))
def test_the_to_header_is_what_the_mail_library_writes(local, domain, name):
    """A plain name and address are written directly (the library's parser is the slow part of a
    message): the header must be the library's, byte for byte."""
    address = f"{local}@{domain}"
    try:
        expected = str(policy.SMTP.header_factory("To", Address(display_name=name, addr_spec=address))
                       .fold(policy=policy.SMTP))
    except (ValueError, IndexError):  # not an address the library takes: to_header must refuse it too
        with pytest.raises(MessageError):
            template("<p>Hi</p>").to_header(address, name)
        return
    assert template("<p>Hi</p>").to_header(address, name) == expected


def test_no_tracking_means_no_image_and_no_token_needed():
    data = template("<body>Hi</body>", public_url=None).render("ann@example.test")
    assert b"TrackAccess" not in data


def test_text_part_is_derived_from_the_html():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body><h1>Hello &amp; welcome</h1>"
            "<p>One   two<br>three <a href='https://example.test/x'>the link</a></p><script>alert(1)</script>"
            "<ul><li>first</li><li>second</li></ul></body></html>")
    assert html_to_text(html) == ("Hello & welcome\n\nOne two\nthree the link (https://example.test/x)\n\n"
                                  "- first\n- second\n")


# -- command line -----------------------------------------------------------------------------


def test_the_send_command_delivers_and_the_worker_command_drains_the_queue(app, db, users, smtp_settings,
                                                                         monkeypatch, tmp_path, send):
    sink, _ = smtp_settings
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)
    attachment = tmp_path / "notes.txt"
    attachment.write_text("notes")
    runner = CliRunner()

    result = runner.invoke(cli_main, ["send", "--from-user", "sam", "--to", "ann@example.test", "--cc",
                                      "cid@example.test", "--subject", "From the CLI", "--html", "<p>Hi</p>",
                                      "--attach", str(attachment)])
    assert result.exit_code == 0, result.output
    assert "2 sent, 0 failed" in result.output
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ann@example.test", "cid@example.test"]
    assert list(sink.received[0].message.iter_attachments())[0].get_content() == "notes"

    send.compose(to=[f"q{n}@example.test" for n in range(12)])
    result = runner.invoke(cli_main, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "processed 12 messages" in result.output
    assert len(sink.received) == 14


def test_the_send_command_schedules_with_send_at_and_the_worker_sends_it_when_its_time_comes(
        app, db, users, smtp_settings, monkeypatch):
    sink, _ = smtp_settings
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)
    send_at = (utcnow() + timedelta(hours=2)).replace(second=0, microsecond=0)
    command = ["send", "--from-user", "sam", "--to", "ann@example.test", "--subject", "Later", "--html", "<p>Hi</p>"]

    result = CliRunner().invoke(cli_main, [*command, "--send-at", send_at.isoformat() + "Z"])

    assert result.exit_code == 0, result.output
    assert f"scheduled for {send_at:%Y-%m-%d %H:%M} UTC, 1 to send, 0 skipped" in result.output
    email = db.scalars(select(Email)).one()
    assert email.send_at == send_at and email.status == "queued" and sink.received == []
    run_worker(app.Session, app.config, once=True)
    assert sink.received == []  # not before its time
    db.execute(Email.__table__.update().values(send_at=utcnow() - timedelta(seconds=1)))  # its time has come
    db.commit()
    run_worker(app.Session, app.config, once=True)
    assert [mail.rcpt_tos for mail in sink.received] == [["ann@example.test"]]
    # A time without its offset is refused, as the API refuses it, and nothing is saved.
    refused = CliRunner().invoke(cli_main, [*command, "--send-at", "2030-01-01T09:00"])
    assert refused.exit_code == 2 and "--send-at" in refused.output and "offset or Z" in refused.output
    assert db.scalar(select(func.count()).select_from(Email)) == 1


def test_the_send_command_with_no_track_sends_every_message_without_the_image(app, db, users, smtp_settings,
                                                                              monkeypatch):
    sink, _ = smtp_settings
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)
    command = ["send", "--from-user", "sam", "--to", "ann@example.test", "--to", "bob@example.test",
               "--subject", "Untracked", "--html", "<p>Hi <a href='https://example.test/offer'>the offer</a></p>"]

    result = CliRunner().invoke(cli_main, [*command, "--no-track"])

    assert result.exit_code == 0, result.output
    assert "2 sent, 0 failed" in result.output
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ann@example.test", "bob@example.test"]
    for mail in sink.received:
        html = html_of(mail)
        assert not IMAGE_URL.search(html) and "https://example.test/offer" in html
    email = db.scalars(select(Email)).one()
    assert not email.tracking and not any(recipient.tracked for recipient in email.recipients)
    # Without the switch the same command tracks, as the form and the API do by default.
    CliRunner().invoke(cli_main, command)
    assert IMAGE_URL.search(html_of(sink.received[-1]))
