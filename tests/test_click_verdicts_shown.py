"""Likely-human clicks are shown beside all clicks wherever clicks are shown: the email's page (its
counts, recipients, links and a list of its clicks with each one's verdict and reason), the record's
page (its emails and its timeline), the Emails, Recipients and Records reports, their CSV, and the API.

The dataset (times UTC, March 2026): "Offer" sent 03-02 09:00 by sam, with two links,
offer (#1) and prices (#2), to

| recipient | measured | clicks (a person's unless said) | all | human |
| --- | --- | --- | ---: | ---: |
| ann (contact Ann) | yes | 09:00:30 offer ×2 scanner (agent), 09:00:31 prices scanner (burst), 10:00 offer | 4 | 1 |
| bob | yes | 11:00 prices | 1 | 1 |
| cy | yes | — | 0 | 0 |
| u1 | no | — (its anonymous totals: 1 click, never in the measured figures) | 0 | 0 |

so the email has 5 clicks, 2 likely by a person; offer 3 (1), prices 2 (1).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

import pytest

from coretrack.models import AnonymousTotal, ClickEvent, Contact, Email, EmailLink, Recipient
from coretrack.reports.filters import Filters
from coretrack.reports.tables import EmailsReport, RecordsReport

SENT = datetime(2026, 3, 2, 9, 0)
AGENT_SCANNER = "a link scanner's agent"
BURST = "another link clicked within seconds"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@dataclass
class Offer:
    email: Email
    ann: Contact


@pytest.fixture
def offer(db, users) -> Offer:
    ann = Contact(first_name="Ann", last_name="Clicker", email="ann@example.test")
    db.add(ann)
    db.flush()
    email = Email(subject="Offer", html_body="<p>x</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT, created_at=SENT)
    offer_link = EmailLink(position=0, url="https://example.test/offer", click_count=3, human_clicks=1)
    prices_link = EmailLink(position=1, url="https://example.test/prices", click_count=2, human_clicks=1)
    email.links = [offer_link, prices_link]

    def recipient(address: str, tracked: bool = True, **counts) -> Recipient:
        return Recipient(address=address, token=f"token-{address}", status="sent", tracked=tracked, sent_at=SENT,
                         **counts)

    ann_recipient = recipient("ann@example.test", contact_id=ann.id, click_count=4, human_clicks=1,
                              first_human_at=datetime(2026, 3, 2, 10, 0))
    bob = recipient("bob@example.test", click_count=1, human_clicks=1, first_human_at=datetime(2026, 3, 2, 11, 0))
    email.recipients = [ann_recipient, bob, recipient("cy@example.test"), recipient("u1@example.test", tracked=False)]
    db.add(email)
    db.flush()

    def click(who: Recipient, link: EmailLink, at: datetime, verdict: str, reason: str = "", hits: int = 1,
              agent: str = FIREFOX) -> ClickEvent:
        return ClickEvent(recipient_id=who.id, link_id=link.id, at=at, ip="198.51.100.7", user_agent=agent,
                          verdict=verdict, reason=reason, hits=hits)

    db.add_all([
        click(ann_recipient, offer_link, datetime(2026, 3, 2, 9, 0, 30), "scanner", AGENT_SCANNER, hits=2,
              agent="Barracuda Sentinel"),
        click(ann_recipient, prices_link, datetime(2026, 3, 2, 9, 0, 31), "scanner", BURST),
        click(ann_recipient, offer_link, datetime(2026, 3, 2, 10, 0), "human"),
        click(bob, prices_link, datetime(2026, 3, 2, 11, 0), "human"),
        AnonymousTotal(email_id=email.id, day=date(2026, 3, 2), loads=1, human_loads=1, clicks=1),
    ])
    db.commit()
    return Offer(email, ann)


def words(element) -> str:
    return " ".join(element.get_text(" ").split())


def table(page, name: str) -> list[dict[str, str]]:
    """The rows of the page's table labelled ``name``, each as {header: cell text}."""
    element = page.html.select_one(f"table[aria-labelledby={name}]")
    headers = [words(th) for th in element.select("thead th")]
    return [dict(zip(headers, (words(td) for td in row.select("td")), strict=True))
            for row in element.select("tbody tr")]


