"""A template with merge fields sent to a filtered list, in a real browser against coretrack under a
real Apache with its worker: every contact's message carries that contact's own fields."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.support.ui import Select
from sqlalchemy import insert

from coretrack.models import Account, Contact

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LISTED = 50


def test_a_template_goes_to_all_50_contacts_a_search_finds_each_with_their_own_fields(apache, browser, smtp):
    with apache.session() as session:
        account_id = session.scalar(insert(Account).values(name="Mass Account", email="").returning(Account.id))
        session.execute(insert(Contact), [
            {"first_name": f"First{number:02d}", "last_name": f"Listed-{number:02d}", "account_id": account_id,
             "email": f"listed{number:02d}@example.test"} for number in range(LISTED)])
        # Not found by the search: they get nothing.
        session.execute(insert(Contact), [{"first_name": "Other", "last_name": f"Person{number}",
                                           "email": f"other{number}@example.test"} for number in range(5)])
        session.commit()
    worker = apache.start_service("worker")
    try:
        staff = browser("staff", "sam")
        with staff.step("write a template with merge fields"):
            staff.open("/templates")
            staff.press("New template")
            staff.fill("#f-name", "Spring offer")
            staff.fill("#f-subject", "Spring offer for $contacts-firstname$")
            staff.fill_html("#f-html", "<p>Dear $contacts-firstname$ $contacts-lastname$ "
                                       "($contacts-email$, $accounts-accountname$),</p><p>two for one.</p>")
            staff.press("Save template")
            assert "Saved the template “Spring offer”." in staff.text

        with staff.step("search the contacts and email all that match"):
            staff.open("/contacts")
            staff.fill("#q", "listed-")
            staff.press("Search")
            staff.press(f"Email all {LISTED} that match")
            assert f"To all {LISTED} contacts matching “listed-”" in staff.find("#audience").text

        with staff.step("start from the template: the list stays"):
            Select(staff.find("#f-use-template")).select_by_visible_text("Spring offer")
            staff.press("Use template")
            assert f"To all {LISTED} contacts matching “listed-”" in staff.find("#audience").text
            assert staff.find("#f-subject").get_attribute("value") == "Spring offer for $contacts-firstname$"

        with staff.step("the preview shows the first contact's own message"):
            staff.press("Preview")
            assert f"{LISTED} will get it" in staff.text
            assert "Spring offer for First00" in staff.text

        with staff.step("send: queued for the worker"):
            staff.press("Send")
            assert f"Queued: the background worker will send it to {LISTED} recipients." in staff.text

        deadline = time.monotonic() + 60
        while len(smtp.received) < LISTED and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
    received = {mail.rcpt_tos[0]: mail.message for mail in smtp.received}
    assert sorted(received) == [f"listed{number:02d}@example.test" for number in range(LISTED)]
    for number in range(LISTED):
        message = received[f"listed{number:02d}@example.test"]
        assert message["Subject"] == f"Spring offer for First{number:02d}"
        html = message.get_body(preferencelist=("html",)).get_content()
        assert (f"Dear First{number:02d} Listed-{number:02d} (listed{number:02d}@example.test, Mass Account),"
                in html)
