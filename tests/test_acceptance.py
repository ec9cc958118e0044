"""End to end: send to a contact through a real SMTP server, open the image, see the count everywhere."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import update
from support.hit_load import commits, wait_until

from coretrack.models import Account, Contact, Recipient, utcnow
from coretrack.tracking.image import GIF

IMAGE_URL = re.compile(r'<img src="([^"]*/modules/Emails/TrackAccess\.php\?t=[^"]+)" width="1" height="1" alt="">')


@pytest.fixture
def contact(db):
    account = Account(name="Acme <Corp>")
    contact = Contact(first_name="Ada", last_name="Lovelace", email="ada@acme.example", account=account)
    db.add_all([account, contact])
    db.commit()
    return contact


def html_part(mail) -> str:
    return mail.message.get_body(preferencelist=("html",)).get_content()


def row_count(html: str, marker: str) -> int:
    """The Accesses cell of the table row that mentions ``marker``."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        if marker in row:
            return int(re.search(r'<td class="num">(\d+)</td>', row).group(1))
    raise AssertionError(f"no row mentions {marker!r}")


def open_image(anon, url: str):
    parts = urlsplit(url)
    path = parts.path.removeprefix("/crm")  # PUBLIC_URL's prefix is Apache's; the bare app is mounted at /
    # A mail client's own agent: an empty one is Apple's privacy prefetch, not a reader.
    return anon.get(path + "?" + parts.query, headers={"User-Agent": "Mozilla/5.0 (X11) Thunderbird/128.0"})


def test_a_sent_email_is_counted_per_recipient_on_every_page_and_in_the_api(staff, anon, smtp_settings, contact, db):
    sink, _ = smtp_settings
    sent = staff.post_json("/api/emails", {
        "to": [f"contact:{contact.id}", "bob@example.test"],
        "subject": "Quarterly <b>report</b>",
        "html": "<html><body><p>Hello</p></body></html>",
    }, status=201).json
    assert sent["delivery"] == "sent"

    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ada@acme.example", "bob@example.test"]
    urls = {}
    for mail in sink.received:
        assert len(mail.rcpt_tos) == 1
        found = IMAGE_URL.findall(html_part(mail))
        assert len(found) == 1
        assert found[0].startswith("http://track.example.test/crm/modules/Emails/TrackAccess.php?t=")
        urls[mail.rcpt_tos[0]] = found[0]
    assert urls["ada@acme.example"] != urls["bob@example.test"]

    # Ada reads it an hour later: a load within seconds of the send would be a scanner's.
    db.execute(update(Recipient).values(sent_at=utcnow() - timedelta(hours=1)))
    db.commit()
    assert open_image(anon, urls["ada@acme.example"]).body == GIF
    wait_until(lambda: staff.get(f"/api/emails/{sent['id']}").json["accesses"] == 1, "the open to be counted", 10)

    email_page = staff.get(f"/emails/{sent['id']}").text
    assert row_count(email_page, "ada@acme.example") == 1
    assert row_count(email_page, "bob@example.test") == 0
    assert "Quarterly &lt;b&gt;report&lt;/b&gt;" in email_page
    assert row_count(staff.get(f"/contacts/{contact.id}").text, "Quarterly &lt;b&gt;report") == 1
    assert row_count(staff.get(f"/accounts/{contact.account_id}").text, "Quarterly &lt;b&gt;report") == 1

    detail = staff.get(f"/api/emails/{sent['id']}").json
    counts = {r["address"]: r["access_count"] for r in detail["recipient_list"]}
    assert counts == {"ada@acme.example": 1, "bob@example.test": 0}
    assert detail["opened"] == 1 and detail["accesses"] == 1
    related = staff.get(f"/api/records/account/{contact.account_id}/emails").json["emails"]
    assert [(e["id"], e["access_count"]) for e in related] == [(sent["id"], 1)]


def test_disabling_tracking_in_the_editor_removes_the_image_and_stops_counting(app, admin, staff, anon, smtp_settings,
                                                                               db):
    sink, _ = smtp_settings
    first = staff.post_json("/api/emails", {"to": ["eve@example.test"], "subject": "Before",
                                            "html": "<p>one</p>"}, status=201).json
    old_url = IMAGE_URL.findall(html_part(sink.received[-1]))[0]

    form = admin.get("/settings").forms["settings-form"]
    form["tracking_disabled"].checked = True
    form.submit(status=303)

    staff.post_json("/api/emails", {"to": ["eve@example.test"], "subject": "After", "html": "<p>two</p>"}, status=201)
    assert "TrackAccess.php" not in html_part(sink.received[-1])
    written = commits(app.tracker.engine)
    assert open_image(anon, old_url).body == GIF
    wait_until(lambda: written, "the open to be written", 10)
    recipient = staff.get(f"/api/emails/{first['id']}").json["recipient_list"][0]
    assert recipient["access_count"] == 0
