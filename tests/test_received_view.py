"""What each person got: each recipient row of the email page opens their message built again on
demand, with their own merge values, token and signed links (the very bytes they received), marked
"as received by" them, in the sandboxed frame without the tracking image and with links that do not
open; looking at it counts nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coretrack.models import AccessEvent, ClickEvent, Contact


@pytest.fixture
def email_fields():
    return {"subject": "Hello $contacts-firstname|there$",
            "html": '<p>Dear $contacts-firstname|there$, see <a href="https://example.test/offer">the offer</a></p>'}


@pytest.fixture
def sent(db, smtp_settings, send):
    zoe = Contact(first_name="Zoë", last_name="Ardent", email="zoe@example.test")
    blank = Contact(first_name="", last_name="Nameless", email="nobody@example.test")
    db.add_all([zoe, blank])
    db.commit()
    sink, _ = smtp_settings
    email = send(to=[f"contact:{zoe.id}", f"contact:{blank.id}"]).email
    arrived = {mail.rcpt_tos[0]: mail.message for mail in sink.received}
    return email, arrived


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def test_each_recipient_row_opens_what_that_person_received(staff, db, sent):
    email, arrived = sent
    page = staff.get(f"/emails/{email.id}")
    for recipient in email.recipients:
        link = page.html.select_one(f'a[href="/emails/{email.id}/recipients/{recipient.id}"]')
        assert link and link.text == recipient.address
        shown = page.click(href=f"/emails/{email.id}/recipients/{recipient.id}$")
        assert f"As received by {recipient.name}" in shown.html.select_one("h1").text
        assert shown.html.select_one("#received-subject").text == arrived[recipient.address]["Subject"]
        # The links as they arrived: the recipient's own token and signature in each.
        links = [cell.text for cell in shown.html.select("#received-links ~ div td code")]
        got = html_of(arrived[recipient.address])
        assert links and all(link in got.replace("&amp;", "&") and recipient.token in link for link in links)
    zoe = staff.get(f"/emails/{email.id}/recipients/{email.recipients[0].id}")
    assert zoe.html.select_one("#received-subject").text == "Hello Zoë"
    blank = staff.get(f"/emails/{email.id}/recipients/{email.recipients[1].id}")
    assert blank.html.select_one("#received-subject").text == "Hello there"
    assert "Dear there," in blank.html.select_one("iframe#received-message")["srcdoc"]


def test_the_view_has_no_tracking_image_and_its_links_cannot_open(staff, sent):
    email, arrived = sent
    recipient = email.recipients[0]
    assert "TrackAccess.php" in html_of(arrived[recipient.address])
    frame = staff.get(f"/emails/{email.id}/recipients/{recipient.id}").html.select_one("iframe#received-message")
    assert frame.has_attr("sandbox") and not frame["sandbox"]  # nothing allowed
    assert "TrackAccess.php" not in frame["srcdoc"] and recipient.token in frame["srcdoc"]
    assert '<a target="_blank"' in frame["srcdoc"]


def test_looking_at_it_counts_nothing(staff, db, sent):
    email, _ = sent
    for recipient in email.recipients:
        staff.get(f"/emails/{email.id}/recipients/{recipient.id}")
    db.expire_all()
    assert [(r.access_count, r.click_count) for r in email.recipients] == [(0, 0), (0, 0)]
    assert db.scalar(select(func.count()).select_from(AccessEvent)) == 0
    assert db.scalar(select(func.count()).select_from(ClickEvent)) == 0


def test_a_recipient_of_another_email_or_an_erased_one_is_not_found(staff, db, sent, send):
    email, _ = sent
    other = send(to=["ann@example.test"], subject="Other", html="<p>Other</p>").email
    staff.get(f"/emails/{email.id}/recipients/{other.recipients[0].id}", status=404)
    email.recipients[0].erased = True
    db.commit()
    page = staff.get(f"/emails/{email.id}")
    assert not page.html.select_one(f'a[href="/emails/{email.id}/recipients/{email.recipients[0].id}"]')
    staff.get(f"/emails/{email.id}/recipients/{email.recipients[0].id}", status=404)
