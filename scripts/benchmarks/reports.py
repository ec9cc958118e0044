"""Report pages over 100k recipients and 1M access events; run by scripts/bench-reports."""

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from werkzeug.test import Client

from coretrack.app import CoreTrack
from coretrack.config import Config
from coretrack.models import AccessEvent, Account, Contact, Email, Lead, Recipient, User
from coretrack.records import related
from coretrack.schema import upgrade

parser = argparse.ArgumentParser(prog="bench-reports")
parser.add_argument("--recipients", type=int, default=100_000)
parser.add_argument("--events", type=int, default=1_000_000)
parser.add_argument("--runs", type=int, default=20, help="timed requests per page (after 2 warm-ups)")
parser.add_argument("--database-url", default="", help="an empty database (default: SQLite in a temporary directory)")
parser.add_argument("--home", default="", help="keep the data directory here and reuse it when already filled")
options = parser.parse_args()

PER_EMAIL = 50
SENDERS = [f"sender{number:02d}" for number in range(10)]
WORDS = "spring launch news offer invoice webinar update renewal survey welcome quarterly report".split()
NOW = datetime.utcnow().replace(microsecond=0)
random.seed(4)

home = options.home or tempfile.mkdtemp(prefix="coretrack-bench-reports-")
reuse = bool(options.home) and os.path.exists(f"{home}/coretrack.db")
url = options.database_url or f"sqlite:///{home}/coretrack.db"
config = Config.from_env({"CORETRACK_HOME": home, "CORETRACK_DATABASE_URL": url,
                          "CORETRACK_PUBLIC_URL": "http://127.0.0.1:8080"})
config.prepare_home()
upgrade(url)
app = CoreTrack(config)


def bulk(connection, model, rows, batch=50_000):
    for start in range(0, len(rows), batch):
        connection.execute(insert(model), rows[start:start + batch])


