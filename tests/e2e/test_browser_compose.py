"""Compose on one screen, in a real browser at 1280×800: the preview beside the form, recipients
counted (each skipped person listed once), Send in sight without scrolling past the message; and the
editor's toolbar: merge fields, a link dialog with text and address, headings, colour, a source view
that resizes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import Select, WebDriverWait

from coretrack.records.store import create_record
from e2e.chromium import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREEN = (1280, 800)
# Compose with a preview at 1280×800 and on a phone (docs/images/compose-preview-*.png are these, reduced
# to 128 colours).
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IN_SIGHT = """
const box = arguments[0].getBoundingClientRect();
return box.top >= 0 && box.bottom <= window.innerHeight
       && document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2) === arguments[0];
"""


def _contact(apache, first: str, email: str, opted_out: str = "") -> int:
    with apache.session() as session:
        return create_record(session, "contact", {
            "first_name": first, "last_name": "Compose", "email": email, "phone": "", "account": "",
            "email_opt_out": opted_out}).id


def test_compose_with_a_preview_fits_one_screen_and_counts_its_recipients(apache, browser):
    ada = _contact(apache, "Ada", "ada.compose@example.test")
    opted = _contact(apache, "Otto", "otto.compose@example.test", "on")
    staff = browser("staff-1280", "sam", size=SCREEN)
    with staff.step("preview a message to two contacts, one opted out"):
        staff.open(f"/emails/new?contact={ada}&contact={opted}")
        staff.fill("#f-subject", "One screen")
        staff.fill_html("#f-html", "<h1>Summer</h1>" + "<p>A line of the message.</p>" * 40)
        staff.press("Preview")

    with staff.step("the preview sits beside the form, not above a second copy of it"):
        preview = staff.find("#preview").rect
        form = staff.find("#compose .compose-fields").rect
        assert preview["x"] >= form["x"] + form["width"] - 1
        assert preview["y"] < 400
        assert len(staff.find_all("form#compose")) == 1

    with staff.step("recipients are counted; the opted-out contact is listed once, as skipped"):
        counts = staff.find("#recipient-counts").text
        assert "1 will get it; 1 skipped (1 opted out of email)" in counts
        assert not staff.find("#all-recipients table").is_displayed()
        staff.find("#recipients-link").click()
        assert staff.find("#preview").text.count("otto.compose@example.test") == 1
        assert "ada.compose@example.test" in staff.find("#all-recipients table[aria-label=Recipients]").text

    with staff.step("Send is in sight at the top of the page and below the message"):
        staff.find("#all-recipients summary").click()  # folded again
        staff.driver.execute_script("window.scrollTo(0, 0)")
        send = staff.find("#compose button[value=send]")
        assert staff.driver.execute_script(IN_SIGHT, send)
        SHOTS.mkdir(parents=True, exist_ok=True)
        staff.driver.save_screenshot(str(SHOTS / "compose-preview-1280x800.png"))  # the window, as seen
        staff.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", staff.find(".editor-area"))
        assert staff.driver.execute_script(IN_SIGHT, send)

    phone = browser("staff-phone", "sam", size=PHONE)
    with phone.step("on a phone the preview comes first, the form below it, Send still in sight"):
        phone.open(f"/emails/new?contact={ada}&contact={opted}")
        phone.fill("#f-subject", "One screen")
        phone.fill_html("#f-html", "<h1>Summer</h1>" + "<p>A line of the message.</p>" * 40)
        phone.press("Preview")
        assert phone.find("#preview").rect["y"] < phone.find("#compose .compose-fields").rect["y"]
        phone.driver.execute_script("window.scrollTo(0, 0)")
        assert phone.driver.execute_script(IN_SIGHT, phone.find("#compose button[value=send]"))
        phone.driver.save_screenshot(str(SHOTS / "compose-preview-phone.png"))


def test_the_editor_toolbar_holds_merge_fields_links_headings_colour_and_a_resizable_source(apache, browser, smtp):
    ada = _contact(apache, "Ada", "ada.toolbar@example.test")
    staff = browser("staff", "sam", size=SCREEN)
    staff.open(f"/emails/new?contact={ada}")
    toolbar = staff.find(".editor-toolbar")
    area = staff.find(".editor-area")
    with staff.step("the merge-field picker is in the toolbar"):
        assert toolbar.find_element("css selector", "#f-merge_field").is_displayed()
        area.click()
        area.send_keys("Title")
        staff.driver.execute_script("arguments[0].value = '$contacts-firstname$'", staff.find("#f-merge_field"))
        toolbar.find_element("css selector", "[data-merge-insert]").click()
        assert "Title$contacts-firstname$" in area.text

    with staff.step("the line becomes a heading"):
        blocks = Select(toolbar.find_element("css selector", "select[aria-label='Paragraph or heading']"))
        blocks.select_by_visible_text("Heading 2")
        assert "<h2>Title$contacts-firstname$" in staff.find("#f-html").get_attribute("value")

    with staff.step("a link from the dialog: its own text and address, no browser prompt"):
        staff.driver.execute_script("""
            const area = arguments[0], p = document.createElement('p');
            p.textContent = 'Read ';
            area.appendChild(p);""", area)
        area.send_keys("\ue010")  # End of the last line
        toolbar.find_element("xpath", ".//button[.='Link']").click()
        dialog = staff.find("#editor-link-dialog")
        assert dialog.is_displayed()
        staff.find("#editor-link-text").send_keys("our offer")
        staff.find("#editor-link-url").send_keys("javascript:alert(1)")
        dialog.find_element("xpath", ".//button[.='Insert link']").click()
        assert dialog.is_displayed() and "https://" in staff.find("#editor-link-error").text
        staff.fill("#editor-link-url", "https://example.test/offer")
        dialog.find_element("xpath", ".//button[.='Insert link']").click()
        assert not dialog.is_displayed()
        assert '<a href="https://example.test/offer">our offer</a>' in staff.find("#f-html").get_attribute("value")

    with staff.step("a colour for the chosen text"):
        staff.driver.execute_script("""
            const input = arguments[0];
            input.value = '#1a7f37';
            input.dispatchEvent(new Event('change', {bubbles: true}));""",
            toolbar.find_element("css selector", "input[type=color]"))
        assert "color:#1a7f37" in staff.find("#f-html").get_attribute("value").replace(" ", "")

    with staff.step("the source view is a large box that resizes"):
        staff.press("HTML source", navigates=False)
        source = staff.find("#f-html")
        assert source.value_of_css_property("resize") == "vertical"
        assert source.size["height"] >= 350
        staff.press("HTML source", navigates=False)

    with staff.step("sent: the heading, the link and the colour arrive"):
        staff.fill("#f-subject", "Toolbar")
        staff.press("Send")
        html = smtp.received[-1].message.get_body(preferencelist=("html",)).get_content()
        assert "<h2>TitleAda" in html
        assert ">our offer</a>" in html and "color" in html


def test_a_picture_uploaded_in_the_editor_is_sent_inline_with_the_message(apache, browser, smtp, tmp_path):
    ada = _contact(apache, "Ada", "ada.picture@example.test")
    picture = tmp_path / "logo.png"
    picture.write_bytes(base64.b64decode(PNG))
    staff = browser("staff", "sam", size=SCREEN)
    staff.open(f"/emails/new?contact={ada}")
    with staff.step("upload a picture from the toolbar: it shows in the editor"):
        staff.find(".editor-area").click()
        chooser = staff.find(".editor-toolbar input[type=file]")
        staff.driver.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(str(picture))
        WebDriverWait(staff.driver, 10).until(lambda _: staff.find_all(".editor-area img[alt=logo]"))
        assert staff.find(".editor-area img").get_attribute("src").startswith("data:image/png;base64,")

    with staff.step("a file that is not a picture is refused with a reason"):
        other = tmp_path / "notes.txt"
        other.write_text("not a picture")
        chooser.send_keys(str(other))
        assert "notes.txt: choose a PNG, JPEG, GIF or WebP picture." in staff.find(".editor-problem").text

    with staff.step("sent: the picture travels as an inline part the HTML points at"):
        staff.fill("#f-subject", "Picture")
        staff.press("Send")
        message = smtp.received[-1].message
        html = message.get_body(preferencelist=("html",)).get_content()
        assert "data:" not in html
        inline = [part for part in message.walk() if part.get_content_type() == "image/png"]
        assert len(inline) == 1 and inline[0].get_content() == base64.b64decode(PNG)
        content_id = inline[0]["Content-ID"].strip("<>")
        assert f'src="cid:{content_id}"' in html
