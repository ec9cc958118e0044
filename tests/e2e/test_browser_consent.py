"""Consent to measuring reading, in a real browser against coretrack under a real Apache: an admin
switches to "only people who consented", staff ask a list for consent, a recipient accepts on the
public page, the next email measures that recipient only, and the proof shows on their record and in
its downloads."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from coretrack.records.store import create_record
from coretrack.settings import SettingsService
from e2e.chromium import Browser
from e2e.test_browser_flows import compose, html_part, read_as_mail_client, read_later

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PEOPLE = [("Ada", "Lovelace", "ada@consent.example"), ("Charles", "Babbage", "charles@consent.example"),
          ("Grace", "Hopper", "grace@consent.example")]
CONSENT_LINK = re.compile(r'href="(https?://[^"]+/email/consent\?t=[^"]+)"')
WITHDRAWAL_LINK = re.compile(r'href="https?://[^"]+/email/stop-measuring\?t=[^"]+"')
IMAGE = re.compile(r'<img[^>]+TrackAccess\.php\?t=[^"]+"')


def messages(smtp, subject: str) -> dict[str, str]:
    """The HTML part of each message with ``subject`` the SMTP server received, by recipient."""
    return {mail.rcpt_tos[0]: html_part(mail) for mail in smtp.received if mail.message["Subject"] == subject}


def answer_on_the_consent_page(person: Browser, link: str, button: str) -> None:
    person.open(link)
    assert person.find("h1").text == "May we measure when you read our email?"
    assert "How to withdraw" in person.text
    person.press(button)


def test_a_recipient_accepts_in_the_browser_and_only_they_are_measured_with_the_proof_on_their_record(
        apache, browser, smtp, tmp_path):
    with apache.session() as session:
        ids = {first: create_record(session, "contact", {
            "first_name": first, "last_name": last, "email": email, "phone": "", "account": "",
            "email_opt_out": ""}).id for first, last, email in PEOPLE}
    admin = browser("admin", "admin")
    try:
        with admin.step("switch the policy to only people who consented"):
            admin.open("/settings")
            assert "Only people who consented" in admin.find("#tracking-policies").text
            admin.find("#f-tracking_policy").send_keys("Only people who consented")
            admin.press("Save settings")
            assert "Saved: 1 setting changed." in admin.text
            assert admin.find("#f-tracking_policy option:checked").text == "Only people who consented"
            change = admin.row("table[aria-labelledby=history]", "Whose reading is measured")
            assert change["Who"] == "admin"
            assert change["Change (old → new)"] == ("Everyone (unless they refused or withdrew) → "
                                                    "Only people who consented")

        staff = browser("staff", "sam")
        with staff.step("ask the three contacts for consent"):
            staff.open("/emails/new")
            staff.click("#f-ask_consent")
            compose(staff, ", ".join(f"contact:{ids[first]}" for first, _, _ in PEOPLE), "May we measure?",
                    "<p>We would like to know whether our news reaches you.</p>")
            assert "Sent to 3 of 3 recipients." in staff.text
            assert "a tracking consent request" in staff.text
        requests = messages(smtp, "May we measure?")
        assert sorted(requests) == sorted(email for _, _, email in PEOPLE)
        for html in requests.values():  # a consent request measures nobody
            assert "TrackAccess.php" not in html and not WITHDRAWAL_LINK.search(html)

        ada = browser("ada")  # a fresh profile with no credentials: the recipient's own browser
        with ada.step("Ada opens her consent link from the message and accepts"):
            answer_on_the_consent_page(ada, CONSENT_LINK.search(requests["ada@consent.example"])[1], "Accept")
            assert ada.find("h1").text == "Thank you"
            agent = ada.driver.execute_script("return navigator.userAgent")
        with browser("grace").step("Grace refuses") as grace:
            answer_on_the_consent_page(grace, CONSENT_LINK.search(requests["grace@consent.example"])[1], "Refuse")
            assert grace.find("h1").text == "Your answer is recorded"

        with staff.step("send the next email to all three"):
            staff.open("/emails/new")
            compose(staff, ", ".join(f"contact:{ids[first]}" for first, _, _ in PEOPLE), "Autumn news",
                    "<p>Our autumn news.</p>")
            assert "Sent to 3 of 3 recipients." in staff.text
            email_page = staff.driver.current_url
            for address in ("charles@consent.example", "grace@consent.example"):
                assert "(not measured)" in staff.row("table[aria-labelledby=recipients]", address)["Accesses"]
            ada_row = staff.row("table[aria-labelledby=recipients]", "ada@consent.example")
            assert "(not measured)" not in ada_row["Accesses"]
        news = messages(smtp, "Autumn news")
        assert len(IMAGE.findall(news["ada@consent.example"])) == 1
        assert len(WITHDRAWAL_LINK.findall(news["ada@consent.example"])) == 1
        for address in ("charles@consent.example", "grace@consent.example"):
            # Fewer unmeasured recipients than the anonymous minimum: no image at all, and no personal link.
            assert "TrackAccess.php" not in news[address] and not WITHDRAWAL_LINK.search(news[address])

        with ada.step("Ada reads the news: her reading is measured"):
            read_later(apache)
            read_as_mail_client(ada, news["ada@consent.example"], tmp_path)
        with staff.step("the email page counts Ada's access"):
            def accesses() -> str:
                staff.open(email_page)
                return staff.row("table[aria-labelledby=recipients]", "ada@consent.example")["Accesses"]

            # Counted a moment after the image is answered: a reload shows it.
            WebDriverWait(staff.driver, 15, poll_frequency=0.2).until(lambda _: accesses() != "0")
            assert accesses() == "1"

        with staff.step("Ada's page shows her consent with its proof"):
            staff.open(f"/contacts/{ids['Ada']}")
            assert staff.find("#consent-state").text.startswith("granted")
            proof = staff.row("#consent-history", "granted")
            assert proof["State"] == "granted"
            assert proof["Means"] == "the person, with their link"
            assert proof["Text version"] == "1"
            assert proof["IP address"] == "127.0.0.0"  # truncated, as the IP policy says by default
            assert proof["User agent"] == agent
            assert proof["Email"] == "May we measure?"
            assert len(staff.find_all("#consent-history tbody tr")) == 1

        with staff.step("download the consent history as CSV"):
            next(link for link in staff.find_all("#consent a") if link.text.startswith("Download")).click()
            rows = list(csv.DictReader(io.StringIO(staff.wait_for_download(".csv").read_text(encoding="utf-8-sig"))))
            assert len(rows) == 1
            (row,) = rows
            assert (row["Address"], row["State now"], row["State"], row["Means"]) == (
                "ada@consent.example", "granted", "granted", "page")
            assert (row["Consent text version"], row["IP address"], row["User agent"], row["Email subject"]) == (
                "1", "127.0.0.0", agent, "May we measure?")
        with staff.step("download the consent history as JSON"):
            next(link for link in staff.find_all("#consent a") if link.text == "(JSON)").click()
            found = json.loads(staff.wait_for_download(".json").read_text(encoding="utf-8"))
            assert (found["address"], found["state"]) == ("ada@consent.example", "granted")
            (event,) = found["history"]
            assert {key: event[key] for key in ("state", "means", "text_version", "ip", "user_agent")} == {
                "state": "granted", "means": "page", "text_version": 1, "ip": "127.0.0.0", "user_agent": agent}
            assert event["email"]["subject"] == "May we measure?"
            assert [text["version"] for text in found["consent_texts"]] == [1]

        with staff.step("Charles, who did not answer, has no consent; Grace's refusal shows"):
            staff.open(f"/contacts/{ids['Charles']}")
            assert staff.find("#consent-state").text.startswith("unknown")
            staff.open(f"/contacts/{ids['Grace']}")
            assert staff.find("#consent-state").text.startswith("refused")
    finally:
        with apache.session() as session:
            SettingsService(session, apache.config).update({"tracking_policy": "everyone"}, user_name="test-teardown")
