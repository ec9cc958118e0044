"""Email the mail library cannot encode: refused at the door with a 400 naming the field, and one
that is already stored (saved before this was checked) fails on its own without holding up the rest.

Every value that reaches a header or the MIME is covered: subject, Reply-To, From name and address
from the settings, recipient names from CRM records, attachments, the HTML and text bodies.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from coretrack.attachments import attachment_path
from coretrack.models import Attachment, Contact, Email, Recipient, Setting
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver
from coretrack.sending.worker import run_worker
from coretrack.settings import SettingsService
from coretrack.tracking import tokens

# Every character that str.splitlines() (and so the mail library) treats as a line break.
LINE_BREAKS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Text as people and programs type it, with the characters that have broken mail before mixed in.
TRICKY = st.sampled_from([*LINE_BREAKS, "\r", "\n", "\t", " ", "\ud800", "\udfff", "=?utf-8?q?a?=", "=?", "?=",
                          '"', "\\", "<", ">", "@", ",", ";", ":", "(", ")", "ü", "😀", "\u202e", "\ufeff"])
TEXT = st.lists(st.one_of(st.characters(blacklist_characters="\x00"), TRICKY), min_size=1, max_size=25).map("".join)
# What a name column can hold (100 characters, no lone surrogates), so that few examples are thrown away.
NAME = st.lists(st.one_of(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                          TRICKY.filter(lambda part: not any("\ud800" <= char <= "\udfff" for char in part))),
                min_size=1, max_size=7).map("".join)


def email_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Email))


def api_send(client, **fields):
    body = {"to": ["ann@example.test"], "subject": "Hello", "html": "<p>Hi</p>"}
    body.update(fields)
    return client.post_json("/api/emails", body, expect_errors=True)


def form_send(client, **fields):
    form = client.get("/emails/new").forms["compose"]
    values = {"to": "ann@example.test", "subject": "Hello", "html": "<p>Hi</p>"}
    values.update(fields)
    for name, value in values.items():
        form[name] = value
    return form.submit("action", value="send", expect_errors=True)


def stored_email(app, db, users, *, subject="Stored before the checks", names=("",), status="pending", **fields):
    """An email written straight to the database, as one saved before validation refused such values."""
    values = dict(subject=subject, html_body="<p>Hi</p>", text_body="", sender_id=users["sam"].id,
                  from_address="crm@example.test", from_name="Example CRM", reply_to="", status="queued",
                  tracking=True)
    values.update(fields)
    email = Email(**values)
    for number, name in enumerate(names):
        email.recipients.append(Recipient(address=f"old{number}@example.test", name=name, kind="to",
                                          token=tokens.new_token(app.secret), status=status))
    db.add(email)
    db.commit()
    return email


# -- refused at the door -------------------------------------------------------------------


@pytest.mark.parametrize("char", LINE_BREAKS)
def test_a_subject_with_a_line_break_character_is_refused_by_the_api_naming_it(staff, db, char):
    response = api_send(staff, subject=f"Quarterly{char}report")
    assert response.status_int == 400
    assert "single line" in response.json["fields"]["subject"]
    assert f"U+{ord(char):04X}" in response.json["fields"]["subject"]
    assert email_count(db) == 0


@pytest.mark.parametrize("char", ["\x0b", "\x1c", "\u2028"])
def test_a_subject_with_a_line_break_character_is_shown_next_to_the_field(staff, db, char):
    response = form_send(staff, subject=f"Quarterly{char}report")
    assert response.status_int == 400
    assert f"U+{ord(char):04X}" in response.html.select_one("#e-subject").text
    assert email_count(db) == 0


@pytest.mark.parametrize("field", ["subject", "html", "text", "reply_to", "to"])
def test_a_lone_surrogate_is_refused_naming_the_field(staff, db, field):
    value = {"to": ["ann\ud800@example.test"], "reply_to": "r\udfff@example.test"}.get(field, "Hi \ud800 there")
    response = api_send(staff, **{field: value})
    assert response.status_int == 400
    assert field in response.json["fields"]
    assert email_count(db) == 0


def test_a_non_ascii_reply_to_is_refused_with_the_reason(staff, db):
    for response in (api_send(staff, reply_to="jürgen@example.test"), form_send(staff, reply_to="jürgen@example.test")):
        assert response.status_int == 400
        message = (response.json["fields"]["reply_to"] if response.content_type == "application/json"
                   else response.html.select_one("#e-reply_to").text)
        assert "non-ASCII" in message
    assert email_count(db) == 0


def test_a_subject_that_mail_programs_would_decode_into_other_text_is_refused(staff, db):
    response = api_send(staff, subject="Price =?utf-8?q?=E2=82=AC5?= only")
    assert response.status_int == 400 and "=?" in response.json["fields"]["subject"]
    assert email_count(db) == 0


def test_the_settings_refuse_a_from_name_or_address_that_cannot_go_into_mail(app, db):
    service = SettingsService(db, app.config)
    with pytest.raises(ValueError) as error:
        service.update({"from_name": "Example\u2028CRM", "from_address": "crm\u00fc@example.test"}, "admin")
    assert "U+2028" in error.value.errors["from_name"]
    assert "non-ASCII" in error.value.errors["from_address"]
    with pytest.raises(ValueError) as error:
        service.update({"from_name": "=?utf-8?q?Your_bank?="}, "admin")
    assert "=?" in error.value.errors["from_name"]
    assert service.get("from_name") == "coretrack" and service.get("from_address") == "crm@localhost"


def test_a_record_whose_name_mail_would_misread_cannot_be_sent_to_and_the_reason_names_it(staff, db, users):
    contact = Contact(first_name="=?utf-8?q?Bob?=", last_name="Smith", email="bob@example.test")
    db.add(contact)
    db.commit()
    response = api_send(staff, to=[f"contact:{contact.id}"])
    assert response.status_int == 400
    assert "=?" in response.json["fields"]["to"] and f"contact:{contact.id}" in response.json["fields"]["to"]
    assert email_count(db) == 0


def test_from_settings_stored_before_the_checks_refuse_the_send_with_the_reason(staff, app, db, smtp_settings):
    db.merge(Setting(key="from_name", value="Example\nCRM"))
    db.commit()
    response = api_send(staff)
    assert response.status_int == 400
    assert "From name" in response.json["fields"]["from"] and "U+000A" in response.json["fields"]["from"]
    page = form_send(staff)
    assert page.status_int == 400 and "U+000A" in page.html.select_one("[role=alert]").text
    assert email_count(db) == 0


# -- either refused naming the field, or delivered and read back the same --------------------


def refused_naming(response, field: str, db, before: int) -> bool:
    """True when the send was refused with a 400 naming ``field`` and saved nothing; else it was sent."""
    if response.status_int != 400:
        assert response.status_int == 201, response.text
        return False
    assert field in response.json["fields"], response.json
    assert email_count(db) == before
    return True


@PROPERTY
@given(subject=TEXT)
@example(subject="Quarterly\x0breport").via("the audit")
@example(subject="Price =?utf-8?q?=E2=82=AC5?=").via("a literal encoded word")
def test_any_subject_is_refused_naming_it_or_arrives_unchanged(staff, db, smtp_settings, subject):
    sink, _ = smtp_settings
    before, received = email_count(db), len(sink.received)
    response = api_send(staff, subject=subject)
    if refused_naming(response, "subject", db, before):
        return
    assert [r["status"] for r in response.json["recipient_list"]] == ["sent"]
    assert len(sink.received) == received + 1
    assert sink.received[-1].message["Subject"] == subject.strip() == response.json["subject"]


@PROPERTY
@given(local_part=TEXT)
@example(local_part="jürgen").via("the audit")
def test_any_reply_to_is_refused_naming_it_or_arrives_unchanged(staff, db, smtp_settings, local_part):
    sink, _ = smtp_settings
    before, received = email_count(db), len(sink.received)
    response = api_send(staff, reply_to=f"{local_part}@example.test")
    if refused_naming(response, "reply_to", db, before):
        return
    assert len(sink.received) == received + 1
    assert sink.received[-1].message["Reply-To"].addresses[0].addr_spec == f"{local_part}@example.test".strip()


@PROPERTY
@given(first_name=NAME)
@example(first_name="Ann\u2028Lee").via("the audit")
@example(first_name="=?utf-8?q?Ann?=").via("a literal encoded word")
def test_any_record_name_is_refused_naming_the_field_or_arrives_unchanged(staff, db, smtp_settings, first_name):
    """Names come from CRM records (forms, imports, older data), so they are written straight to the database."""
    sink, _ = smtp_settings
    contact = Contact(first_name=first_name, last_name="Smith", email="ada@example.test")
    db.add(contact)
    try:
        db.commit()
    except (SQLAlchemyError, UnicodeError):
        db.rollback()
        assume(False)  # a value the database itself cannot hold never becomes a record
    before, received = email_count(db), len(sink.received)
    response = api_send(staff, to=[f"contact:{contact.id}"])
    if refused_naming(response, "to", db, before):
        return
    assert len(sink.received) == received + 1
    expected = " ".join(f"{first_name} Smith".split())
    assert sink.received[-1].message["To"].addresses[0].display_name == expected


# -- stored before the checks: fails on its own, the rest goes out ------------------------------


@pytest.mark.parametrize("fields, reason", [
    ({"subject": "Quarterly\x0breport"}, "subject"),
    ({"subject": "Line\u2028separator"}, "subject"),
    ({"reply_to": "jürgen@example.test"}, "Reply-To"),
    ({"from_name": "Example\nCRM"}, "From name"),
    ({"from_address": "crmü@example.test"}, "From address"),
])
def test_an_email_that_cannot_be_built_fails_with_the_reason_and_the_next_one_is_delivered(
        app, db, users, smtp_settings, fields, reason):
    sink, _ = smtp_settings
    broken = stored_email(app, db, users, names=("Ann", "Bob"), **fields)
    later = compose(db, app.config, users["sam"], prepare(
        db, to=[f"r{number}@example.test" for number in range(12)], subject="Normal", html="<p>Hi</p>")).email

    assert run_worker(app.Session, app.config, once=True) == 14
    db.expire_all()

    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == sorted(f"r{n}@example.test" for n in range(12))
    assert later.status == "sent"
    assert broken.status == "failed"
    for recipient in broken.recipients:
        assert recipient.status == "failed" and recipient.attempts == 1
        assert recipient.reply.startswith("not sent: ") and reason in recipient.reply
    assert run_worker(app.Session, app.config, once=True) == 0  # nothing left over, nothing sent twice


def test_a_missing_attachment_file_fails_that_email_with_the_reason(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    prepared = prepare(db, to=["ann@example.test"], subject="With a file", html="<p>Hi</p>",
                       attachments=[("notes.txt", "text/plain", b"notes")])
    result = compose(db, app.config, users["sam"], prepared)
    attachment_path(app.config, result.email.attachments[0]).unlink()

    deliver(app.Session, app.config, result.email.id)
    db.expire_all()

    assert sink.received == []
    [recipient] = result.email.recipients
    assert recipient.status == "failed" and "notes.txt" in recipient.reply and "missing" in recipient.reply


def test_an_attachment_name_that_cannot_be_encoded_fails_that_email_with_the_reason(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    email = stored_email(app, db, users, names=("Ann",))
    app.config.attachments_dir.mkdir(parents=True, exist_ok=True)
    (app.config.attachments_dir / "0123456789abcdef").write_bytes(b"notes")
    email.attachments.append(Attachment(filename="notes\x0b.txt", content_type="text/plain", size=5,
                                        storage_name="0123456789abcdef"))
    db.commit()

    deliver(app.Session, app.config, email.id)
    db.expire_all()

    assert sink.received == []
    [recipient] = email.recipients
    assert recipient.status == "failed"
    assert "attachment 'notes\\x0b.txt'" in recipient.reply and "U+000B" in recipient.reply


def test_a_recipient_whose_name_cannot_be_encoded_fails_alone(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    email = stored_email(app, db, users, subject="Hello", names=("Ann\nBcc: eve@example.test", "Bob"))

    deliver(app.Session, app.config, email.id)
    db.expire_all()

    assert [mail.rcpt_tos for mail in sink.received] == [["old1@example.test"]]
    ann, bob = email.recipients
    assert ann.status == "failed" and ann.reply.startswith("not sent: ") and "name" in ann.reply
    assert bob.status == "sent" and email.status == "partial"


def test_retrying_an_email_that_cannot_be_built_shows_the_reason_not_a_server_error(staff, app, db, users,
                                                                                  smtp_settings):
    sink, _ = smtp_settings
    email = stored_email(app, db, users, subject="Quarterly\x0breport", names=("Ann",), status="failed")

    page = staff.get(f"/emails/{email.id}").forms["retry"].submit()
    assert page.status_int == 303
    page = page.follow()

    assert "still failed" in page.html.select_one("[role=status]").text
    [row] = page.html.select("table[aria-labelledby=recipients] tbody tr")
    assert "not sent: " in row.text and "U+000B" in row.text
    assert sink.received == []
