"""What staff, admins and recipients do, in a real browser against coretrack under a real Apache."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import update
from support.apache import STAFF_PASSWORD

from coretrack.models import Recipient, utcnow
from coretrack.settings import SettingsService
from e2e.chromium import Browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGE = re.compile(r'<img[^>]+TrackAccess\.php\?t=[^"]+"')
IMAGES_LOADED = ("return document.images.length > 0 && "
                 "Array.from(document.images).every(image => image.complete && image.naturalWidth === 1)")


def compose(staff: Browser, to: str, subject: str, html: str, attachment=None) -> None:
    """Fills the compose form (opened already, perhaps with the To field filled) and sends."""
    if to:
        to_field = staff.find("#f-to")
        current = to_field.get_attribute("value")
        to_field.clear()
        to_field.send_keys(", ".join(filter(None, [current, to])))
    staff.fill("#f-subject", subject)
    staff.fill_html("#f-html", html)
    if attachment:
        staff.find("#f-attachments").send_keys(str(attachment))
    staff.press("Send")


def html_part(received) -> str:
    return received.message.get_body(preferencelist=("html",)).get_content()


def read_as_mail_client(reader: Browser, html: str, folder) -> None:
    """Opens the HTML part the way a mail client shows it: a local document that loads its images."""
    path = folder / "message.html"
    path.write_text(html, encoding="utf-8")
    reader.open(path.as_uri())
    WebDriverWait(reader.driver, 15).until(lambda driver: driver.execute_script(IMAGES_LOADED))


def read_later(apache) -> None:
    """The recipients read their mail an hour after it went: a load within seconds of the send is a
    scanner's, not a reader's."""
    with apache.session() as session:
        session.execute(update(Recipient).values(sent_at=utcnow() - timedelta(hours=1)))
        session.commit()


def test_staff_mails_a_contact_and_sees_the_open_counted_everywhere(browser, smtp, apache, tmp_path):
    staff = browser("staff", "sam")
    with staff.step("create an account"):
        staff.open("/accounts")
        staff.press("New account")
        staff.fill("#f-name", "Acme Tools")
        staff.press("Create account")
        assert "Created account Acme Tools." in staff.text
        account_page = staff.driver.current_url

    with staff.step("create a contact of the account"):
        staff.press("New contact")  # the account's page fills in the account
        staff.fill("#f-first_name", "Ada")
        staff.fill("#f-last_name", "Lovelace")
        staff.fill("#f-email", "ada@acme.example")
        assert staff.find("#f-account").get_attribute("value").startswith("Acme Tools #")
        staff.press("Create contact")
        assert "Created contact Ada Lovelace." in staff.text
        contact_page = staff.driver.current_url

    with staff.step("the account picker suggests accounts as one types"):
        staff.open("/contacts/new")
        staff.fill("#f-account", "acm")
        WebDriverWait(staff.driver, 10).until(lambda _: staff.find_all("#f-account-choices option"))
        assert staff.find("#f-account-choices option").get_attribute("value").startswith("Acme Tools #")
        staff.open(contact_page)

    attachment = tmp_path / "price list.pdf"
    attachment.write_bytes(b"%PDF-1.4\n% a small price list\n")
    with staff.step("compose and send to the contact and a typed address"):
        staff.press("Send email")
        assert re.fullmatch(r"contact:\d+", staff.find("#f-to").get_attribute("value"))
        compose(staff, "reader@example.test", "Our spring prices",
                "<html><body><h1>Spring prices</h1><p>See the list attached.</p></body></html>", attachment)
        assert "Sent to 2 of 2 recipients." in staff.text, "the send did not finish within the request"
        assert "price list.pdf" in staff.text
        email_page = staff.driver.current_url
        assert staff.row("table[aria-labelledby=recipients]", "ada@acme.example")["Accesses"] == "0"

    received = {mail.rcpt_tos[0]: mail for mail in smtp.received}
    assert set(received) == {"ada@acme.example", "reader@example.test"}
    message = received["ada@acme.example"].message
    assert [part.get_filename() for part in message.iter_attachments()] == ["price list.pdf"]
    assert len(IMAGE.findall(html_part(received["ada@acme.example"]))) == 1

    reader = browser("reader")  # a fresh profile with no credentials: the recipient's mail client
    read_later(apache)
    with reader.step("the recipient opens the message and its image loads"):
        read_as_mail_client(reader, html_part(received["ada@acme.example"]), tmp_path)

    with staff.step("the email page counts the access"):
        def ada_row() -> dict[str, str]:
            staff.open(email_page)
            return staff.row("table[aria-labelledby=recipients]", "ada@acme.example")

        # Counted a moment after the image is answered (its writer commits every few milliseconds): a reload shows it.
        WebDriverWait(staff.driver, 15, poll_frequency=0.2).until(lambda _: ada_row()["Accesses"] != "0")
        ada = ada_row()
        assert ada["Accesses"] == "1"
        assert ada["Last access"] != "—"
        assert staff.row("table[aria-labelledby=recipients]", "reader@example.test")["Accesses"] == "0"
        assert "1 opened" in staff.text

    for page in (contact_page, account_page):
        with staff.step(f"the related list of {page.rsplit('/', 2)[-2]} counts it"):
            staff.open(page)
            related = staff.row("table[aria-labelledby=emails]", "Our spring prices")
            assert related["Accesses"] == "1"
            assert related["Last access"] != "—"


def test_an_admin_turns_tracking_off_and_the_next_email_has_no_image(apache, browser, smtp):
    staff = browser("staff", "sam")
    with staff.step("a staff user cannot open the configuration editor"):
        staff.open("/settings")
        assert staff.title.startswith("403")
        assert "Settings" not in [link.text for link in staff.find_all("header nav a")]
        assert apache.request("GET", "/crm/settings", user=("sam", STAFF_PASSWORD)).status == 403

    admin = browser("admin", "admin")
    try:
        with admin.step("turn on Disable Email Statistics Tracking"):
            admin.open("/emails")
            admin.press("Settings")
            switch = admin.find("#f-tracking_disabled")
            assert admin.find("label[for=f-tracking_disabled]").text == "Disable Email Statistics Tracking"
            assert not switch.is_selected()
            switch.click()
            admin.press("Save settings")
            assert "Saved: 1 setting changed." in admin.text
            assert admin.find("#f-tracking_disabled").is_selected()
            change = admin.row("table[aria-labelledby=history]", "Disable Email Statistics Tracking")
            assert change["Who"] == "admin" and change["Change (old → new)"] == "off → on"

        with staff.step("send the next email"):
            staff.open("/emails/new")
            compose(staff, "untracked@example.test", "No pixel here", "<p>Hello</p>")
            assert "Sent to 1 of 1 recipients." in staff.text
            assert "off (no tracking image in this email)" in staff.text
        (mail,) = smtp.received
        assert "TrackAccess.php" not in mail.data.decode()
    finally:
        with apache.session() as session:
            SettingsService(session, apache.config).update({"tracking_disabled": "false"}, user_name="test-teardown")


def test_reports_count_the_open_and_the_csv_export_parses(apache, browser, smtp, tmp_path):
    staff = browser("staff", "sam")
    with staff.step("send an email"):
        staff.open("/emails/new")
        compose(staff, "report-reader@example.test", "Report me", "<p>Counted in the reports</p>")
        assert "Sent to 1 of 1 recipients." in staff.text
    with browser("reader").step("the recipient opens it") as reader:
        read_later(apache)
        read_as_mail_client(reader, html_part(smtp.received[-1]), tmp_path)

    with staff.step("the reports show the email"):
        staff.open("/reports")
        assert "Report me" in staff.text
    with staff.step("download the CSV export"):
        export = next(link for link in staff.find_all("main a") if "CSV" in link.text.upper())
        export.click()  # a download: the page stays
        rows = list(csv.DictReader(io.StringIO(staff.wait_for_download(".csv").read_text(encoding="utf-8-sig"))))
        (row,) = [row for row in rows if "Report me" in row.values()]
        accesses = [value for header, value in row.items()
                    if "access" in header.lower() and "first" not in header.lower() and "last" not in header.lower()]
        assert accesses and all(value.isdigit() for value in accesses) and int(accesses[0]) >= 1, row
