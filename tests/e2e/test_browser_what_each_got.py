"""What each person got, in a real browser against coretrack under a real Apache, on SQLite and on
PostgreSQL: staff send as themselves with a fallback for an empty first name (the preview says where
it is used), each recipient row opens what that person received without counting an open, and a test
goes to the sender alone, counted nowhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.apache import ApacheServer
from support.postgres import DATABASES, PostgresServer

from coretrack.models import AccessEvent, ClickEvent, Contact, Email, Recipient, User
from coretrack.settings import SettingsService
from e2e.chromium import missing_binaries

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The received-as view's picture (docs/images/received-as.png is one, reduced to 128 colours).
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module", params=DATABASES)
def apache(request):
    """coretrack under Apache on each database (the e2e conftest's own runs on SQLite only)."""
    if missing := missing_binaries():
        pytest.fail(f"Chromium is not installed ({', '.join(missing)} missing)")
    if request.param == "sqlite":
        server = ApacheServer("site", "/crm")
        try:
            yield server.start()
        finally:
            server.stop()
        return
    with PostgresServer.new_database() as url:
        server = ApacheServer("site", "/crm", database_url=url)
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture
def people(apache, smtp):
    """Zoë has a first name, Nameless none; Sam may send from sam@example.test."""
    with apache.session() as session:
        session.execute(Recipient.__table__.delete())
        session.execute(Email.__table__.delete())
        session.execute(Contact.__table__.delete())
        zoe = Contact(first_name="Zoë", last_name="Ardent", email="zoe@example.test")
        nameless = Contact(first_name="", last_name="Nameless", email="nameless@example.test")
        session.add_all([zoe, nameless])
        sam = session.scalar(select(User).where(User.name == "sam"))
        sam.first_name, sam.last_name, sam.email = "Sam", "Smith", "sam@example.test"
        session.commit()
        SettingsService(session, apache.config).update({"own_from_domains": "example.test"}, user_name="admin")
        return zoe.id, nameless.id


def write(staff, zoe: int, nameless: int) -> None:
    staff.open(f"/emails/new?contact={zoe}&contact={nameless}")
    staff.fill("#f-subject", "Hello $contacts-firstname|there$")
    staff.fill_html("#f-html", '<p>Dear $contacts-firstname|there$,</p><p><a href="https://example.org/offer">'
                               "Our offer</a></p>")


def test_send_as_me_with_a_fallback_then_view_what_each_person_received(apache, browser, smtp, people):
    zoe, nameless = people
    staff = browser("staff", "sam")
    with staff.step("write as me, with a fallback"):
        write(staff, zoe, nameless)
        assert "Send as me: from Sam Smith <sam@example.test>" in staff.text
        staff.click("#f-from_me")
    with staff.step("preview as the contact without a first name: the fallback is said"):
        staff.press("Preview")
        assert not staff.find_all("#merge-fallbacks")  # Zoë first: her own name
        staff.fill("#f-preview_as", "nameless@example.test")
        staff.press("Preview")
        assert "$contacts-firstname|there$" in staff.find("#merge-fallbacks").text
        assert "Hello there" in staff.text
    with staff.step("send: from me, the page names it readably"):
        staff.press("Send")
        assert staff.find("h1").text == "Hello ‹first name›"
    arrived = {mail.rcpt_tos[0]: mail.message for mail in smtp.received}
    assert arrived["zoe@example.test"]["From"] == "Sam Smith <sam@example.test>"
    assert arrived["zoe@example.test"]["Reply-To"] == "sam@example.test"
    assert arrived["nameless@example.test"]["Subject"] == "Hello there"
    with staff.step("open what Nameless received"):
        staff.press("nameless@example.test")
        assert staff.find("h1").text == "As received by Nameless"
        assert staff.find("#received-subject").text == "Hello there"
        frame = staff.find("iframe#received-message")
        staff.driver.switch_to.frame(frame)
        assert "Dear there," in staff.driver.find_element("css selector", "body").text
        staff.driver.find_element("link text", "Our offer").click()  # the sandbox opens nothing
        staff.driver.switch_to.default_content()
        assert staff.find("h1").text == "As received by Nameless" and len(staff.driver.window_handles) == 1
        time.sleep(1)  # anything the frame loaded would be counted by now
        staff.screenshot(SHOTS / f"received-as-{apache.config.database_url.partition(':')[0]}.png")
    with apache.session() as session:
        assert session.scalar(select(func.count()).select_from(AccessEvent)) == 0
        assert session.scalar(select(func.sum(Recipient.access_count))) == 0
        assert session.scalar(select(func.count()).select_from(ClickEvent)) == 0


def test_a_test_to_me_goes_to_me_alone_and_is_counted_nowhere(apache, browser, smtp, people):
    zoe, nameless = people
    staff = browser("staff", "sam")
    with staff.step("send a test to me from compose"):
        write(staff, zoe, nameless)
        staff.press("Send a test to me")
        assert "Test sent to sam@example.test, as zoe@example.test gets it" in staff.find("#test-sent").text
    [mail] = smtp.received
    assert mail.rcpt_tos == ["sam@example.test"] and mail.message["Subject"] == "[Test] Hello Zoë"
    assert "Test message, sent only to you" in mail.message.get_body(("html",)).get_content()
    with apache.session() as session:
        assert session.scalar(select(func.count()).select_from(Email)) == 0
    with staff.step("the compose form is still there, nothing sent"):
        assert staff.find("#f-subject").get_attribute("value") == "Hello $contacts-firstname|there$"
