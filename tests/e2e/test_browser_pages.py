"""Every main page, with the demo dataset, as people see it: on a phone, with a keyboard, sorted."""

from __future__ import annotations

import pytest

from e2e import demo
from e2e.chromium import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Form controls a person can reach that have no label a screen reader would read out.
UNLABELLED = """
return Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(control => control.type !== 'hidden' && control.type !== 'submit')
  .filter(control => !control.labels.length && !control.getAttribute('aria-label')
                     && !control.getAttribute('aria-labelledby'))
  .map(control => control.name || control.id);
"""
OVERFLOW = "return document.documentElement.scrollWidth - window.innerWidth"
# Tables cut off: wider than the box they are in, unless that box scrolls sideways with the first
# column staying in sight.
CUT_OFF_TABLES = """
return Array.from(document.querySelectorAll('main table')).filter(table => table.offsetParent).map(table => {
  const box = table.parentElement, first = table.querySelector('tbody tr > :first-child');
  const fits = box.scrollWidth <= box.clientWidth + 1
               && table.getBoundingClientRect().right <= document.documentElement.clientWidth + 1;
  const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
  const sticky = !first || getComputedStyle(first).position === 'sticky';
  return fits || (scrolls && sticky) ? null
    : (table.getAttribute('aria-label') || table.getAttribute('aria-labelledby') || table.id || 'a table')
      + ' is ' + (box.scrollWidth - box.clientWidth) + 'px too wide';
}).filter(Boolean);
"""


@pytest.fixture(scope="module")
def site(apache):
    return demo.fill(apache)


def test_every_page_fits_a_phone_screen_and_labels_its_controls(apache, browser, site):
    with_reports = apache.request("GET", "/crm/reports", user=("sam", demo.PASSWORDS["sam"])).status != 404
    phones = {user: browser(f"{user}-phone", user, size=PHONE) for user in demo.PASSWORDS}
    problems = []
    for page in demo.pages(site, with_reports):
        phone = phones[page.user]
        with phone.step(page.name):
            phone.open(page.path)
            if page.act:
                page.act(phone)
            assert not phone.title.startswith("500"), page
            if (overflow := phone.driver.execute_script(OVERFLOW)) > 0:
                problems.append(f"{page.name}: the page is {overflow}px wider than the phone's screen")
            if unlabelled := phone.driver.execute_script(UNLABELLED):
                problems.append(f"{page.name}: controls without a label: {unlabelled}")
    assert not problems, "\n".join(problems)


def test_no_table_on_any_page_is_cut_off_on_a_desktop_or_a_phone(apache, browser, site):
    with_reports = apache.request("GET", "/crm/reports", user=("sam", demo.PASSWORDS["sam"])).status != 404
    problems = []
    for width, size in (("1280x800", (1280, 800)), ("phone", PHONE)):
        browsers = {user: browser(f"{user}-{width}", user, size=size) for user in demo.PASSWORDS}
        for page in demo.pages(site, with_reports):
            seen = browsers[page.user]
            with seen.step(f"{page.name} at {width}"):
                seen.open(page.path)
                if page.act:
                    page.act(seen)
                problems += [f"{page.name} at {width}: {cut}" for cut in seen.driver.execute_script(CUT_OFF_TABLES)]
    assert not problems, "\n".join(problems)


def test_a_table_sorts_by_the_column_heading_clicked(browser, site):
    staff = browser("staff", "sam")
    with staff.step("sort the recipients by accesses"):
        staff.open(f"/emails/{site.ids['opened']}")
        heading = staff.find("table[aria-labelledby=recipients] thead th.num button")
        assert heading.text == "Accesses"
        heading.click()
        column = "table[aria-labelledby=recipients] tbody td:nth-child(6)"  # Accesses
        assert [cell.text for cell in staff.find_all(column)] == ["0", "0", "1", "2"]
        assert staff.find("table[aria-labelledby=recipients] th[aria-sort]").get_attribute("aria-sort") == "ascending"
        staff.find("table[aria-labelledby=recipients] thead th.num button").send_keys("\n")  # the keyboard too
        assert [cell.text for cell in staff.find_all(column)] == ["2", "1", "0", "0"]


def test_sending_shows_progress_and_a_role_change_asks_first(browser, site):
    staff = browser("staff", "sam")
    with staff.step("the send indicator appears on Send, not on Preview"):
        staff.open("/emails/new")
        staff.fill("#f-to", "someone@example.test")
        staff.fill("#f-subject", "Progress")
        staff.fill_html("#f-html", "<p>Hi</p>")
        status = staff.find("#compose [data-progress-status]")
        assert not status.is_displayed()
        # Stop the post itself, to look at the page while it would be waiting for the server.
        staff.driver.execute_script(
            "document.getElementById('compose').addEventListener('submit', event => event.preventDefault())")
        staff.press("Preview", navigates=False)
        assert not status.is_displayed()
        staff.press("Send", navigates=False)
        assert status.is_displayed() and "Sending" in status.text

    admin = browser("admin", "admin")
    with admin.step("changing a role asks for confirmation; dismissing it changes nothing"):
        admin.open("/users")
        admin.find("#role-sam select").send_keys("admin")
        admin.find("#role-sam button").click()
        alert = admin.driver.switch_to.alert
        assert "Change the role of sam?" in alert.text
        alert.dismiss()
        admin.open("/users")
        assert admin.find("#role-sam option:checked").text == "staff"
