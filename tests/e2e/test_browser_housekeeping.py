"""Scheduling, deleting and erasing, in a real browser against coretrack under a real Apache."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from support.apache import STAFF_PASSWORD

from coretrack.records.store import create_record
from e2e.demo import _send

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _next_minute(at_least: timedelta) -> datetime:
    """The first whole minute (UTC) at least ``at_least`` from now: the form's Send at has minutes only."""
    soon = datetime.now(UTC) + at_least
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_a_scheduled_email_waits_for_its_time_and_the_worker_sends_it_then(apache, browser, smtp):
    worker = apache.start_service("worker")
    try:
        staff = browser("staff", "sam")
        due = _next_minute(timedelta(seconds=20))
        with staff.step("compose an email to go at the next minute (sam's times are UTC)"):
            staff.open("/emails/new")
            staff.fill("#f-to", "later@example.test")
            staff.fill("#f-subject", "Scheduled hello")
            staff.fill_html("#f-html", "<p>Sent at its time.</p>")
            # A datetime-local input takes its value in one form whatever the browser's locale.
            staff.driver.execute_script("arguments[0].value = arguments[1]", staff.find("#f-send_at"),
                                        due.strftime("%Y-%m-%dT%H:%M"))
            staff.press("Send")
            assert "Scheduled: the worker sends it at " + due.strftime("%Y-%m-%d %H:%M") in staff.text
            email_page = staff.driver.current_url

        with staff.step("nothing goes before its time"):
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 3))
            assert smtp.received == []
            staff.open(email_page)
            assert staff.row("table[aria-labelledby=recipients]", "later@example.test")["Delivery"] == "pending"

        with staff.step("the worker sends it once it is due (it looks every few seconds)"):
            deadline = due + timedelta(seconds=30)
            while not smtp.received and datetime.now(UTC) < deadline:
                time.sleep(0.2)
            arrived = datetime.now(UTC)
            assert [mail.rcpt_tos for mail in smtp.received] == [["later@example.test"]]
            assert due <= arrived < deadline
            WebDriverWait(staff.driver, 15, poll_frequency=0.5).until(
                lambda _: staff.open(email_page).row("table[aria-labelledby=recipients]",
                                                     "later@example.test")["Delivery"] == "sent")
    finally:
        worker.stop()


def test_an_admin_deletes_a_contact_and_its_email_keeps_its_recipient_and_counts(apache, browser, smtp):
    with apache.session() as session:
        contact = create_record(session, "contact", {
            "first_name": "Dora", "last_name": "Deleted", "email": "dora@example.test", "phone": "",
            "account": "", "email_opt_out": ""})
        contact_id = contact.id
    email_id = _send(apache, "sam", STAFF_PASSWORD, subject="Before deletion", to=[f"contact:{contact_id}"],
                     html="<p>Hello Dora</p>")["id"]
    admin = browser("admin", "admin")
    with admin.step("the confirmation page says what happens to the email sent to her"):
        admin.open(f"/contacts/{contact_id}")
        admin.press("Delete…")
        impact = admin.find("#impact").text
        assert "1 email (1 recipient) sent to it stay" in impact

    with admin.step("nothing is deleted without the box ticked (the browser asks for it first)"):
        admin.press("Delete contact", navigates=False)
        assert admin.find("#f-confirm").get_attribute("validationMessage")
        admin.open(f"/contacts/{contact_id}")
        assert "Dora Deleted" in admin.text

    with admin.step("ticked, the contact goes"):
        admin.press("Delete…")
        admin.find("#f-confirm").click()
        admin.press("Delete contact")
        assert "Deleted" in admin.text and "Dora Deleted" in admin.text
        admin.open(f"/contacts/{contact_id}")
        assert admin.title.startswith("404")

    with admin.step("the email still lists her address, sent, with no record linked"):
        admin.open(f"/emails/{email_id}")
        row = admin.row("table[aria-labelledby=recipients]", "dora@example.test")
        assert row["Delivery"] == "sent"
        assert "Dora" not in row["Record"]


def test_an_admin_erases_a_person_everywhere_and_the_erasure_is_audited(apache, browser, smtp):
    with apache.session() as session:
        contact_id = create_record(session, "contact", {
            "first_name": "Erin", "last_name": "Erased", "email": "erin@example.test", "phone": "",
            "account": "", "email_opt_out": ""}).id
        lead_id = create_record(session, "lead", {
            "first_name": "Erin", "last_name": "Erased", "company": "Erin Ltd", "email": "Erin@Example.test",
            "phone": "", "email_opt_out": ""}).id
    email_id = _send(apache, "sam", STAFF_PASSWORD, subject="Before erasure",
                     to=[f"contact:{contact_id}", "someone-else@example.test"], html="<p>Hello</p>")["id"]
    admin = browser("admin", "admin")
    with admin.step("the preview counts what goes"):
        admin.open("/erase")
        admin.fill("#f-address", "erin@example.test")
        admin.press("Show what would be erased")
        assert "2 record(s), 1 recipient address(es)" in admin.text

    with admin.step("confirmed, it is erased"):
        admin.find("#f-confirm").click()
        admin.press("Erase")
        assert "Erased: 2 record(s), 1 recipient address(es)" in admin.text
        erasures = admin.row("table[aria-labelledby=erasures]", "admin")
        assert "erin" not in " ".join(erasures.values()).lower()  # the audit keeps no address

    with admin.step("neither record is left, and the email shows the erased placeholder"):
        for path in (f"/contacts/{contact_id}", f"/leads/{lead_id}"):
            admin.open(path)
            assert admin.title.startswith("404"), path
        admin.open(f"/emails/{email_id}")
        assert "erin@example.test" not in admin.text.lower()
        assert "erased@erased.invalid" in admin.text
        assert "someone-else@example.test" in admin.text
