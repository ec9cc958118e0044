"""Fallbacks and readable subjects: ``$contacts-firstname|there$`` gives "there" to a recipient with no
first name (and the preview says so), and every page that names a sent email shows its subject as a
reader would take it ("Hello ‹first name›"), never the raw codes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coretrack.models import Contact, Notification
from coretrack.notifications import notify
from coretrack.sending import merge_fields


def values(first: str = "") -> dict[str, str]:
    return merge_fields.values_for(Contact(first_name=first, last_name="Lovelace", email="ada@example.test"),
                                   merge_fields.sender_values(None))


def test_an_empty_field_gets_its_fallback_in_the_subject_and_both_bodies_and_it_is_reported():
    rendered = merge_fields.render("Hello $contacts-firstname|there$", "<p>Dear $contacts-firstname|friend$,</p>",
                                   "Dear $contacts-firstname|friend$,", values(""))
    assert (rendered.subject, rendered.html, rendered.text) == ("Hello there", "<p>Dear friend,</p>", "Dear friend,")
    assert rendered.fallbacks == ["$contacts-firstname|friend$", "$contacts-firstname|there$"]
    assert rendered.empty == []


def test_a_field_with_a_value_ignores_its_fallback():
    rendered = merge_fields.render("Hello $contacts-firstname|there$", "<p>$contacts-firstname|x$</p>", "",
                                   values("Zoë"))
    assert (rendered.subject, rendered.html, rendered.fallbacks) == ("Hello Zoë", "<p>Zoë</p>", [])


def test_a_fallback_is_text_only_in_html():
    # Markup cannot be a fallback: the code is then no field at all and stays as written.
    rendered = merge_fields.render("", "<p>$contacts-firstname|<b>x</b>$</p>", "", values(""))
    assert "<b>" in rendered.html and rendered.fallbacks == []
    escaped = merge_fields.render("", "<p>$contacts-firstname|you &amp; yours$</p>", "", values(""))
    assert escaped.html == "<p>you &amp; yours</p>"


def test_readable_shows_each_field_by_its_name_and_leaves_other_text_alone():
    assert merge_fields.readable("Hello $contacts-firstname$ from $users-first_name$") == \
        "Hello ‹first name› from ‹sender's first name›"
    assert merge_fields.readable("Hi $contacts-firstname|there$, $9 $foo-bar$") == "Hi ‹first name›, $9 $foo-bar$"


@pytest.fixture
def zoe(db):
    zoe = Contact(first_name="", last_name="Zoë", email="zoe@example.test")
    db.add(zoe)
    db.commit()
    return zoe


def test_the_preview_says_where_a_fallback_was_used(staff, zoe):
    form = staff.get("/emails/new").forms["compose"]
    form["to"] = f"contact:{zoe.id}"
    form["subject"] = "Hello $contacts-firstname|there$"
    form["html"] = "<p>Dear $contacts-firstname|there$,</p>"
    page = form.submit("action", value="preview")
    assert "$contacts-firstname|there$" in page.html.select_one("#merge-fallbacks").text
    assert "<p>Dear there,</p>" in page.html.select_one("iframe.message")["srcdoc"]
    assert not page.html.select_one("#merge-warnings")


def test_every_page_naming_a_sent_email_shows_the_readable_subject(staff, db, users, send, zoe, smtp_settings):
    email = send(to=[f"contact:{zoe.id}"], subject="Hello $contacts-firstname|there$",
                 html="<p>Hi</p>").email
    readable = "Hello ‹first name›"
    pages = {"/emails": "table", f"/emails/{email.id}": "h1", f"/contacts/{zoe.id}": "main"}
    for path, where in pages.items():
        shown = staff.get(path).html.select_one(where).text
        assert readable in shown and "$contacts-firstname" not in shown, path
    assert staff.get(f"/emails/{email.id}").html.title.text.startswith(readable)
    api = staff.get(f"/api/emails/{email.id}").json
    assert api["subject"] == "Hello $contacts-firstname|there$" and api["subject_display"] == readable
    # The reports (their pages, CSV and API), the email's links and a comparison.
    other = send(to=["bo@example.test"], subject="Other news", html="<p>Hi</p>").email
    db.refresh(email)
    assert email.sent_at is not None, email.status
    pair = f"email={email.id}&email={other.id}"
    for path in ("/reports/emails", "/reports/emails.csv", f"/reports/emails/{email.id}/links",
                 f"/reports/compare?{pair}", f"/reports/compare.csv?{pair}"):
        shown = staff.get(path).text
        assert readable in shown and "$contacts-firstname" not in shown, path
    assert readable in [row["subject"] for row in staff.get("/api/reports/emails").json["rows"]]
    assert readable in [row["subject"] for row in staff.get(f"/api/reports/compare?{pair}").json["emails"]]


def test_a_notification_names_the_email_by_its_readable_subject(staff, app, db, users, send, zoe):
    email = send(to=[f"contact:{zoe.id}"], subject="Hello $contacts-firstname$", html="<p>Hi</p>").email
    recipient = email.recipients[0]
    recipient.first_human_at = recipient.first_access = email.created_at
    db.commit()
    notify(app.Session, app.config)
    assert db.scalars(select(Notification)).one().email_id == email.id
    page = staff.get("/notifications").html.select_one("table").text
    assert "Hello ‹first name›" in page and "$contacts" not in page
