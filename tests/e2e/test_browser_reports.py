"""The reports people ask for, in a browser under Apache, on SQLite and PostgreSQL: an email's rates
and the "all loads" switch, its clicks per link and click map, the Domains report and Compare."""

from __future__ import annotations

import csv

import pytest
from selenium.webdriver.support.ui import Select
from support.apache import ApacheServer
from support.postgres import DATABASES, PostgresServer

from e2e import demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module", params=DATABASES)
def reports_site(request, apache):
    """The demo dataset under an Apache of its own, on each database (SQLite: the module's Apache)."""
    if request.param == "sqlite":
        yield apache, demo.fill(apache)
        return
    with PostgresServer.new_database() as url:
        server = ApacheServer("site", "/crm", database_url=url)
        try:
            server.start()
            yield server, demo.fill(server)
        finally:
            server.stop()


def test_an_emails_rates_name_their_base_and_switch_to_all_loads(browser, reports_site):
    apache, site = reports_site
    staff = browser("staff", "sam")
    with staff.step("the email's rates, likely-human by default"):
        staff.open(f"/emails/{site.ids['offer']}")
        assert "of 4 sent" in staff.find("#rate-delivery_rate").text
        assert "measured delivered recipients" in staff.find("#rate-open_rate").text
        assert "likely-human" in staff.find("#rates-basis").text
    with staff.step("switch to all loads"):
        staff.find("#rates-basis a").click()
        assert "all loads" in staff.find("#rates-basis").text
        assert "loads=all" in staff.driver.current_url


def test_the_click_map_shows_the_email_with_each_links_share_and_runs_nothing(browser, reports_site):
    apache, site = reports_site
    staff = browser("staff", "sam")
    with staff.step("the links report"):
        staff.open(f"/reports/emails/{site.ids['offer']}/links")
        rows = staff.find_all("table[aria-labelledby=links] tbody tr")
        assert [row.find_element("css selector", "td:nth-child(2)").text for row in rows] == [
            "https://shop.example/summer", "https://shop.example/sizes", "https://acme.example/contact"]
        clicks = [int(row.find_element("css selector", "td:nth-child(3)").text) for row in rows]
        assert clicks == [3, 2, 1]
        human_clicks = [int(row.find_element("css selector", "td:nth-child(4)").text) for row in rows]
        assert human_clicks == [2, 1, 0]  # the buyer's gateway followed all three at once
    with staff.step("the click map: badges before the links, in a frame where no script runs"):
        frame = staff.find("iframe[title^='Click map']")
        assert frame.get_attribute("sandbox") == ""
        staff.driver.switch_to.frame(frame)
        badges = staff.find_all("mark.coretrack-click-badge")
        assert len(badges) == 3
        assert all(badge.text.endswith("%") or badge.text == "—" for badge in badges)
        assert "clicks in all" in badges[0].get_attribute("title")
        staff.driver.switch_to.default_content()
    with staff.step("its CSV"):
        staff.find("a[href$='/links.csv']").click()
        rows = list(csv.DictReader(staff.wait_for_download(".csv").read_text("utf-8-sig").splitlines()))
        assert [row["Clicks"] for row in rows] == ["3", "2", "1"]


def test_domains_and_compare_from_the_reports_tabs(browser, reports_site):
    apache, site = reports_site
    staff = browser("staff", "sam")
    with staff.step("the domains report"):
        staff.open("/reports")
        staff.find("nav[aria-label=Reports] a[href$='/reports/domains']").click()
        acme = {heading.rstrip(" ▲▼"): cell for heading, cell in staff.row("table", "acme.example").items()}
        assert int(acme["Recipients"]) >= 4
        assert acme["Delivery rate"].endswith(f"of {acme['Sent']} sent")
    with staff.step("compare two emails"):
        staff.find("nav[aria-label=Reports] a[href$='/reports/compare']").click()
        Select(staff.find("#f-email-1")).select_by_value(str(site.ids["offer"]))
        Select(staff.find("#f-email-2")).select_by_value(str(site.ids["opened"]))
        staff.press("Compare emails")
        assert len(staff.find_all("figure svg polyline")) == 2
        assert staff.find("figure svg").get_attribute("role") == "img"
        headings = [cell.text for cell in staff.find_all("table[aria-describedby=report-summary] thead th")]
        assert headings[1:] == ["Summer offer", "Spring price list"]
    with staff.step("one email only is a clear error"):
        staff.open(f"/reports/compare?email={site.ids['offer']}")
        assert "choose 2 to 4 emails to compare (1 chosen)" in staff.find("#compare-error").text
