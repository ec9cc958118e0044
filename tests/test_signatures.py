"""Signatures: each user keeps an HTML signature on their account page, cleaned of anything that
runs; it ends every email they write unless they untick it for that one."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from coretrack.models import User
from coretrack.preferences import MAX_SIGNATURE

SIGNATURE = ('<p style="color: #336699; position: fixed">Sam Smith — <b>Sales</b></p>'
             '<p><a href="https://example.test/" onclick="steal()">example.test</a>'
             '<a href="javascript:alert(1)">x</a><img src="https://example.test/logo.png" onerror="steal()"></p>'
             "<script>steal()</script><style>body { display: none }</style><form><input name=pw></form>")


def save_signature(client, signature: str, status: int = 303):
    form = client.get("/account").forms["account-form"]
    form["signature_html"] = signature
    return form.submit(status=status)


def stored_signature(db, name: str = "sam") -> str:
    db.expire_all()
    return db.scalar(select(User.signature_html).where(User.name == name))


def test_a_saved_signature_keeps_its_formatting_and_loses_everything_that_runs(staff, db):
    save_signature(staff, SIGNATURE)
    stored = stored_signature(db)
    assert "<b>Sales</b>" in stored and 'style="color:#336699"' in stored
    assert 'href="https://example.test/"' in stored and 'src="https://example.test/logo.png"' in stored
    for dangerous in ("script", "steal", "onclick", "onerror", "javascript:", "<style", "display", "<form", "<input",
                      "position"):
        assert dangerous not in stored, dangerous
    page = staff.get("/account")
    assert page.forms["account-form"]["signature_html"].value == stored
    preview = page.html.select_one("iframe[title='Your signature']")
    assert preview.has_attr("sandbox") and not preview["sandbox"] and preview["srcdoc"] == stored


def test_a_signature_too_long_is_refused_and_the_old_one_kept(staff, db):
    save_signature(staff, "<p>Sam</p>")
    page = save_signature(staff, "<p>" + "x" * MAX_SIGNATURE + "</p>", status=400)
    assert "at most" in page.html.select_one("#e-signature_html").text
    assert stored_signature(db) == "<p>Sam</p>"


def test_without_a_signature_compose_offers_none(staff):
    assert "signature" not in staff.get("/emails/new").forms["compose"].fields


@pytest.mark.parametrize("ticked", [True, False], ids=["ticked", "unticked"])
def test_the_signature_ends_each_email_unless_unticked(staff, db, smtp_settings, ticked):
    sink, _ = smtp_settings
    save_signature(staff, '<p>Sam Smith, <a href="https://example.test/">example.test</a></p>')
    form = staff.get("/emails/new").forms["compose"]
    assert form["signature"].checked  # on by default
    form["to"] = "ann@example.test"
    form["subject"] = "Hello"
    form["html"] = "<html><body><p>Our news</p></body></html>"
    form["text"] = "Our news"
    form["signature"] = ticked
    preview = form.submit("action", value="preview")
    assert ("Sam Smith" in preview.html.select_one("iframe.message")["srcdoc"]) is ticked
    preview.forms["compose"].submit("action", value="send", status=303)
    message = sink.received[0].message
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    if ticked:
        # After the body, in both parts (before the tracking image).
        assert html.index("Our news") < html.index("Sam Smith") < html.index("TrackAccess.php")
        # After the body typed, before the unsubscribe footer.
        text = text.replace("\r\n", "\n")
        assert text.index("Our news") < text.index("-- \nSam Smith, example.test (https://example.test/)") < \
            text.index("unsubscribe")
    else:
        assert "Sam Smith" not in html and "Sam Smith" not in text
    assert len(sink.received) == 1
