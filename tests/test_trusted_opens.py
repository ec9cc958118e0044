"""Opens people can trust: every load is kept and counted, each with its verdict and reason, and
the likely-human ones counted apart (tracking.classify, applied by count_hits on every hit path)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from coretrack.db import make_engine
from coretrack.delivery_reports import sendgrid
from coretrack.models import AccessEvent, Contact, Email, Recipient
from coretrack.schema import upgrade
from coretrack.tracking import tokens
from coretrack.tracking.hits import Hit

SENT = datetime(2026, 11, 2, 9, 0)
LATER = SENT + timedelta(hours=2)
READER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0")
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
AT_DELIVERY = SENT + timedelta(seconds=30)


@pytest.fixture
def recipient(app, db, users):
    email = Email(subject="Hello", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT)
    email.recipients = [Recipient(address="ann@example.test", token=tokens.new_token(app.secret), status="sent",
                                  sent_at=SENT)]
    db.add(email)
    db.commit()
    return email.recipients[0]


def judged(app, db, recipient, hit_kwargs):
    """The stored verdict and reason of one load, and the recipient's two counts after it."""
    hit = Hit(recipient.token, **{"at": LATER, "ip": "198.51.100.7", "user_agent": READER, **hit_kwargs})
    app.tracker.record([hit])
    db.expire_all()
    event = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id)).one()
    row = db.get(Recipient, recipient.id)
    return event.verdict, event.reason, row.access_count, row.human_opens, row.first_human_at


@pytest.mark.parametrize(
    "hit, verdict, reason",
    [
        ({"user_agent": GMAIL_PREFETCH, "at": AT_DELIVERY}, "mail_proxy", "Google image proxy: fetched at delivery"),
        ({"user_agent": YAHOO, "at": AT_DELIVERY}, "mail_proxy", "Yahoo image proxy: fetched at delivery"),
        ({"user_agent": "Mozilla/5.0 (Windows NT 10.0) Outlook-Image-Proxy", "at": AT_DELIVERY}, "mail_proxy",
         "Outlook image proxy: fetched at delivery"),
        ({"user_agent": "Mozilla/5.0"}, "privacy_prefetch", "Apple Mail Privacy Protection's bare agent"),
        ({"ip": "17.58.101.4"}, "privacy_prefetch",
         "Apple Mail Privacy Protection: Apple's relay, Mail's agent"),
        ({"ip": "172.225.10.20"}, "privacy_prefetch",
         "Apple Mail Privacy Protection: Apple's relay, Mail's agent"),
        ({"ip": "205.139.110.9"}, "scanner", "a mail security gateway's network"),
        ({"user_agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}, "scanner", "security scanner's agent"),
        ({"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/119.0"},
         "scanner", "headless browser"),
        ({"at": SENT + timedelta(seconds=3), "user_agent": FIREFOX}, "scanner", "loaded within seconds of the send"),
        ({"provider_verdict": sendgrid.MACHINE_OPEN}, "mail_proxy", "SendGrid sg_machine_open"),
    ],
)
def test_a_machine_load_is_counted_and_kept_with_its_reason_but_is_no_human_open(app, db, recipient, hit, verdict,
                                                                                  reason):
    assert judged(app, db, recipient, hit) == (verdict, reason, 1, 0, None)


def test_a_reader_load_later_on_is_a_human_open(app, db, recipient):
    assert judged(app, db, recipient, {}) == ("human", "", 1, 1, LATER)


def test_the_apple_address_is_judged_before_the_storage_policy_truncates_it(app, db, recipient):
    app.settings(db).update({"ip_storage": "truncated"}, "admin")
    verdict, _, _, _, _ = judged(app, db, recipient, {"ip": "17.58.101.4"})
    stored = db.scalar(select(AccessEvent.ip).where(AccessEvent.recipient_id == recipient.id))
    assert (verdict, stored) == ("privacy_prefetch", "17.58.101.0")


def test_at_delivery_means_the_providers_delivery_time_when_it_reported_one(app, db, recipient):
    recipient.delivery_at = SENT + timedelta(minutes=30)
    db.commit()
    verdict, reason, *_ = judged(app, db, recipient, {"at": SENT + timedelta(minutes=30, seconds=20),
                                                      "user_agent": YAHOO})
    assert (verdict, reason) == ("mail_proxy", "Yahoo image proxy: fetched at delivery")


@pytest.mark.parametrize(
    "hit, reason",
    [
        # Gmail's person opening the message 38 minutes later, through the same proxy (mautic#16069).
        ({"user_agent": GMAIL, "at": SENT + timedelta(minutes=38)}, "Google image proxy: opened by a person"),
        # ... or seconds after delivery, from a phone notification: Gmail's delivery fetch has its own agent.
        ({"user_agent": GMAIL, "at": AT_DELIVERY}, "Google image proxy: opened by a person"),
        # A phone notification opened half a minute after the send: a fast reader, not a prefetch.
        ({"at": SENT + timedelta(seconds=30), "ip": "174.200.1.2"}, ""),
        # ... or within seconds, by Mail's own agent: scanners present a browser's or none.
        ({"at": SENT + timedelta(seconds=4), "ip": "174.200.1.2"}, ""),
        # Outlook on the web's images come from Microsoft's network, judged as a proxy: later on, a person.
        ({"ip": "40.97.1.2", "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36"},
         "Microsoft's network, as an image proxy: opened by a person"),
        # Safari through iCloud Private Relay: a person browsing, not Mail's prefetch.
        ({"ip": "172.225.10.20", "user_agent": "Mozilla/5.0 (Macintosh) Version/17.4 Safari/605.1.15"}, ""),
    ],
)
def test_a_persons_load_is_a_human_open_whatever_the_network_it_comes_through(app, db, recipient, hit, reason):
    assert judged(app, db, recipient, hit) == ("human", reason, 1, 1, hit.get("at", LATER))


def test_a_proxy_load_after_its_delivery_fetch_is_the_person_however_soon(app, db, recipient):
    app.tracker.record([Hit(recipient.token, AT_DELIVERY, "66.249.84.1", GMAIL_PREFETCH)])
    # A repeat of the delivery fetch seconds later is the proxy still; the next load is the person opening it.
    app.tracker.record([Hit(recipient.token, AT_DELIVERY + timedelta(seconds=3), "66.249.84.2", GMAIL)])
    app.tracker.record([Hit(recipient.token, AT_DELIVERY + timedelta(seconds=40), "66.249.84.3", GMAIL)])
    db.expire_all()
    events = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id)
                        .order_by(AccessEvent.at)).all()
    assert [event.verdict for event in events] == ["mail_proxy", "mail_proxy", "human"]
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.human_opens, row.first_human_at) == (3, 1, AT_DELIVERY + timedelta(seconds=40))


