"""Unsubscribing: every message carries its recipient's signed link and RFC 8058 headers; GET asks,
POST opts the address out at once; later sends skip it."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select
from support.constants import PUBLIC_URL

from coretrack.db import make_engine, make_session_factory
from coretrack.models import Contact, Lead, Recipient, SettingChange
from coretrack.people import suppression
from coretrack.people.unsubscribe import DEFAULT_FOOTER, UNSUBSCRIBE_PATH
from coretrack.sending.mime import MessageTemplate
from coretrack.settings import SettingsService
from coretrack.tracking import tokens
from coretrack.validation import ValidationError

LINK = re.compile(r"https?://[^\s\"<>]+/email/unsubscribe\?t=[A-Za-z0-9_.-]+")


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ["ada@example.test"], "subject": "Hello", "html": "<html><body><p>Hi</p></body></html>"}


def add_contact(db, email="ada@example.test") -> Contact:
    contact = Contact(first_name="Ada", last_name="Lovelace", email=email)
    db.add(contact)
    db.commit()
    return contact


def parts(data: bytes) -> tuple[object, str, str]:
    message = message_from_bytes(data, policy=policy.default)
    return (message, message.get_body(preferencelist=("html",)).get_content(),
            message.get_body(preferencelist=("plain",)).get_content())


def unsubscribe_path(token: str) -> str:
    return f"{UNSUBSCRIBE_PATH}?t={token}"


# -- the message ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "Hi in text"])
def test_every_message_carries_its_recipients_link_in_both_bodies_and_the_one_click_headers(
        app, db, users, smtp_settings, text, send):
    sink, _ = smtp_settings
    add_contact(db)
    result = send(to=["ada@example.test", "bob@example.test"], text=text)
    assert len(sink.received) == 2
    for mail in sink.received:
        recipient = db.scalar(select(Recipient).where(Recipient.address == mail.rcpt_tos[0]))
        link = f"{PUBLIC_URL}{unsubscribe_path(recipient.token)}"
        message, html, plain = parts(mail.data)
        assert message["List-Unsubscribe"] == f"<{link}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert LINK.findall(html) == [link] and LINK.findall(plain) == [link]
        assert DEFAULT_FOOTER in html and DEFAULT_FOOTER in plain
    assert result.email.status == "sent"


def test_with_tracking_off_the_link_is_still_there_and_no_image(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, "admin")
    send()
    (recipient,) = db.scalars(select(Recipient)).all()
    message, html, _ = parts(sink.received[0].data)
    assert "TrackAccess" not in html
    assert message["List-Unsubscribe"] == f"<{PUBLIC_URL}{unsubscribe_path(recipient.token)}>"


@pytest.mark.parametrize("padding", range(0, 80, 3))
def test_the_token_fills_every_placeholder_whatever_the_soft_line_breaks(padding):
    token = tokens.new_token(b"secret")
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Hi",
                               html="x" * padding + "<p>Hi</p>", text="y" * padding, public_url=PUBLIC_URL,
                               unsubscribe_url=PUBLIC_URL, unsubscribe_footer="Bye?")
    data = template.render("ann@example.test", "Ann", token)
    assert template.placeholder.encode() not in data.replace(b"=\r\n", b"")
    message, html, plain = parts(data)
    link = f"{PUBLIC_URL}{unsubscribe_path(token)}"
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert LINK.findall(html) == [link] and LINK.findall(plain) == [link]
    assert f"TrackAccess.php?t={token}" in html


def test_the_footer_is_a_setting_and_its_change_is_audited(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    SettingsService(db, app.config).update({"unsubscribe_footer": "Had enough of us?"}, "admin")
    send(text="Hi")
    _, html, plain = parts(sink.received[0].data)
    assert "Had enough of us?" in html and "Had enough of us?" in plain and DEFAULT_FOOTER not in html
    change = db.scalars(select(SettingChange).where(SettingChange.key == "unsubscribe_footer")).one()
    assert (change.old_value, change.new_value, change.user_name) == (DEFAULT_FOOTER, "Had enough of us?", "admin")


def test_the_footer_must_be_one_line_and_is_in_the_editor(app, db, admin):
    with pytest.raises(ValidationError, match="single line"):
        SettingsService(db, app.config).update({"unsubscribe_footer": "a\nb"}, "admin")
    assert "unsubscribe_footer" in admin.get("/settings").text


# -- the page


def test_get_asks_and_changes_nothing_then_post_opts_out_at_once(app, db, users, anon, smtp_settings, send):
    contact = add_contact(db)
    send()
    (recipient,) = db.scalars(select(Recipient)).all()
    page = anon.get(unsubscribe_path(recipient.token))
    assert page.status_code == 200 and "Do you want to receive no more email" in page.text
    assert page.headers["Content-Security-Policy"] and page.headers["Cache-Control"] == "no-store"
    anon.head(unsubscribe_path(recipient.token))
    db.expire_all()
    assert not db.get(Contact, contact.id).email_opt_out
    done = page.forms[0].submit()  # no cookie, no CSRF token: the signed token is the authority
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    db.expire_all()
    contact = db.get(Contact, contact.id)
    assert contact.email_opt_out and contact.email_opt_out_at is not None
    assert contact.email_opt_out_reason == f"unsubscribed with the link in email {recipient.email_id}"


def test_the_one_click_post_of_a_mail_provider_opts_out_and_later_sends_skip_the_record(
        app, db, users, anon, smtp_settings, send):
    sink, _ = smtp_settings
    contact = add_contact(db)
    send()
    (recipient,) = db.scalars(select(Recipient)).all()
    header = message_from_bytes(sink.received[0].data, policy=policy.default)["List-Unsubscribe"]
    path = header.strip("<>").removeprefix(PUBLIC_URL)
    reply = anon.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert reply.status_code == 200
    again = anon.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert again.status_code == 200  # asking twice is no error
    db.expire_all()
    assert db.get(Recipient, recipient.id).opted_out_as == "unsubscribe"  # the email's unsubscribe rate counts it
    result = send(to=[f"contact:{contact.id}", "other@example.test"])
    assert [mail.rcpt_tos for mail in sink.received] == [["ada@example.test"], ["other@example.test"]]
    skipped = db.scalar(select(Recipient).where(Recipient.email_id == result.email.id,
                                                Recipient.address == "ada@example.test"))
    assert skipped.status == "skipped"


def test_an_address_no_record_holds_is_kept_opted_out_by_address_without_making_a_record(
        app, db, users, anon, smtp_settings, send):
    sink, _ = smtp_settings
    send(to=["stranger@example.test"])
    (recipient,) = db.scalars(select(Recipient)).all()
    anon.post(unsubscribe_path(recipient.token))
    assert db.scalars(select(Lead)).all() == []
    assert suppression.suppressed(db, ["Stranger@example.test"]) == {"stranger@example.test"}
    send(to=["stranger@example.test"])
    assert len(sink.received) == 1


def test_forged_mangled_unknown_and_missing_tokens_get_one_neutral_page_and_change_nothing(
        app, db, users, anon, smtp_settings, send):
    contact = add_contact(db)
    send()
    (recipient,) = db.scalars(select(Recipient)).all()
    unknown = tokens.new_token(app.config.secret_key())  # signed, but no recipient has it
    forged = tokens.new_token(b"another install's key")
    mangled = recipient.token[:-1] + ("A" if recipient.token[-1] != "A" else "B")
    pages = set()
    for query in (f"?t={forged}", f"?t={mangled}", "", "?t=", f"?t={recipient.token}x", f"?t[]={recipient.token}"):
        pages.add(anon.get(UNSUBSCRIBE_PATH + query, status=400).text)
        pages.add(anon.post(UNSUBSCRIBE_PATH + query, status=400).text)
    pages.add(anon.post(unsubscribe_path(unknown), status=400).text)
    assert len(pages) == 1 and "This link does not work" in pages.pop()
    assert anon.get(unsubscribe_path(unknown)).status_code == 200  # the signature alone: no database needed
    db.expire_all()
    assert not db.get(Contact, contact.id).email_opt_out
    assert not db.scalars(select(Lead)).all()


def test_with_the_database_down_the_post_says_so_with_503_and_the_get_still_asks(app, db, users, anon,
                                                                              smtp_settings, send):
    send()
    (recipient,) = db.scalars(select(Recipient)).all()
    working = app.Session
    app.Session = make_session_factory(make_engine("sqlite:////nonexistent-directory/coretrack.db"))
    try:
        assert anon.get(unsubscribe_path(recipient.token)).status_code == 200
        down = anon.post(unsubscribe_path(recipient.token), status=503)
        assert "try again later" in down.text.lower()
    finally:
        app.Session = working


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_refused(anon, method):
    assert getattr(anon, method)(UNSUBSCRIBE_PATH, status="*").status_code in (401, 405)
