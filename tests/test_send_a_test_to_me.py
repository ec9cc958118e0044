"""Send a test to me, from compose and from a template: one message to the user's own address with
a chosen recipient's merge values, its subject starting "[Test]", marked at the top, and counted
nowhere: no email row, no recipient, no token, no tracking image, no rewritten or unsubscribe link."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coretrack.models import Contact, Email, EmailTemplate, Recipient, User


@pytest.fixture
def me(db, users, smtp_settings):
    sam = db.scalar(select(User).where(User.name == "sam"))
    sam.first_name, sam.email = "Sam", "sam@example.test"
    zoe = Contact(first_name="Zoë", last_name="Ardent", email="zoe@example.test")
    db.add(zoe)
    db.commit()
    return zoe


def nothing_saved(db) -> bool:
    return db.scalar(select(func.count()).select_from(Email)) == 0 == db.scalar(
        select(func.count()).select_from(Recipient))


def test_a_test_from_compose_goes_to_me_only_with_the_chosen_recipients_values(staff, db, me, smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/emails/new").forms["compose"]
    form["to"] = f"ann@example.test, contact:{me.id}"
    form["subject"] = "Hello $contacts-firstname|there$"
    form["html"] = '<p>Dear $contacts-firstname|there$, <a href="https://example.test/offer">offer</a></p>'
    page = form.submit("action", value="test")
    assert "sam@example.test" in page.html.select_one("#test-sent").text
    [mail] = sink.received
    assert mail.rcpt_tos == ["sam@example.test"]
    message = mail.message
    assert message["Subject"] == "[Test] Hello Zoë" and message["To"] == "Sam <sam@example.test>"
    html = message.get_body(("html",)).get_content()
    assert "Test message, sent only to you" in html and "Dear Zoë" in html
    assert "TrackAccess.php" not in html and "/email/click" not in html and "https://example.test/offer" in html
    assert "Unsubscribe" not in html and message["List-Unsubscribe"] is None
    assert nothing_saved(db)
    # The form is still there, as it was: the email itself is not sent.
    assert page.forms["compose"]["subject"].value == "Hello $contacts-firstname|there$"


def test_preview_as_chooses_whose_values_the_test_carries(staff, db, me, smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/emails/new").forms["compose"]
    form["to"] = f"contact:{me.id}, ann@example.test"
    form["subject"] = "Hello $contacts-firstname|there$"
    form["html"] = "<p>Hi</p>"
    preview = form.submit("action", value="preview").forms["compose"]
    preview["preview_as"] = "ann@example.test"
    preview.submit("action", value="test")
    assert sink.received[-1].message["Subject"] == "[Test] Hello there"


def test_without_my_own_address_no_test_is_sent_and_the_page_says_why(staff, db, smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/emails/new").forms["compose"]
    form["to"], form["subject"], form["html"] = "ann@example.test", "Hello", "<p>Hi</p>"
    page = form.submit("action", value="test", status=400)
    assert "Account page" in page.html.select_one("#e-test").text
    assert sink.received == [] and nothing_saved(db)


def test_a_test_from_a_template_with_a_records_values(staff, db, me, smtp_settings):
    sink, _ = smtp_settings
    form = staff.get("/templates/new").forms["template-form"]
    form["name"], form["subject"], form["html"] = "Welcome", "Welcome, $contacts-firstname|friend$", "<p>Hi</p>"
    form.submit(status=303)
    template = db.scalars(select(EmailTemplate)).one()
    test = staff.get(f"/templates/{template.id}").forms["test-template"]
    test["test_as"] = f"contact:{me.id}"
    page = test.submit(status=303).follow()
    assert "Test sent to sam@example.test" in page.text
    assert sink.received[-1].message["Subject"] == "[Test] Welcome, Zoë"
    empty = staff.get(f"/templates/{template.id}").forms["test-template"].submit(status=303)
    assert empty and sink.received[-1].message["Subject"] == "[Test] Welcome, friend"
    assert nothing_saved(db)