# -- the email's page ---------------------------------------------------------------------------


def test_the_email_page_shows_likely_human_clicks_beside_all_clicks(staff, offer):
    page = staff.get(f"/emails/{offer.email.id}")
    assert words(page.html.find(id="measured-clicks")) == "5 clicks on its links, 2 likely by a person"
    # The unmeasured recipients' anonymous click stays on the anonymous line, never in the measured one.
    assert words(page.html.find(id="anonymous")).endswith("; 1 click)")


def test_the_emails_list_shows_each_emails_clicks_and_how_many_were_likely_a_persons(staff, offer):
    listing = staff.get("/emails")
    headers = [words(th) for th in listing.html.select("thead th")]
    [row] = [dict(zip(headers, (words(td) for td in tr.select("td")), strict=True))
             for tr in listing.html.select("tbody tr")]
    assert row["Clicks (likely human)"] == "5 2 likely human"


def test_the_email_pages_recipients_and_links_tables_have_a_human_clicks_column(staff, offer):
    page = staff.get(f"/emails/{offer.email.id}")
    recipients = {row["Address"]: (row["Clicks"], row["Human clicks"]) for row in table(page, "recipients")}
    assert recipients == {"ann@example.test": ("4", "1"), "bob@example.test": ("1", "1"),
                          "cy@example.test": ("0", "0"), "u1@example.test": ("0", "0")}
    links = [(row["URL"], row["Clicks"], row["Likely-human clicks"]) for row in table(page, "links")]
    assert links == [("https://example.test/offer", "3", "1"), ("https://example.test/prices", "2", "1")]


def test_the_email_page_lists_each_click_with_its_verdict_and_reason_like_the_accesses(staff, offer):
    page = staff.get(f"/emails/{offer.email.id}")
    clicks = [(row["Time"], row["Recipient"], row["Link"], row["Verdict"], row["Reason"])
              for row in table(page, "clicks")]
    assert clicks == [
        ("2026-03-02 11:00", "bob@example.test", "2: https://example.test/prices", "human", "—"),
        ("2026-03-02 10:00", "ann@example.test", "1: https://example.test/offer", "human", "—"),
        ("2026-03-02 09:00", "ann@example.test", "2: https://example.test/prices", "scanner", BURST),
        ("2026-03-02 09:00 (and 1 more that minute)", "ann@example.test", "1: https://example.test/offer",
         "scanner", AGENT_SCANNER),
    ]
    assert table(page, "clicks")[3]["User agent"] == "Barracuda Sentinel"