def test_a_batch_counts_every_load_and_the_human_ones_apart(app, db, recipient):
    app.tracker.record([Hit(recipient.token, LATER, "198.51.100.7", READER),
                        Hit(recipient.token, LATER + timedelta(minutes=1), "198.51.100.7", "Mozilla/5.0"),
                        Hit(recipient.token, LATER + timedelta(minutes=2), "198.51.100.7", READER)])
    app.tracker.record([Hit(recipient.token, LATER + timedelta(minutes=3), "198.51.100.7", READER)])
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.human_opens, row.first_human_at) == (4, 3, LATER)


# -- both counts on every surface ------------------------------------------------------------


@pytest.fixture
def mixed(app, db, users):
    """One email to three contacts: Ann read it (and Apple prefetched it), Bob's copy was only
    loaded by Gmail's prefetch and a scanner, Cy's never loaded."""
    people = [Contact(first_name=name, last_name="Doe", email=f"{name.lower()}@example.test")
              for name in ("Ann", "Bob", "Cy")]
    db.add_all(people)
    db.flush()
    email = Email(subject="Mixed", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=SENT)
    email.recipients = [Recipient(address=person.email, contact_id=person.id, token=tokens.new_token(app.secret),
                                  status="sent", sent_at=SENT) for person in people]
    db.add(email)
    db.commit()
    ann, bob, _ = email.recipients
    app.tracker.record([
        Hit(ann.token, SENT + timedelta(minutes=5), "17.58.101.4", READER),
        Hit(ann.token, LATER, "198.51.100.7", READER),
        Hit(ann.token, LATER + timedelta(hours=1), "198.51.100.7", READER),
        Hit(bob.token, SENT + timedelta(seconds=2), "203.0.113.5", FIREFOX),
        Hit(bob.token, AT_DELIVERY, "66.249.84.1", GMAIL_PREFETCH),
    ])
    return email, people


def test_the_email_page_shows_likely_human_opens_beside_all_loads(staff, mixed):
    email, _ = mixed
    page = staff.get(f"/emails/{email.id}")
    stats = page.html.select_one("ul.stats").text
    assert ("1 opened, likely by a person (33% of 3 measured recipients); 2 loaded the image at all"
            in " ".join(stats.split()))
    assert "5 accesses (image loads); 2 likely-human opens" in " ".join(stats.split())
    rows = {row.select("td")[0].text: [td.text for td in row.select("td")[5:7]]
            for row in page.html.select("table[aria-labelledby=recipients] tbody tr")}
    assert rows == {"ann@example.test": ["3", "2"], "bob@example.test": ["2", "0"], "cy@example.test": ["0", "0"]}
    reasons = [row.select("td")[5].text for row in page.html.select("table[aria-labelledby=accesses] tbody tr")]
    assert sorted(reasons) == sorted(["—", "—", "Apple Mail Privacy Protection: Apple's relay, Mail's agent",
                                      "Google image proxy: fetched at delivery", "loaded within seconds of the send"])