def fill():
    emails = max(1, options.recipients // PER_EMAIL)
    contacts, accounts, leads = options.recipients // 5, options.recipients // 50, options.recipients // 20
    with app.engine.begin() as connection:
        bulk(connection, User, [{"name": name, "role": "staff", "active": True, "created_at": NOW}
                                for name in ["bench", *SENDERS]])
        bulk(connection, Account, [{"name": f"Account {n}", "email": f"info@account{n}.test", "phone": "",
                                    "website": "", "email_opt_out": False, "created_at": NOW}
                                   for n in range(1, accounts + 1)])
        bulk(connection, Contact, [{"first_name": f"First{n}", "last_name": f"Last{n}", "email": f"c{n}@example.test",
                                    "phone": "", "email_opt_out": False, "created_at": NOW,
                                    "account_id": random.randint(1, accounts) if n % 5 else None}
                                   for n in range(1, contacts + 1)])
        bulk(connection, Lead, [{"first_name": f"Lead{n}", "last_name": f"Person{n}", "company": "", "phone": "",
                                 "email": f"l{n}@example.test", "email_opt_out": False, "created_at": NOW}
                                for n in range(1, leads + 1)])
        sender_ids = dict(connection.execute(select(User.name, User.id)).all())
        sent = [NOW - timedelta(days=365) + timedelta(seconds=random.randint(0, 365 * 86400)) for _ in range(emails)]
        bulk(connection, Email, [{"id": n + 1, "subject": f"{random.choice(WORDS).title()} {random.choice(WORDS)} #{n}",
                                  "html_body": "<p>x</p>", "text_body": "", "sender_id": sender_ids[SENDERS[n % 10]],
                                  "from_address": "crm@example.test", "from_name": "", "reply_to": "",
                                  "status": "sent", "tracking": True, "created_at": sent[n], "sent_at": sent[n]}
                                 for n in range(emails)])
        # Six in ten delivered recipients open; the events are shared among them, 0 to 30 days after sending.
        recipient_rows, opened = [], []
        for n in range(options.recipients):
            email = n // PER_EMAIL
            kind = random.random()
            contact_id = random.randint(1, contacts) if kind < .7 else None
            account_id = random.randint(1, accounts) if .7 <= kind < .8 else None
            lead_id = random.randint(1, leads) if .8 <= kind < .95 else None
            # The record's name, as compose keeps it on the recipient.
            name = (f"First{contact_id} Last{contact_id}" if contact_id else f"Account {account_id}" if account_id
                    else f"Lead{lead_id} Person{lead_id}" if lead_id else "")
            row = {"id": n + 1, "email_id": email + 1, "address": f"r{n}@example.test", "name": name, "kind": "to",
                   "contact_id": contact_id, "account_id": account_id, "lead_id": lead_id,
                   "token": f"bench-{n}", "status": random.choices(("sent", "failed", "skipped"), (92, 4, 4))[0],
                   "reply": "", "attempts": 1, "claimed_at": None, "sent_at": sent[email],
                   "access_count": 0, "first_access": None, "last_access": None}
            recipient_rows.append(row)
            if row["status"] == "sent" and random.random() < .6:
                opened.append(row)
        events = []
        for _ in range(options.events):
            row = opened[int(len(opened) * random.random() ** 2)]  # some recipients open far more often
            # Mostly within days of sending, never later than 30 days nor in the future.
            window = min(30 * 86400, int((NOW - row["sent_at"]).total_seconds()))
            at = row["sent_at"] + timedelta(seconds=int(random.expovariate(1 / 3 / 86400)) % (window + 1))
            events.append({"recipient_id": row["id"], "at": at, "ip": "192.0.2.0", "user_agent": "Mozilla/5.0 bench",
                           "verdict": "human"})
            row["access_count"] += 1
            row["first_access"] = min(row["first_access"] or at, at)
            row["last_access"] = max(row["last_access"] or at, at)
        bulk(connection, Recipient, recipient_rows)
        bulk(connection, AccessEvent, events)
    if url.startswith("postgresql"):
        with app.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
    else:
        with app.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


started = time.perf_counter()
if reuse:
    print(f"reusing the database in {home}")
else:
    fill()
    print(f"filled {options.recipients} recipients and {options.events} access events in "
          f"{time.perf_counter() - started:.1f} s ({url.split(':')[0]})")

with app.Session() as session:
    busy_contact = session.execute(select(Recipient.contact_id).where(Recipient.contact_id.is_not(None))
                                   .group_by(Recipient.contact_id).order_by(func.count().desc()).limit(1)).scalar()
    busy_account = session.scalar(select(Contact.account_id).where(Contact.id == busy_contact))

client = Client(app)
week_ago = (NOW - timedelta(days=6)).date().isoformat()
PAGES = [
    "/reports/emails",
    "/reports/emails?sort=accesses&order=desc&page=20",
    "/reports/emails?sender=sender03&subject=launch",
    "/reports/recipients",
    "/reports/recipients?sort=accesses&order=desc",
    "/reports/recipients?sort=record&order=asc&page=50",
    "/reports/recipients?status=failed&record_type=lead",
    "/reports/records",
    "/reports/records?record_type=account&sort=record",
    "/reports/records?sender=sender05&from=" + (NOW - timedelta(days=90)).date().isoformat(),
    "/reports/activity",
    f"/reports/activity?by=hour&from={week_ago}",
    "/reports/activity?sender=sender01&record_type=contact",
    "/api/reports/emails?per_page=50",
    "/api/reports/activity",
    f"/contacts/{busy_contact}",
    f"/accounts/{busy_account}",
]


def timed(call):
    samples = []
    for run in range(options.runs + 2):
        started = time.perf_counter()
        call()
        if run >= 2:
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=20, method="inclusive")[18]


def get(path):
    def call():
        response = client.get(path, environ_overrides={"REMOTE_USER": "bench"})
        assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[:500])
        response.get_data()
    return call


def related_emails():
    with app.Session() as session:
        related.related_emails(session, "contact", busy_contact)


results = [(path, *timed(get(path))) for path in PAGES]
results.append((f"records.related_emails(contact {busy_contact})", *timed(related_emails)))
width = max(len(name) for name, *_ in results)
print(f"{'page':<{width}}  median_ms  p95_ms")
for name, median, p95 in results:
    print(f"{name:<{width}}  {median:9.1f}  {p95:6.1f}")
started = time.perf_counter()
size = len(client.get("/reports/recipients.csv", environ_overrides={"REMOTE_USER": "bench"}).get_data())
print(f"(not a page) /reports/recipients.csv: all {options.recipients} rows, {size / 1e6:.1f} MB in "
      f"{time.perf_counter() - started:.2f} s")
app.engine.dispose()
if not options.home:
    shutil.rmtree(home)
print(f"max_median_ms={max(median for _, median, _ in results):.1f}")