def test_an_email_with_links_and_no_click_says_so_and_one_without_links_lists_no_clicks(staff, db, users, offer):
    db.query(ClickEvent).delete()
    plain = Email(subject="Plain", html_body="<p>x</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT, created_at=SENT)
    plain.recipients = [Recipient(address="dee@example.test", token="token-dee", status="sent", sent_at=SENT)]
    db.add(plain)
    db.commit()
    page = staff.get(f"/emails/{offer.email.id}")
    assert words(page.html.find(id="clicks").find_next("p")) == "No clicks recorded yet."
    plain_page = staff.get(f"/emails/{plain.id}")
    assert plain_page.html.find(id="clicks") is None and plain_page.html.find(id="measured-clicks") is None


# -- the record's page ----------------------------------------------------------------------------


def test_the_records_emails_table_shows_likely_human_clicks_beside_all_clicks(staff, offer):
    [row] = table(staff.get(f"/contacts/{offer.ann.id}"), "emails")
    assert (row["Subject"], row["Clicks"], row["Human clicks"]) == ("Offer", "4", "1")


def test_the_record_timeline_says_each_clicks_verdict_and_why(staff, offer):
    entries = [" ".join(item.text.split()) for item in
               staff.get(f"/contacts/{offer.ann.id}").html.select("ol.timeline li.timeline-clicked")]
    assert entries == [
        "2026-03-02 10:00 — Clicked https://example.test/offer in “Offer”, likely by a person",
        f"2026-03-02 09:00 — Clicked https://example.test/prices in “Offer” by a scanner ({BURST})",
        f"2026-03-02 09:00 — Clicked https://example.test/offer in “Offer” by a scanner ({AGENT_SCANNER}), 2 clicks",
    ]


# -- the reports and their CSV ------------------------------------------------------------------


def test_the_emails_report_shows_likely_human_clicks_beside_all_clicks(staff, offer):
    [row] = staff.get("/api/reports/emails").json["rows"]
    assert (row["clicks"], row["human_clicks"], row["anonymous_clicks"]) == (5, 2, 1)
    page = staff.get("/reports/emails")
    headers = [words(th) for th in page.html.select("thead th")]
    assert headers[headers.index("Clicks") + 1] == "Likely-human clicks"
    cells = dict(zip(headers, (words(td) for td in page.html.select("tbody tr td")), strict=True))
    assert (cells["Clicks"], cells["Likely-human clicks"]) == ("5", "2")
    [exported] = csv.DictReader(io.StringIO(staff.get("/reports/emails.csv").body.decode("utf-8-sig")))
    assert (exported["Clicks"], exported["Likely-human clicks"], exported["Anonymous clicks"]) == ("5", "2", "1")


def test_the_recipients_report_shows_each_recipients_likely_human_clicks(staff, offer):
    rows = staff.get("/api/reports/recipients", params={"per_page": 50}).json["rows"]
    assert {row["address"]: (row["clicks"], row["human_clicks"]) for row in rows} == {
        "ann@example.test": (4, 1), "bob@example.test": (1, 1), "cy@example.test": (0, 0), "u1@example.test": (0, 0)}
    exported = {row["Address"]: (row["Clicks"], row["Likely-human clicks"]) for row in csv.DictReader(
        io.StringIO(staff.get("/reports/recipients.csv").body.decode("utf-8-sig")))}
    assert exported["ann@example.test"] == ("4", "1")


def test_the_records_report_shows_a_records_clicks_and_likely_human_clicks(staff, offer):
    [row] = staff.get("/api/reports/records", params={"record_type": "contact"}).json["rows"]
    assert (row["record"], row["clicks"], row["human_clicks"]) == ("Ann Clicker", 4, 1)
    [exported] = csv.DictReader(io.StringIO(staff.get("/reports/records.csv").body.decode("utf-8-sig")))
    assert (exported["Clicks"], exported["Likely-human clicks"]) == ("4", "1")


def test_the_reports_read_clicks_from_the_recipients_covering_indexes(db, offer):
    """No recipient row is read for a count: the stats indexes hold human_clicks beside click_count."""
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("the plan's words are SQLite's")
    contacts = Filters(record_type="contact")
    for index, statement in (("ix_recipients_email_stats", EmailsReport().statement(Filters())),
                             ("ix_recipients_contact_stats", RecordsReport().statement(contacts))):
        compiled = statement.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " ".join(str(row[-1]) for row in db.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        assert f"COVERING INDEX {index}" in plan, plan


# -- the API --------------------------------------------------------------------------------------


def test_the_api_gives_likely_human_clicks_for_emails_recipients_links_and_a_records_emails(staff, offer):
    listed = next(email for email in staff.get("/api/emails").json["emails"] if email["id"] == offer.email.id)
    detail = staff.get(f"/api/emails/{offer.email.id}").json
    for shown in (listed, detail):
        assert (shown["clicks"], shown["human_clicks"], shown["anonymous"]["clicks"]) == (5, 2, 1)
    assert {r["address"]: (r["click_count"], r["human_clicks"]) for r in detail["recipient_list"]} == {
        "ann@example.test": (4, 1), "bob@example.test": (1, 1), "cy@example.test": (0, 0), "u1@example.test": (0, 0)}
    assert [(link["position"], link["click_count"], link["human_clicks"]) for link in detail["links"]] == \
        [(0, 3, 1), (1, 2, 1)]
    [related] = staff.get(f"/api/records/contact/{offer.ann.id}/emails").json["emails"]
    assert (related["click_count"], related["human_clicks"]) == (4, 1)

