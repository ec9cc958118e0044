"""A segment built in a real browser, used for a mass send, then a second one for a follow-up to the
people who did not open that email: coretrack under a real Apache, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import Select
from sqlalchemy import insert
from support.apache import ApacheServer

from coretrack.models import Account, Contact
from e2e.chromium import missing_binaries
from e2e.demo import MAIL_CLIENT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots" / "segments"
IMAGE = re.compile(r'src="https?://[^/"]+(/[^"]*TrackAccess\.php\?t=[^"]+)"')


@pytest.fixture
def apache(empty_database_url):
    """This module's own server, on each database (the other browser tests share one on SQLite)."""
    if missing := missing_binaries():
        pytest.fail(f"Chromium is not installed ({', '.join(missing)} missing)")
    server = ApacheServer("site", "/crm", database_url=empty_database_url)
    try:
        yield server.start()
    finally:
        server.stop()


def wait_for(smtp, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(smtp.received) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(smtp.received) == count, [mail.rcpt_tos for mail in smtp.received]


def condition(staff, row: int, field: str, op: str, value: str = "") -> None:
    Select(staff.find(f"#f-field-{row}")).select_by_visible_text(field)
    Select(staff.find(f"#f-op-{row}")).select_by_visible_text(op)
    staff.fill(f"#f-value-{row}", value)


def test_a_segment_is_built_emailed_and_followed_up_to_those_who_did_not_open(apache, browser, smtp):
    database = apache.config.database_url.split(":")[0].split("+")[0]
    with apache.session() as session:
        spain = session.scalar(insert(Account).values(name="Iberia Tools", email="info@iberia.es",
                                                      website="https://iberia.es").returning(Account.id))
        france = session.scalar(insert(Account).values(name="Gallia", email="", website="https://gallia.fr")
                                .returning(Account.id))
        session.execute(insert(Contact), [
            {"first_name": "Ana", "last_name": "García", "email": "ana@iberia.es", "account_id": spain},
            {"first_name": "Bea", "last_name": "Ruiz", "email": "bea@iberia.es", "account_id": spain},
            {"first_name": "Carlos", "last_name": "Sanz", "email": "carlos@iberia.es", "account_id": spain},
            {"first_name": "Dan", "last_name": "Dupont", "email": "dan@gallia.fr", "account_id": france}])
        session.commit()
    worker = apache.start_service("worker")
    try:
        staff = browser("staff", "sam")
        with staff.step("build a segment: contacts of accounts whose website ends with .es"):
            staff.open("/segments")
            staff.press("New contact segment")
            staff.fill("#f-name", "Spain")
            condition(staff, 0, "Account website", "ends with", ".es")
            staff.press("Add a condition")
            condition(staff, 1, "Opted out of email", "no")
            offered = [option.text for option in staff.find_all("#f-op-1 option") if option.is_enabled()]
            assert offered == ["yes", "no"]  # only the field's own conditions
            staff.press("Save segment")
            assert "Saved the segment “Spain”." in staff.text
            assert "3 contacts today" in staff.text
            staff.screenshot(SHOTS / f"segment-{database}.png", focus="main")

        with staff.step("its list shows its contacts"):
            staff.press("Show the contacts")
            assert staff.find("h1").text == "Contacts in the segment “Spain”"
            names = [cell.text for cell in staff.find_all("#mass-email tbody td:nth-child(2)")]
            assert names == ["Ana García", "Bea Ruiz", "Carlos Sanz"]

        with staff.step("email the whole segment"):
            staff.press("Email all 3 that match")
            assert "To all 3 contacts of the segment “Spain”" in staff.find("#audience").text
            staff.fill("#f-subject", "Hola $contacts-firstname$")
            staff.fill_html("#f-html", "<p>Our spring offer, $contacts-firstname$.</p>")
            staff.press("Send")
            email_id = int(re.search(r"/emails/([0-9]+)", staff.driver.current_url)[1])
        wait_for(smtp, 3)
        sent = {mail.rcpt_tos[0]: mail.message for mail in smtp.received}
        assert sorted(sent) == ["ana@iberia.es", "bea@iberia.es", "carlos@iberia.es"]
        assert sent["ana@iberia.es"]["Subject"] == "Hola Ana"

        # Ana reads it in her mail program: a likely-human open.
        html = sent["ana@iberia.es"].get_body(preferencelist=("html",)).get_content()
        assert apache.request("GET", IMAGE.search(html)[1], headers={"User-Agent": MAIL_CLIENT}).status == 200
        time.sleep(0.5)  # the hit is written by the process's writer thread within milliseconds

        with staff.step("a second segment: who did not open that email"):
            staff.open("/segments/new?type=contact")
            staff.fill("#f-name", "Did not open the spring offer")
            condition(staff, 0, "Opened", "not email N (was sent it)", str(email_id))
            staff.press("Save segment")
            assert "2 contacts today" in staff.text
            assert f"Did not open email {email_id} (was sent it)" in staff.find("#conditions").text
            staff.screenshot(SHOTS / f"segment-non-openers-{database}.png", focus="main")

        with staff.step("the follow-up from compose: choose the segment as the recipients"):
            staff.open("/emails/new")
            Select(staff.find("#f-use-segment")).select_by_visible_text("Did not open the spring offer (contacts)")
            staff.press("Use segment")
            assert "To all 2 contacts of the segment “Did not open the spring offer”" in staff.find("#audience").text
            staff.fill("#f-subject", "Did you see our offer, $contacts-firstname$?")
            staff.fill_html("#f-html", "<p>A reminder.</p>")
            staff.press("Preview")
            assert "2 will get it" in staff.text
            staff.press("Send")
        wait_for(smtp, 5)
    finally:
        worker.stop()
    follow_up = {mail.rcpt_tos[0]: mail.message["Subject"] for mail in smtp.received[3:]}
    assert follow_up == {"bea@iberia.es": "Did you see our offer, Bea?",
                         "carlos@iberia.es": "Did you see our offer, Carlos?"}
