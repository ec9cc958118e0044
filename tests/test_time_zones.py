"""Time zones: each user reads times in their own zone (else the install's), on pages, in CSV files
and charts, and every one of them says which; the JSON API stays in UTC."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import datetime

import pytest
from sqlalchemy import select

from coretrack.models import AccessEvent, Email, Recipient, User
from coretrack.settings import SettingsService

# 23:30 UTC on 15 January: already the 16th in Paris (UTC+1), still the 15th in New York (UTC-5).
SENT = datetime(2026, 1, 15, 23, 30)


@pytest.fixture
def sent(db, users) -> Email:
    email = Email(subject="Late news", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent", created_at=SENT, sent_at=SENT)
    recipient = Recipient(address="ann@example.test", token=secrets.token_urlsafe(24), status="sent",
                          access_count=1, first_access=SENT, last_access=SENT)
    email.recipients = [recipient]
    db.add(email)
    db.flush()
    db.add(AccessEvent(recipient_id=recipient.id, at=SENT, user_agent="Thunderbird"))
    db.commit()
    return email


def choose(client, time_zone: str, status: int = 303):
    form = client.get("/account").forms["account-form"]
    form["time_zone"].force_value(time_zone)
    return form.submit(status=status)


def shown_times(page) -> list[str]:
    return [element.text for element in page.html.select("main time")]


def test_a_user_picks_a_time_zone_on_their_account_page_and_pages_show_times_in_it(staff, db, sent):
    page = staff.get(f"/emails/{sent.id}")
    assert "2026-01-15 23:30" in shown_times(page)  # the install's zone: UTC by default
    assert "times in UTC" in page.html.select_one(".whoami").text
    choose(staff, "Europe/Paris").follow()
    page = staff.get(f"/emails/{sent.id}")
    assert "2026-01-16 00:30" in shown_times(page) and "2026-01-15 23:30" not in shown_times(page)
    assert "times in Europe/Paris" in page.html.select_one(".whoami").text
    # The machine-readable time stays UTC.
    assert page.html.select_one("main time")["datetime"] == "2026-01-15T23:30:00Z"
    assert db.scalar(select(User.time_zone).where(User.name == "sam")) == "Europe/Paris"


def test_without_a_choice_of_their_own_users_get_the_install_zone_from_the_configuration_editor(
        staff, admin, db, config, sent):
    SettingsService(db, config).update({"time_zone": "America/New_York"}, "admin")
    assert "2026-01-15 18:30" in shown_times(staff.get(f"/emails/{sent.id}"))
    choose(admin, "Asia/Kolkata")  # one user's choice is theirs only
    assert "2026-01-15 18:30" in shown_times(staff.get(f"/emails/{sent.id}"))
    assert "2026-01-16 05:00" in shown_times(admin.get(f"/emails/{sent.id}"))
    choose(admin, "")  # back to the install's
    assert "2026-01-15 18:30" in shown_times(admin.get(f"/emails/{sent.id}"))


def test_an_unknown_zone_is_refused_and_nothing_changes(staff, db):
    page = choose(staff, "Mars/Olympus_Mons", status=400)
    assert "choose a time zone from the list" in page.html.select_one("#e-time_zone").text
    assert db.scalar(select(User.time_zone).where(User.name == "sam")) == ""


def test_the_account_form_needs_its_csrf_token(staff, db):
    staff.post("/account", {"time_zone": "Europe/Paris"}, status=403)
    assert db.scalar(select(User.time_zone).where(User.name == "sam")) == ""


def test_the_configuration_editor_accepts_only_real_zones(admin, db, config):
    form = admin.get("/settings").forms["settings-form"]
    form["time_zone"].force_value("Nowhere/Town")
    form.submit(status=400)
    assert SettingsService(db, config).get("time_zone") == "UTC"


def test_csv_files_are_in_the_users_zone_and_their_headers_say_which(staff, sent):
    choose(staff, "Europe/Paris")
    rows = list(csv.reader(io.StringIO(staff.get("/reports/emails.csv").body.decode("utf-8-sig"))))
    header = rows[0]
    last_access = header.index("Last access (Europe/Paris)")
    assert header[2] == "Sent at (Europe/Paris)"
    assert rows[1][2] == "2026-01-16 00:30:00" and rows[1][last_access] == "2026-01-16 00:30:00"


def test_the_api_stays_in_utc_whatever_the_users_zone(staff, sent):
    choose(staff, "Europe/Paris")
    body = staff.get(f"/api/emails/{sent.id}").json
    assert body["sent_at"] == "2026-01-15T23:30:00Z"
    rows = staff.get("/api/reports/activity", params={"from": "2026-01-15", "to": "2026-01-16"}).json["rows"]
    assert [(row["bucket"], row["accesses"]) for row in rows] == [("2026-01-15", 1), ("2026-01-16", 0)]


def test_date_filters_and_the_activity_days_are_the_users_days(staff, sent):
    choose(staff, "Europe/Paris")
    activity = staff.get("/reports/activity.csv", params={"from": "2026-01-15", "to": "2026-01-16"})
    rows = list(csv.reader(io.StringIO(activity.body.decode("utf-8-sig"))))
    assert rows == [["Time (Europe/Paris)", "Accesses", "Unique opens", "Likely-human opens", "Clicks",
                     "Likely-human clicks", "Anonymous loads"],
                    ["2026-01-15", "0", "0", "0", "0", "0", "0"], ["2026-01-16", "1", "1", "1", "0", "0", "0"]]
    # The email list's days too: sent on the 16th in Paris.
    listed = staff.get("/emails", params={"from": "2026-01-16", "to": "2026-01-16"})
    assert "Late news" in listed.text
    assert "Late news" not in staff.get("/emails", params={"from": "2026-01-15", "to": "2026-01-15"}).text
    page = staff.get("/reports/activity", params={"from": "2026-01-15", "to": "2026-01-16"})
    assert page.html.select_one("#report-summary").text.startswith(
        "Accesses and unique opens per day, 2026-01-15 to 2026-01-16 (Europe/Paris): 1 accesses")


def test_hourly_activity_follows_the_clock_changes_of_the_users_zone(staff, db, users, sent):
    choose(staff, "Europe/Paris")
    # Clocks go forward on 29 March 2026 (a 23-hour day) and back on 25 October (25 hours).
    for day, hours in (("2026-03-29", 23), ("2026-10-25", 25)):
        body = staff.get("/reports/activity.csv", params={"from": day, "to": day, "by": "hour"}).body
        buckets = [row[0] for row in csv.reader(io.StringIO(body.decode("utf-8-sig")))][1:]
        assert len(buckets) == len(set(buckets)) == hours, buckets
        if day == "2026-03-29":
            assert "2026-03-29 02:00 CET" not in buckets  # that hour does not exist in Paris that day
            assert buckets[:3] == ["2026-03-29 00:00 CET", "2026-03-29 01:00 CET", "2026-03-29 03:00 CEST"]
        else:
            assert buckets[2:4] == ["2026-10-25 02:00 CEST", "2026-10-25 02:00 CET"]
