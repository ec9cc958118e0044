"""The rich-text editor in a real browser: formatting from its toolbar, pasted HTML cleaned of
everything that runs, merge fields inserted at the cursor, and the HTML source view; the message
that goes out carries clean HTML."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from coretrack.records.store import create_record

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASTED = ('<p>Pasted <b>bold</b> text</p><script>window.pwned = 1</script>'
          '<img src="https://example.test/x.png" onerror="window.pwned = 2">'
          '<a href="javascript:window.pwned = 3">a trap</a> '
          '<a href="https://example.test/" onclick="window.pwned=4">a link</a>')
# A paste as the browser delivers one from the clipboard: a paste event carrying text/html.
PASTE = """
const area = arguments[0], data = new DataTransfer();
data.setData('text/html', arguments[1]);
data.setData('text/plain', 'Pasted bold text');
area.focus();
area.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
"""
DANGEROUS = ("<script", "pwned", "onerror", "onclick", "javascript:")


def test_the_editor_formats_cleans_pastes_inserts_fields_and_sends_clean_html(apache, browser, smtp):
    with apache.session() as session:
        contact_id = create_record(session, "contact", {
            "first_name": "Ada", "last_name": "Lovelace", "email": "ada.editor@example.test", "phone": "",
            "account": "", "email_opt_out": ""}).id
    staff = browser("staff", "sam")
    with staff.step("the HTML body is an editor with a toolbar; its textarea is hidden"):
        staff.open(f"/emails/new?contact={contact_id}")
        area = staff.find(".editor-area")
        assert area.get_attribute("contenteditable") == "true"
        assert not staff.find("#f-html").is_displayed()
        assert area.get_attribute("aria-labelledby") == "f-html-label"

    with staff.step("type, then make a word bold from the toolbar"):
        area.click()
        area.send_keys("Dear ")
        staff.find(".editor-toolbar").find_element("xpath", ".//button[.='Bold']").click()
        area.send_keys("friend")
        assert staff.find(".editor-toolbar button[data-format=B]").get_attribute("aria-pressed") == "true"
        staff.find(".editor-toolbar").find_element("xpath", ".//button[.='Bold']").click()
        area.send_keys(", ")

    with staff.step("a merge field goes in at the cursor"):
        staff.driver.execute_script("arguments[0].value = '$contacts-firstname$'", staff.find("#f-merge_field"))
        staff.find("[data-merge-insert]").click()
        assert "$contacts-firstname$" in area.text

    with staff.step("pasted HTML keeps its formatting and loses what runs"):
        area.send_keys(Keys.END)
        staff.driver.execute_script(PASTE, area, PASTED)
        # The editor cleans a paste before it puts it in: wait for it (a busy machine takes longer).
        WebDriverWait(staff.driver, 10).until(lambda _: "Pasted bold text" in area.text)
        assert "a link" in area.text
        inner = area.get_attribute("innerHTML")
        assert "<b>bold</b>" in inner
        for dangerous in DANGEROUS:
            assert dangerous not in inner, dangerous
        assert staff.driver.execute_script("return window.pwned") is None

    with staff.step("the source view shows the HTML; what is typed there is cleaned on the way back"):
        staff.press("HTML source", navigates=False)
        source = staff.find("#f-html")
        assert source.is_displayed() and not area.is_displayed()
        assert "<b>friend</b>" in source.get_attribute("value")
        source.send_keys(Keys.END, '<p onclick="window.pwned=5">From the source view</p>')
        staff.press("HTML source", navigates=False)
        assert area.is_displayed() and "From the source view" in area.text
        assert "onclick" not in area.get_attribute("innerHTML")

    with staff.step("send"):
        staff.fill("#f-subject", "Editor test")
        staff.press("Send")
        assert "Sent to 1 of 1 recipients." in staff.text

    html = smtp.received[-1].message.get_body(preferencelist=("html",)).get_content().replace("&nbsp;", " ")
    assert "Dear <b>friend</b>, Ada" in html
    assert "<b>bold</b>" in html and "a link" in html
    assert "From the source view" in html
    for dangerous in DANGEROUS:
        assert dangerous not in html, dangerous
