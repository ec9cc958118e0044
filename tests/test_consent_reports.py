"""What pages and reports say under consent-aware tracking: every open and load rate is a share of the
measured recipients (``recipients.tracked``, delivered) and names them; the unmeasured recipients'
reading is only the email's anonymous totals, shown apart and never mixed into a measured figure; the
Records report and the notifications count measured recipients only.

The dataset (times UTC, March 2026): "News" sent 03-02 09:00 by sam to

| recipient | measured | status | reading |
| --- | --- | --- | --- |
| ann (contact Ann) | yes | sent | opened (2 likely-human loads) |
| bob | yes | sent | loaded once by a proxy |
| cy | yes | sent | — |
| fay | yes | failed | — |
| una (contact Una) and u1..u4 | no | sent | none recorded: una carries a stale count that must count nowhere |

and its anonymous totals: 03-02 7 loads (4 likely-human), 03-03 5 loads (2 likely-human, 1 click).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

import pytest
from sqlalchemy import select

from coretrack import notifications
from coretrack.models import AccessEvent, AnonymousTotal, Contact, Email, Notification, Recipient

SENT = datetime(2026, 3, 2, 9, 0)
WEEK = {"from": "2026-03-01", "to": "2026-03-07"}


@dataclass
class News:
    email: Email
    ann: Contact
    una: Contact


@pytest.fixture
def news(db, users) -> News:
    ann = Contact(first_name="Ann", last_name="Measured", email="ann@example.test")
    una = Contact(first_name="Una", last_name="Unmeasured", email="una@example.test")
    db.add_all([ann, una])
    db.flush()
    email = Email(subject="News", html_body="<p>x</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="partial", sent_at=SENT, created_at=SENT)
    opened = datetime(2026, 3, 2, 10, 0)

    def recipient(address: str, tracked: bool, status: str = "sent", **counts) -> Recipient:
        return Recipient(address=address, token=f"token-{address}", status=status, tracked=tracked, sent_at=SENT,
                         **counts)

    email.recipients = [
        recipient("ann@example.test", True, contact_id=ann.id, access_count=2, human_opens=2, first_access=opened,
                  last_access=opened, first_human_at=opened),
        recipient("bob@example.test", True, access_count=1, first_access=opened, last_access=opened),
        recipient("cy@example.test", True),
        recipient("fay@example.test", True, status="failed"),
        # Nothing of an unmeasured recipient's reading is recorded; a count left on one (none should be)
        # must still count nowhere.
        recipient("una@example.test", False, contact_id=una.id, access_count=4, human_opens=4, click_count=1,
                  first_access=opened, last_access=opened, first_human_at=opened),
        *(recipient(f"u{number}@example.test", False) for number in range(1, 5)),
    ]
    db.add(email)
    db.flush()
    db.add_all([AccessEvent(recipient_id=email.recipients[0].id, at=opened, user_agent="Thunderbird", hits=2),
                AccessEvent(recipient_id=email.recipients[1].id, at=opened, user_agent="GoogleImageProxy",
                            verdict="proxy"),
                AnonymousTotal(email_id=email.id, day=date(2026, 3, 2), loads=7, human_loads=4, clicks=0),
                AnonymousTotal(email_id=email.id, day=date(2026, 3, 3), loads=5, human_loads=2, clicks=1)])
    db.commit()
    return News(email, ann, una)


def words(element) -> str:
    return " ".join(element.get_text(" ").split())


# -- the Emails report, its CSV and JSON -----------------------------------------------------


def test_a_rate_is_a_share_of_the_measured_recipients_delivered_to(staff, news):
    [row] = staff.get("/api/reports/emails").json["rows"]
    assert (row["recipients"], row["delivered"], row["measured"], row["unmeasured"]) == (9, 8, 3, 5)
    # 1 of 3 measured opened, 2 of 3 loaded: not 1 of 8 delivered, and una's stale count adds nothing.
    assert (row["opened"], row["open_rate"], row["loaded"], row["load_rate"]) == (1, 33.3, 2, 66.7)
    assert (row["accesses"], row["human_opens"], row["clicks"]) == (3, 2, 0)
    assert (row["anonymous_loads"], row["anonymous_human_loads"], row["anonymous_clicks"]) == (12, 6, 1)


def test_the_emails_report_page_names_each_rates_base_and_shows_anonymous_figures_apart(staff, news):
    page = staff.get("/reports/emails")
    headers = [words(th) for th in page.html.select("thead th")]
    cells = dict(zip(headers, (words(td) for td in page.html.select("tbody tr td")), strict=True))
    assert cells["Open rate (% of measured)"] == "33.3% of 3 measured recipients"
    assert cells["Load rate (% of measured)"] == "66.7% of 3 measured recipients"
    assert (cells["Measured recipients"], cells["Unmeasured recipients"]) == ("3", "5")
    assert (cells["Anonymous loads"], cells["Anonymous likely-human loads"], cells["Anonymous clicks"]) == \
        ("12", "6", "1")
    assert "Rates are shares of the measured recipients" in words(page.html.find(id="report-summary"))


def test_the_emails_csv_carries_the_base_and_the_anonymous_columns(staff, news):
    body = staff.get("/reports/emails.csv").body.decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(body)))
    assert {key: row[key] for key in ("Delivered", "Measured recipients", "Opened", "Open rate (% of measured)",
                                      "Unmeasured recipients", "Anonymous loads", "Anonymous likely-human loads",
                                      "Anonymous clicks")} == {
        "Delivered": "8", "Measured recipients": "3", "Opened": "1", "Open rate (% of measured)": "33.3",
        "Unmeasured recipients": "5", "Anonymous loads": "12", "Anonymous likely-human loads": "6",
        "Anonymous clicks": "1"}


def test_anonymous_totals_are_left_empty_under_a_filter_on_recipients(staff, news):
    """They belong to no recipient: a status or record type filter cannot apply to them."""
    [row] = staff.get("/api/reports/emails", params={"status": "sent"}).json["rows"]
    assert (row["measured"], row["unmeasured"], row["anonymous_loads"]) == (3, 5, None)
    [row] = list(csv.DictReader(io.StringIO(
        staff.get("/reports/emails.csv", params={"record_type": "contact"}).body.decode("utf-8-sig"))))
    assert (row["Measured recipients"], row["Opened"], row["Open rate (% of measured)"], row["Anonymous loads"]) == \
        ("1", "1", "100.0", "")


def test_an_email_with_no_measured_recipient_has_no_rate(staff, db, news):
    db.execute(Recipient.__table__.update().where(Recipient.email_id == news.email.id).values(tracked=False))
    db.commit()
    [row] = staff.get("/api/reports/emails").json["rows"]
    assert (row["measured"], row["unmeasured"], row["opened"], row["open_rate"], row["load_rate"]) == \
        (0, 8, 0, None, None)
    assert (row["accesses"], row["anonymous_loads"]) == (0, 12)


# -- the Recipients, Records and Activity reports ---------------------------------------------


def test_the_recipients_report_says_whose_reading_was_measured(staff, news):
    rows = staff.get("/api/reports/recipients", params={"per_page": 50}).json["rows"]
    assert {row["address"]: row["measured"] for row in rows if row["address"] in
            ("ann@example.test", "una@example.test")} == {"ann@example.test": True, "una@example.test": False}
    exported = {row["Address"]: row["Reading measured"] for row in csv.DictReader(io.StringIO(
        staff.get("/reports/recipients.csv").body.decode("utf-8-sig")))}
    assert (exported["ann@example.test"], exported["u1@example.test"]) == ("yes", "no")


def test_the_records_report_ignores_unmeasured_recipients(staff, news):
    rows = staff.get("/api/reports/records", params={"record_type": "contact"}).json["rows"]
    assert [(row["record"], row["emails"], row["opened"], row["accesses"]) for row in rows] == \
        [("Ann Measured", 1, 1, 2)]  # Una, only ever unmeasured, is not in it at all
    header = next(csv.reader(io.StringIO(staff.get("/reports/records.csv").body.decode("utf-8-sig"))))
    assert header[:2] == ["Record", "Measured emails"]


def test_the_activity_report_shows_anonymous_loads_per_day_apart_from_the_measured_accesses(staff, news):
    body = staff.get("/api/reports/activity", params={**WEEK, "per_page": 10}).json
    days = {row["bucket"]: (row["accesses"], row["unique_opens"], row["anonymous_loads"]) for row in body["rows"]}
    assert days["2026-03-02"] == (3, 2, 7) and days["2026-03-03"] == (0, 0, 5) and days["2026-03-04"] == (0, 0, 0)
    assert (body["total_accesses"], body["unique_recipients"], body["anonymous_loads"]) == (3, 2, 12)
    page = staff.get("/reports/activity", params=WEEK)
    assert "3 accesses by 2 measured recipients" in page.html.select_one("svg")["aria-label"]
    assert words(page.html.find(id="anonymous-summary")).startswith(
        "anonymous: 12 loads from unmeasured recipients over these days, not in the chart")
    # The chart draws the measured accesses only.
    bars = [words(bar) for bar in page.html.select("svg rect > title")]
    assert bars[1] == "2026-03-02: 3 accesses, 2 unique opens, 0 clicks"
    activity = list(csv.reader(io.StringIO(staff.get("/reports/activity.csv", params=WEEK).body.decode("utf-8-sig"))))
    assert activity[0][-1] == "Anonymous loads" and activity[2][-1] == "7"


def test_the_activity_report_has_no_anonymous_loads_per_hour_or_under_a_recipient_filter(staff, news):
    by_hour = staff.get("/api/reports/activity", params={"from": "2026-03-02", "to": "2026-03-02", "by": "hour",
                                                          "per_page": 50}).json
    assert {row["anonymous_loads"] for row in by_hour["rows"]} == {None} and by_hour["anonymous_loads"] == 7
    filtered = staff.get("/api/reports/activity", params={**WEEK, "status": "sent"}).json
    assert filtered["anonymous_loads"] is None
    assert "not shown under a filter on recipients" in words(
        staff.get("/reports/activity", params={**WEEK, "status": "sent"}).html.find(id="anonymous-summary"))


# -- the email's page, the email list, the record's page ---------------------------------------


def test_the_email_page_names_the_base_and_shows_anonymous_figures_separately(staff, news):
    page = staff.get(f"/emails/{news.email.id}")
    assert words(page.html.find(id="measured-opens")) == \
        "1 opened, likely by a person (33% of 3 measured recipients); 2 loaded the image at all"
    assert words(page.html.find(id="anonymous")) == \
        "12 anonymous: 12 loads from 5 unmeasured recipients (6 likely-human; 1 click)"
    assert "3 accesses (image loads); 2 likely-human opens" in words(page.html.select_one("ul.stats"))
    recipients = {words(row.select("td")[0]): words(row.select("td")[5])
                  for row in page.html.select("table[aria-labelledby=recipients] tbody tr")}
    assert recipients["u1@example.test"] == "0 (not measured)" and recipients["ann@example.test"] == "2"


def test_the_email_list_shows_opens_of_the_measured_and_anonymous_loads_apart(staff, news):
    cells = [words(td) for td in staff.get("/emails").html.select("tbody tr td")]
    assert cells[5:11] == ["9", "1 of 3 measured recipients", "3", "2", "0 0 likely human",
                           "12 from 5 unmeasured recipients"]


def test_an_email_whose_recipients_are_all_measured_shows_no_anonymous_line(staff, db, news):
    db.execute(Recipient.__table__.update().where(Recipient.email_id == news.email.id).values(tracked=True))
    db.execute(AnonymousTotal.__table__.delete())
    db.commit()
    page = staff.get(f"/emails/{news.email.id}")
    assert page.html.find(id="anonymous") is None
    assert "(not measured)" not in page.text


# -- notifications ----------------------------------------------------------------------------


def test_notifications_tell_of_measured_recipients_only(app, db, news):
    assert notifications.notify(app.Session, app.config) == 1
    db.expire_all()
    assert [n.recipient.address for n in db.scalars(select(Notification))] == ["ann@example.test"]
    assert notifications.notify(app.Session, app.config) == 0  # una's stale open is never told


def test_a_records_related_list_says_not_measured_instead_of_showing_zeros(staff, db, users, news):
    again = Email(subject="Later", html_body="<p>x</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT, created_at=SENT)
    again.recipients = [Recipient(address="una@example.test", token="token-una-later", status="sent", tracked=True,
                                  contact_id=news.una.id)]
    db.add(again)
    db.commit()
    rows = {words(row.select("td")[0]): [words(td) for td in row.select("td")[4:8]]
            for row in staff.get(f"/contacts/{news.una.id}").html.select("table[aria-labelledby=emails] tbody tr")}
    assert rows == {"News": ["not measured", "—", "—", "—"], "Later": ["0", "0", "—", "0"]}
    [ann_row] = staff.get(f"/contacts/{news.ann.id}").html.select("table[aria-labelledby=emails] tbody tr")
    assert [words(td) for td in ann_row.select("td")[4:6]] == ["2", "2"]


def test_the_api_gives_each_email_s_measured_base_and_its_anonymous_totals_apart(staff, news):
    listed = staff.get("/api/emails").json["emails"]
    summary = next(email for email in listed if email["id"] == news.email.id)
    detail = staff.get(f"/api/emails/{news.email.id}").json
    for shown in (summary, detail):
        assert (shown["measured"], shown["unmeasured"], shown["opened"]) == (3, 5, 1)
        assert shown["anonymous"] == {"loads": 12, "human_loads": 6, "clicks": 1}
