"""Segment counts over 100,000 contacts (with their accounts, 200,000 recipients, their opens, opt-outs and
consents); run by scripts/bench-segments.  Each segment is counted as its list and the compose page count
it (records/segments.py:count, one query): median and worst of the runs; the last line is
segment_count_ms=<the slowest segment's median>.  Goal: under 300 ms."""

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta

from sqlalchemy import insert

from coretrack.app import CoreTrack
from coretrack.config import Config
from coretrack.models import AccessEvent, Account, Address, Contact, Email, Recipient, Segment, User
from coretrack.records import segments
from coretrack.schema import upgrade

parser = argparse.ArgumentParser(prog="bench-segments")
parser.add_argument("--contacts", type=int, default=100_000)
parser.add_argument("--runs", type=int, default=10, help="timed counts per segment (after one warm-up)")
parser.add_argument("--database-url", default="", help="an empty database (default: SQLite in a temporary directory)")
options = parser.parse_args()

NOW = datetime.utcnow().replace(microsecond=0)
PER_EMAIL = 2_000
random.seed(26)
home = tempfile.mkdtemp(prefix="coretrack-bench-segments-")
url = options.database_url or f"sqlite:///{home}/coretrack.db"
config = Config.from_env({"CORETRACK_HOME": home, "CORETRACK_DATABASE_URL": url,
                          "CORETRACK_PUBLIC_URL": "http://127.0.0.1:8080"})
config.prepare_home()
upgrade(url)
app = CoreTrack(config)


def bulk(connection, model, rows, batch=20_000):
    for start in range(0, len(rows), batch):
        connection.execute(insert(model), rows[start:start + batch])


def fill() -> None:
    contacts, accounts = options.contacts, max(1, options.contacts // 50)
    emails = max(2, contacts * 2 // PER_EMAIL)
    with app.engine.begin() as connection:
        connection.execute(insert(User).values(id=1, name="bench", role="staff", active=True, created_at=NOW))
        bulk(connection, Account, [{"id": n, "name": f"Account {n}", "email": f"info@account{n}.test", "phone": "",
                                    "website": f"https://account{n}.{'es' if n % 10 == 0 else 'test'}",
                                    "email_opt_out": False, "created_at": NOW} for n in range(1, accounts + 1)])
        bulk(connection, Contact, [{"id": n, "first_name": f"First{n}", "last_name": f"Last{n}",
                                    "email": f"c{n}@example.test", "phone": "", "email_opt_out": False,
                                    "created_at": NOW - timedelta(days=n % 700),
                                    "account_id": random.randint(1, accounts) if n % 5 else None}
                                   for n in range(1, contacts + 1)])
        bulk(connection, Address, [{"address": f"c{n}@example.test",
                                    "opted_out_at": NOW if n % 20 == 0 else None,
                                    "consent": "granted" if n % 5 == 1 else ("refused" if n % 50 == 2 else "")}
                                   for n in range(1, contacts + 1) if n % 20 == 0 or n % 5 == 1 or n % 50 == 2])
        sent = [NOW - timedelta(days=random.randint(0, 365)) for _ in range(emails)]
        bulk(connection, Email, [{"id": n + 1, "subject": f"Email {n}", "html_body": "<p>x</p>", "text_body": "",
                                  "sender_id": 1, "from_address": "crm@example.test", "status": "sent",
                                  "tracking": True, "created_at": sent[n], "sent_at": sent[n]} for n in range(emails)])
        recipients, events = [], []
        for n in range(emails * PER_EMAIL):
            email = n // PER_EMAIL
            opened = random.random() < .3
            at = sent[email] + timedelta(hours=random.randint(1, 200)) if opened else None
            recipients.append({"id": n + 1, "email_id": email + 1, "address": "",
                               "contact_id": random.randint(1, contacts), "token": f"t{n}", "status": "sent",
                               "sent_at": sent[email], "first_human_at": at,
                               "human_opens": int(opened), "access_count": int(opened), "human_clicks": 0})
            if opened:
                events.append({"recipient_id": n + 1, "at": at, "verdict": "human"})
        bulk(connection, Recipient, recipients)
        bulk(connection, AccessEvent, events)


SEGMENTS = {
    "Spain, opened nothing in 90 days": [{"field": "account.website", "op": "ends_with", "value": ".es"},
                                         {"field": "opened", "op": "not_within_days", "value": "90"}],
    "did not open email 1": [{"field": "opened", "op": "not_email", "value": "1"}],
    "opened in the last 30 days, not opted out": [{"field": "opened", "op": "within_days", "value": "30"},
                                                  {"field": "opted_out", "op": "no"}],
    "consent granted, name contains 7": [{"field": "consent", "op": "is", "value": "granted"},
                                         {"field": "last_name", "op": "contains", "value": "7"}],
    "everyone not opted out": [{"field": "opted_out", "op": "no"}],
}


def main() -> None:
    started = time.perf_counter()
    fill()
    print(f"filled {options.contacts:,} contacts in {time.perf_counter() - started:.1f} s ({app.engine.dialect.name})")
    medians = []
    with app.Session() as session:
        for name, conditions in SEGMENTS.items():
            segment = Segment(name=name, record_type="contact", conditions=json.dumps(conditions), shared=True)
            timings, count = [], 0
            for run in range(options.runs + 1):
                start = time.perf_counter()
                count = segments.count(session, segment)
                if run:
                    timings.append((time.perf_counter() - start) * 1000)
            medians.append(statistics.median(timings))
            print(f"{name}: {count:,} contacts, median {medians[-1]:.1f} ms, worst {max(timings):.1f} ms")
    app.engine.dispose()
    shutil.rmtree(home, ignore_errors=True)
    print(f"segment_count_ms={max(medians):.1f}")


main()
