"""What goes out is clean whatever a merge field holds: every field, holding hostile values, filled
into text, attributes, URLs and styles, sent through the real worker to a real SMTP server
(aiosmtpd); the HTML that arrives has no script, no event handler, no javascript:/data: URL and no
style beyond the cleaner's, and each value is there as text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from coretrack.models import Account, Contact, Lead, User
from coretrack.sanitize import STYLE_PROPERTIES, URL_SCHEMES
from coretrack.sending import merge_fields
from coretrack.sending.compose import compose, prepare
from coretrack.sending.worker import run_worker
from coretrack.tracking import clicks

HOSTILE = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(document.domain)",
    "java\tscript:alert(2)",
    "data:text/html,<script>alert(3)</script>",
    '" onmouseover="alert(4)',
    "<script>alert(5)</script><img src=x onerror=alert(6)>",
    "red;position:fixed;background:url(https://evil.test/x)",
]
SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
FIELDS = [code for code, _ in merge_fields.OFFERED]
# Every field in every kind of position a value can land in.
HTML = "<html><body>" + "".join(
    f'<p style="color:{code}">{code} <a href="{code}" title="{code}">link</a> <img src="{code}" alt="{code}">'
    f'<a href="https://example.test/?q={code}">query</a></p>'
    for code in FIELDS) + "</body></html>"


class Arrived(HTMLParser):
    """The elements, attributes and text of the HTML that arrived."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def scheme(url: str) -> str:
    """The URL's scheme as browsers read it (white space dropped, case ignored); "" for a relative URL."""
    found = SCHEME.match("".join(url.split()).lower())
    return found[1] if found else ""


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_merge_field_holding_a_hostile_value_goes_out_clean(app, db, users, smtp_settings, hostile):
    sink, _ = smtp_settings
    sender = User(name="mallory", role="staff", first_name=hostile, last_name=hostile, email=hostile)
    account = Account(name=hostile, email=hostile, phone=hostile, website=hostile)
    contact = Contact(first_name=hostile, last_name=hostile, email="ada@example.test", phone=hostile, account=account)
    lead = Lead(first_name=hostile, last_name=hostile, company=hostile, email="lee@example.test", phone=hostile)
    db.add_all([sender, account, contact, lead])
    db.commit()
    # A contact (its account's fields too) and a lead: between them every field has the value.
    prepared = prepare(db, to=[f"contact:{contact.id}", f"lead:{lead.id}"], subject="News", html=HTML)
    compose(db, app.config, sender, prepared)

    run_worker(app.Session, app.config, once=True)

    assert sorted(address for mail in sink.received for address in mail.rcpt_tos) == [
        "ada@example.test", "lee@example.test"]
    for mail in sink.received:
        arrived = Arrived()
        arrived.feed(mail.message.get_body(preferencelist=("html",)).get_content())
        assert "script" not in arrived.tags
        for name, value in arrived.attributes:
            assert not name.startswith("on"), (name, value)
            if name in ("href", "src"):
                assert scheme(value) in {"", *URL_SCHEMES}, (name, value)
            if name == "style":
                properties = {part.partition(":")[0].strip().lower() for part in value.split(";") if part.strip()}
                assert properties <= STYLE_PROPERTIES, value
        # Not dropped: the value is shown, as text, where the text position had it.
        assert hostile.strip() in "".join(arrived.text)


def test_a_link_made_with_a_merge_field_goes_out_filled_and_the_links_after_it_stay_tracked(
        app, db, users, smtp_settings):
    """A link whose URL holds a merge field is each recipient's own: it cannot be one stored
    redirect, so it goes out as filled, untracked; the email's other links are tracked as ever."""
    sink, _ = smtp_settings
    contact = Contact(first_name="Ada", last_name="Lovelace", email="ada@example.test")
    db.add(contact)
    db.commit()
    html = ('<p><a href="https://shop.example.test/before">before</a> '
            '<a href="https://shop.example.test/?name=$contacts-firstname$">yours</a> '
            '<a href="https://shop.example.test/after">after</a></p>')
    compose(db, app.config, users["sam"], prepare(db, to=[f"contact:{contact.id}"], subject="Hi",
                                                  html=html))

    run_worker(app.Session, app.config, once=True)

    arrived = Arrived()
    arrived.feed(sink.received[0].message.get_body(preferencelist=("html",)).get_content())
    hrefs = [value for name, value in arrived.attributes if name == "href"]
    assert hrefs[1] == "https://shop.example.test/?name=Ada"
    assert [clicks.CLICK_PATH in href for href in (hrefs[0], hrefs[2])] == [True, True]