def test_a_records_related_list_shows_both_counts(staff, mixed):
    _, (ann, bob, _) = mixed
    for person, counts in ((ann, ["3", "2"]), (bob, ["2", "0"])):
        row = staff.get(f"/contacts/{person.id}").html.select_one("#emails + .table-wrap tbody tr")
        assert [td.text.strip() for td in row.select("td")][4:6] == counts
        api = staff.get(f"/api/records/contact/{person.id}/emails").json["emails"][0]
        assert (str(api["access_count"]), str(api["human_opens"])) == tuple(counts)


def test_the_api_gives_both_counts_for_the_email_and_each_recipient(staff, mixed):
    email, _ = mixed
    summary = staff.get(f"/api/emails/{email.id}").json
    assert (summary["opened"], summary["loaded"], summary["accesses"], summary["human_opens"]) == (1, 2, 5, 2)
    recipients = {r["address"]: (r["access_count"], r["human_opens"], r["opened_at"])
                  for r in summary["recipient_list"]}
    assert recipients["ann@example.test"] == (3, 2, "2026-11-02T11:00:00Z")
    assert recipients["bob@example.test"] == (2, 0, None)


def test_the_open_rate_counts_likely_human_opens_with_the_load_rate_beside_it(staff, mixed):
    [row] = staff.get("/api/reports/emails").json["rows"]
    assert (row["delivered"], row["opened"], row["open_rate"], row["loaded"], row["load_rate"], row["accesses"],
            row["human_opens"]) == (3, 1, 33.3, 2, 66.7, 5, 2)
    exported = list(csv.DictReader(io.StringIO(staff.get("/reports/emails.csv").body.decode("utf-8-sig"))))
    assert [(r["Opened"], r["Open rate (% of measured)"], r["Loaded the image"], r["Load rate (% of measured)"],
             r["Accesses"], r["Likely-human opens"]) for r in exported] == [("1", "33.3", "2", "66.7", "5", "2")]


def test_the_recipients_and_records_reports_show_both_counts(staff, mixed):
    rows = staff.get("/api/reports/recipients").json["rows"]
    assert sorted((r["address"], r["accesses"], r["human_opens"]) for r in rows) == [
        ("ann@example.test", 3, 2), ("bob@example.test", 2, 0), ("cy@example.test", 0, 0)]
    rows = staff.get("/api/reports/records").json["rows"]
    assert sorted((r["record"], r["opened"], r["loaded"], r["accesses"], r["human_opens"]) for r in rows) == [
        ("Ann Doe", 1, 1, 3, 2), ("Bob Doe", 0, 1, 2, 0), ("Cy Doe", 0, 0, 0, 0)]


def test_the_activity_report_gives_likely_human_opens_beside_all_loads_per_day(staff, mixed):
    rows = staff.get("/api/reports/activity", params={"from": "2026-11-01", "to": "2026-11-03"}).json["rows"]
    assert [(r["bucket"], r["accesses"], r["unique_opens"], r["human_opens"]) for r in rows] == [
        ("2026-11-01", 0, 0, 0), ("2026-11-02", 5, 2, 2), ("2026-11-03", 0, 0, 0)]


def test_a_recipient_made_opened_by_a_click_counts_as_opened_without_a_human_load(app, db, staff, mixed):
    # The clicks feature sets first_human_at for a human click: "opened" follows it.
    email, _ = mixed
    bob = email.recipients[1]
    bob.first_human_at = LATER
    db.commit()
    [row] = staff.get("/api/reports/emails").json["rows"]
    assert (row["opened"], row["human_opens"]) == (2, 2)


def test_the_migration_makes_human_opens_of_the_loads_already_judged_human(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0013")  # the revision before trusted opens
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO users (id, name, role, active, created_at) VALUES (1, 'sam', 'staff', 1, '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO emails (id, subject, html_body, text_body, sender_id, from_address, from_name, reply_to, "
            "status, tracking, created_at) "
            "VALUES (1, 's', '', '', 1, 'a@example.test', '', '', 'sent', 1, '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO recipients (id, email_id, address, name, kind, token, status, reply, attempts, access_count) "
            "VALUES (1, 1, 'ann@example.test', '', 'to', 'tok', 'sent', '', 0, 14)"))
        connection.execute(text(
            "INSERT INTO access_events (recipient_id, at, ip, user_agent, verdict, hits, legacy) VALUES "
            "(1, '2026-01-02', '', 'Thunderbird', 'human', 1, 0), (1, '2026-01-02', '', 'Thunderbird', 'human', 12, 0),"
            "(1, '2026-01-02', '', 'Mozilla/5.0', 'privacy_prefetch', 1, 0)"))
    upgrade(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT access_count, human_opens FROM recipients")).one() == (14, 13)
        assert sorted(connection.execute(text("SELECT verdict, reason FROM access_events")).all()) == [
            ("human", ""), ("human", ""), ("privacy_prefetch", "user agent")]
    engine.dispose()
