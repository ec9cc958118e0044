"""Rates that name their base, clicks per link and the click map, the Domains report and Compare,
checked against a known dataset with hand-computed numbers, on both databases.

"Launch" (sent 2026-03-02 09:00; links a = https://example.test/a, b = https://example.test/b):

| recipient | status | delivery | measured | opened (likely human) | loads | clicks (verdict) | opted out as |
| --- | --- | --- | --- | --- | --- | --- | --- |
| ada@acme.test | sent | | yes | yes | 2 | a human ×2, b scanner | |
| bob@Acme.test | sent | | yes | no | 1 (proxy) | a scanner | |
| cy@gmail.test | sent | bounced | yes | no | 0 | | |
| dee@gmail.test | sent | | no | | | | unsubscribe |
| eve@gmail.test | failed | | yes | | | | |
| fay@acme.test | sent | delivered | yes | yes | 1 | b human | complaint |

So: 6 sent, 4 delivered (66.7%), 2 bounced (33.3%), 3 measured delivered; likely-human: 2 opened
(66.7%), 2 clicked (66.7%), click-to-open 100%; all loads: 3 opened, 3 clicked; 1 unsubscribe and 1
complaint of 4 delivered (25%).  "Follow-up" (sent 03-05 10:00) to ada2@acme.test: a human load on day
0 and two on day 2, a proxy load on day 0.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from coretrack.models import AccessEvent, ClickEvent, Email, EmailLink, Recipient
from coretrack.people import suppression

LAUNCH_HTML = ('<p>Hello <a href="https://example.test/a">the offer</a>, <a href="mailto:sales@example.test">'
               'write</a> or <a href="https://example.test/b">read more</a>.</p>')
LAUNCH_SENT, FOLLOW_UP_SENT = datetime(2026, 3, 2, 9), datetime(2026, 3, 5, 10)


def _recipient(email: Email, address: str, **values) -> Recipient:
    values.setdefault("status", "sent")
    return Recipient(email=email, address=address, token=f"t-{email.subject}-{address}", **values)


@pytest.fixture
def emails(db, users) -> dict[str, Email]:
    launch = Email(subject="Launch", html_body=LAUNCH_HTML, sender=users["sam"], from_address="crm@example.test",
                   status="sent", sent_at=LAUNCH_SENT)
    launch.links = [EmailLink(position=0, url="https://example.test/a", click_count=3, human_clicks=2),
                    EmailLink(position=1, url="https://example.test/b", click_count=2, human_clicks=1)]
    opened = LAUNCH_SENT + timedelta(hours=1)
    ada = _recipient(launch, "ada@acme.test", access_count=2, human_opens=1, first_human_at=opened, click_count=3,
                     human_clicks=2)
    bob = _recipient(launch, "bob@Acme.test", access_count=1, click_count=1)
    fay = _recipient(launch, "fay@acme.test", access_count=1, human_opens=1, first_human_at=opened, click_count=1,
                     human_clicks=1, delivery_status="delivered", opted_out_as=suppression.COMPLAINT)
    others = [_recipient(launch, "cy@gmail.test", delivery_status="bounced"),
              _recipient(launch, "dee@gmail.test", tracked=False, opted_out_as=suppression.UNSUBSCRIBE),
              _recipient(launch, "eve@gmail.test", status="failed")]
    follow_up = Email(subject="Follow-up", html_body="<p>Again</p>", sender=users["sam"],
                      from_address="crm@example.test", status="sent", sent_at=FOLLOW_UP_SENT)
    ada2 = _recipient(follow_up, "ada2@acme.test", access_count=4, human_opens=3,
                      first_human_at=FOLLOW_UP_SENT + timedelta(hours=1))
    draft = Email(subject="Not yet", html_body="<p>x</p>", sender=users["sam"], from_address="crm@example.test")
    db.add_all([launch, ada, bob, fay, *others, follow_up, ada2, draft])
    db.flush()
    link_a, link_b = launch.links
    db.add_all([
        ClickEvent(recipient_id=ada.id, link_id=link_a.id, at=opened, verdict="human"),
        ClickEvent(recipient_id=ada.id, link_id=link_a.id, at=opened + timedelta(minutes=5), verdict="human"),
        ClickEvent(recipient_id=ada.id, link_id=link_b.id, at=opened, verdict="scanner"),
        ClickEvent(recipient_id=bob.id, link_id=link_a.id, at=opened, verdict="scanner"),
        ClickEvent(recipient_id=fay.id, link_id=link_b.id, at=opened, verdict="human"),
        AccessEvent(recipient_id=ada.id, at=opened, verdict="human"),
        AccessEvent(recipient_id=ada.id, at=LAUNCH_SENT + timedelta(days=1, hours=2), verdict="mail_proxy"),
        AccessEvent(recipient_id=bob.id, at=LAUNCH_SENT + timedelta(minutes=30), verdict="mail_proxy"),
        AccessEvent(recipient_id=fay.id, at=LAUNCH_SENT + timedelta(hours=3), verdict="human"),
        AccessEvent(recipient_id=ada2.id, at=FOLLOW_UP_SENT + timedelta(hours=1), verdict="human"),
        AccessEvent(recipient_id=ada2.id, at=FOLLOW_UP_SENT + timedelta(hours=2), verdict="mail_proxy"),
        AccessEvent(recipient_id=ada2.id, at=FOLLOW_UP_SENT + timedelta(days=2, hours=3), verdict="human", hits=2),
    ])
    db.commit()
    return {"launch": launch, "follow_up": follow_up, "draft": draft}


def rows_of(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.body.decode("utf-8-sig"))))


def test_the_email_page_shows_each_rate_with_its_base_likely_human_by_default(staff, emails):
    page = staff.get(f"/emails/{emails['launch'].id}")
    rates = {item.get("id"): " ".join(item.text.split()) for item in page.html.select("#rates-heading ~ ul li")}
    assert "66.7% of 6 sent" in rates["rate-delivery_rate"]
    assert "66.7% of 3 measured delivered recipients" in rates["rate-open_rate"]
    assert "66.7% of 3 measured delivered recipients" in rates["rate-click_rate"]
    assert "100.0% of 2 who opened" in rates["rate-click_to_open"]
    assert "25.0% of 4 delivered" in rates["rate-unsubscribe_rate"]
    assert "33.3% of 6 sent" in rates["rate-bounce_rate"]
    assert "25.0% of 4 delivered" in rates["rate-complaint_rate"]
    assert "likely-human" in page.html.select_one("#rates-basis").text


def test_all_loads_is_a_switch_in_the_query_string_that_counts_proxies_and_scanners_too(staff, emails):
    page = staff.get(f"/emails/{emails['launch'].id}")
    switched = page.click(href="loads=all")
    rates = {item.get("id"): " ".join(item.text.split()) for item in switched.html.select("#rates-heading ~ ul li")}
    assert "100.0% of 3 measured delivered recipients" in rates["rate-open_rate"]
    assert "100.0% of 3 measured delivered recipients" in rates["rate-click_rate"]
    assert "all loads" in switched.html.select_one("#rates-basis").text
    api = staff.get(f"/api/reports/emails/{emails['launch'].id}/links?loads=all").json["rates"]
    assert (api["loads"], api["opened"], api["clicked"], api["open_rate"]) == ("all", 3, 3, 100.0)
    staff.get(f"/api/reports/emails/{emails['launch'].id}/links?loads=some", status=400)


def test_clicks_per_link_count_all_and_likely_human_clicks_and_the_people_behind_them(staff, emails):
    body = staff.get(f"/api/reports/emails/{emails['launch'].id}/links").json
    assert body["links"] == [
        {"link": 1, "url": "https://example.test/a", "clicks": 3, "human_clicks": 2, "human_share": 66.7,
         "share": 60.0, "human_people": 1, "people": 2},
        {"link": 2, "url": "https://example.test/b", "clicks": 2, "human_clicks": 1, "human_share": 33.3,
         "share": 40.0, "human_people": 1, "people": 2},
    ]
    assert (body["rates"]["loads"], body["rates"]["opened"], body["rates"]["open_rate"]) == ("human", 2, 66.7)
    csv_rows = rows_of(staff.get(f"/reports/emails/{emails['launch'].id}/links.csv"))
    assert [(row["URL"], row["Clicks"], row["People (likely-human)"]) for row in csv_rows] == [
        ("https://example.test/a", "3", "1"), ("https://example.test/b", "2", "1")]
    page = staff.get(f"/reports/emails/{emails['launch'].id}/links")
    assert "https://example.test/b" in page.html.select_one("table[aria-labelledby=links]").text


def test_the_click_map_badges_each_tracked_link_with_its_share_inside_the_sandboxed_frame(staff, emails):
    page = staff.get(f"/emails/{emails['launch'].id}")
    frame = page.html.select_one("iframe[title^='Click map']")
    assert frame.has_attr("sandbox") and not frame["sandbox"]  # sandbox="": nothing in it runs
    rendered = frame["srcdoc"]
    assert "<script" not in rendered.lower()
    # Each badge stands just before its link; the mailto: link is not tracked and has none.
    assert '66.7%</mark><a href="https://example.test/a">' in rendered
    assert '33.3%</mark><a href="https://example.test/b">' in rendered
    assert rendered.count("<mark") == 2
    assert "3 clicks in all (60.0% of 5)" in rendered


def test_the_domains_report_breaks_recipients_down_by_their_address_domain(staff, emails):
    body = staff.get("/api/reports/domains?sort=domain&order=asc").json
    rows = {row["domain"]: row for row in body["rows"]}
    acme, gmail = rows["acme.test"], rows["gmail.test"]
    assert (acme["recipients"], acme["sent"], acme["delivered"], acme["measured"], acme["opened"]) == (4, 4, 4, 4, 3)
    assert (acme["open_rate"], acme["complaint_rate"], acme["complained"]) == (75.0, 25.0, 1)
    assert (gmail["recipients"], gmail["sent"], gmail["delivered"], gmail["bounced"]) == (3, 3, 1, 2)
    assert (gmail["open_rate"], gmail["unsubscribe_rate"], gmail["bounce_rate"]) == (None, 100.0, 66.7)
    launch_only = staff.get("/api/reports/domains?subject=Launch&loads=all").json["rows"]
    assert {row["domain"]: row["opened"] for row in launch_only} == {"acme.test": 3, "gmail.test": 0}
    page = staff.get("/reports/domains?subject=Launch")
    assert "66.7% of 3 measured delivered recipients" in " ".join(page.html.select_one("table").text.split())
    csv_rows = rows_of(staff.get("/reports/domains.csv?subject=Launch"))
    assert [(row["Domain"], row["Recipients"]) for row in csv_rows] == [("acme.test", "3"), ("gmail.test", "3")]
    staff.get("/reports/domains?loads=bots", status=400)


def test_compare_puts_two_to_four_emails_side_by_side_with_their_opens_day_by_day(staff, emails):
    launch, follow_up = emails["launch"].id, emails["follow_up"].id
    body = staff.get(f"/api/reports/compare?email={launch}&email={follow_up}").json
    assert [(row["subject"], row["open_rate"], row["delivery_rate"]) for row in body["emails"]] == [
        ("Launch", 66.7, 66.7), ("Follow-up", 100.0, 100.0)]
    days = {entry["email_id"]: entry["days"] for entry in body["opens_by_day"]}
    assert days[launch][:3] == [2, 0, 0] and days[follow_up][:3] == [1, 0, 2] and len(days[launch]) == 14
    every_load = staff.get(f"/api/reports/compare?email={launch}&email={follow_up}&loads=all").json["opens_by_day"]
    assert [entry["days"][:3] for entry in every_load] == [[3, 1, 0], [2, 0, 2]]
    page = staff.get(f"/reports/compare?email={launch}&email={follow_up}")
    svg = page.html.select_one("figure svg")
    assert svg["role"] == "img" and "Launch: 2 over these days" in svg["aria-label"]
    assert len(svg.select("polyline")) == 2
    assert "66.7%" in page.html.select_one("table").text
    csv_rows = rows_of(staff.get(f"/reports/compare.csv?email={launch}&email={follow_up}"))
    assert [(row["Subject"], row["Click rate"]) for row in csv_rows] == [("Launch", "66.7"), ("Follow-up", "0.0")]


@pytest.mark.parametrize(("query", "message"), [
    ("email={launch}", "choose 2 to 4 emails to compare (1 chosen)"),
    ("email={launch}&email={launch}", "choose each email once"),
    ("email={launch}&email=999991&email=999992&email=999993&email=999994",
     "choose 2 to 4 emails to compare (5 chosen)"),
    ("email={launch}&email=999999", "there is no email with id 999999"),
    ("email={launch}&email={draft}", "has not been sent yet"),
    ("email={launch}&email=x", "enter a whole number"),
])
def test_compare_refuses_anything_but_two_to_four_sent_emails_with_a_clear_message(staff, emails, query, message):
    query = query.format(launch=emails["launch"].id, draft=emails["draft"].id)
    page = staff.get(f"/reports/compare?{query}", status=400)
    assert message in page.html.select_one("#compare-error").text
    assert message in staff.get(f"/api/reports/compare?{query}", status=400).json["fields"]["email"]
    assert message in staff.get(f"/reports/compare.csv?{query}", status=400).text


def test_the_compare_page_without_emails_offers_the_sent_ones_to_choose(staff, emails):
    page = staff.get("/reports/compare")
    options = [option.text for option in page.html.select("#f-email-1 option")]
    assert any(text.startswith("Launch") for text in options)
    assert not any(text.startswith("Not yet") for text in options)


def test_the_new_reports_are_for_signed_in_staff_only(anon, emails):
    launch = emails["launch"].id
    for path in (f"/reports/emails/{launch}/links", f"/reports/emails/{launch}/links.csv",
                 f"/api/reports/emails/{launch}/links", f"/reports/compare?email={launch}",
                 "/api/reports/compare", "/reports/domains", "/api/reports/domains"):
        assert anon.get(path, status="*").status_int == 401, path


def test_a_recipients_unsubscribe_or_complaint_is_kept_on_the_recipient_and_a_complaint_stays_one(db, emails):
    ada = next(r for r in emails["follow_up"].recipients)
    suppression.opt_out_recipient(db, ada, suppression.SENDGRID, "reported the email as spam",
                                  category=suppression.COMPLAINT)
    suppression.opt_out_recipient(db, ada, suppression.LINK, "asked")  # an unsubscribe, by its source
    db.commit()
    assert ada.opted_out_as == "complaint"
    # A staff opt-out is no answer of the person's to this email.
    staff_only = next(r for r in emails["launch"].recipients if not r.opted_out_as)
    suppression.opt_out_recipient(db, staff_only, suppression.STAFF, "asked by phone")
    assert staff_only.opted_out_as == ""
    assert suppression.suppressed(db, ["ada2@acme.test"]) == {"ada2@acme.test"}


def test_a_rate_without_a_base_says_so_rather_than_0_percent(staff, db, users):
    quiet = Email(subject="Quiet", html_body="<p>x</p>", sender=users["sam"], from_address="crm@example.test",
                  status="sent", sent_at=LAUNCH_SENT)
    db.add_all([quiet, _recipient(quiet, "zed@example.test", tracked=False)])
    db.commit()
    rates = {item.get("id"): " ".join(item.text.split())
             for item in staff.get(f"/emails/{quiet.id}").html.select("#rates-heading ~ ul li")}
    assert rates["rate-open_rate"] == "Open rate — no measured delivered recipients"
    assert rates["rate-click_to_open"] == "Click-to-open — nobody opened"
    assert rates["rate-delivery_rate"] == "Delivery rate 100.0% of 1 sent (1 delivered)"
    assert staff.get(f"/api/reports/emails/{quiet.id}/links").json["rates"]["open_rate"] is None


def test_the_emails_report_has_a_click_rate_beside_its_open_rate(staff, emails):
    row = next(row for row in staff.get("/api/reports/emails").json["rows"] if row["subject"] == "Launch")
    # The same base as the email's page: measured recipients delivered to (cy's later bounce is not).
    assert (row["measured"], row["clicked"], row["click_rate"], row["open_rate"]) == (3, 2, 66.7, 66.7)
