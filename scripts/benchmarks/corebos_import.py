"""coreBOS import at an install's size; run by scripts/bench-import.

Builds a coreBOS-shaped MariaDB (coreBOS's own tables: tests/support/corebos_schema.py) of 100,000
contacts, 10,000 accounts, 20,000 leads, 5,000 emails, 500,000 recipients and 2,000,000 access rows
(``--rows`` scales it all: the access rows wanted), filled with bulk inserts in the shape coreBOS's
statements leave (idlists, to_email, TrackAccess.php's counts), then imports it with
``coretrack import corebos`` into SQLite and into PostgreSQL (when ``--postgres-url`` names an empty
database), each in a process of its own, and once more (a re-run that adds nothing).  Prints per target
the seconds, access rows per second and the import's peak RSS; the last line is ``rows_per_s=`` (into
PostgreSQL when it ran, else SQLite)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from support.corebos_db import ADMIN, FIELD, CoreBOSDatabase  # noqa: E402
from support.corebos_schema import statement  # noqa: E402
from support.mariadb import running_mariadb  # noqa: E402

SIZES = {"contacts": 100_000, "accounts": 10_000, "leads": 20_000, "emails": 5_000, "recipients": 500_000,
         "opens": 2_000_000}
CHUNK = 10_000
START = datetime(2024, 1, 1, 8, 0)
MEMORY_GOAL_MB = 300


def sizes(rows: int) -> dict[str, int]:
    scale = rows / SIZES["opens"]
    found = {name: max(1, round(size * scale)) for name, size in SIZES.items()}
    found["recipients"] = min(found["recipients"], found["emails"] * (found["contacts"] + found["accounts"]))
    return found


def insert(crm: CoreBOSDatabase, table: str, columns: tuple[str, ...], rows) -> None:  # type: ignore[no-untyped-def]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    batch = []
    with crm.connection.cursor() as cursor:
        for row in rows:
            batch.append(row)
            if len(batch) >= CHUNK:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)


def fill(crm: CoreBOSDatabase, size: dict[str, int]) -> None:
    """The install: records, emails sent to them (mailsend.php's shape) and their opens (TrackAccess.php's)."""
    rng = random.Random(23)
    crm.run("SET SESSION foreign_key_checks = 0, unique_checks = 0")
    kinds = [("account", size["accounts"]), ("contact", size["contacts"]), ("lead", size["leads"])]
    crmid, records = 100, []
    entities = []
    for kind, number in kinds:
        for _ in range(number):
            crmid += 1
            records.append((kind, crmid))
            entities.append((crmid, ADMIN, ADMIN, {"account": "Accounts", "contact": "Contacts", "lead": "Leads"}[kind],
                             "", ADMIN, START, START))
    mail_ids = list(range(crmid + 1, crmid + 1 + size["emails"]))
    entities += [(mailid, ADMIN, ADMIN, "Emails", "<p>Offer</p>", ADMIN, START, START) for mailid in mail_ids]
    insert(crm, "vtiger_crmentity", ("crmid", "smcreatorid", "smownerid", "setype", "description", "modifiedby",
                                     "createdtime", "modifiedtime"), entities)
    crm.run(statement("sequence_create", "vtiger_crmentity_seq"))
    crm.run(statement("sequence_start", "vtiger_crmentity_seq", str(mail_ids[-1])))
    insert(crm, "vtiger_account", ("accountid", "account_no", "accountname", "email1", "phone", "emailoptout"),
           ((crmid, f"ACC{crmid}", f"Account {crmid}", f"info@a{crmid}.example", "+34 600", "0")
            for kind, crmid in records if kind == "account"))
    accounts = [crmid for kind, crmid in records if kind == "account"]
    insert(crm, "vtiger_contactdetails", ("contactid", "contact_no", "accountid", "firstname", "lastname", "email",
                                          "phone", "emailoptout"),
           ((crmid, f"CON{crmid}", rng.choice(accounts), "Ada", f"Lovelace {crmid}", f"c{crmid}@example.test",
             "+34 601", "1" if crmid % 50 == 0 else "0") for kind, crmid in records if kind == "contact"))
    leads = [crmid for kind, crmid in records if kind == "lead"]
    insert(crm, "vtiger_leaddetails", ("leadid", "lead_no", "email", "firstname", "lastname", "company", "emailoptout"),
           ((crmid, f"LEA{crmid}", f"l{crmid}@example.test", "Grace", f"Hopper {crmid}", "Navy", "0")
            for crmid in leads))
    insert(crm, "vtiger_leadaddress", ("leadaddressid", "phone"), ((crmid, "+34 602") for crmid in leads))
    address = {"account": "info@a{}.example", "contact": "c{}@example.test", "lead": "l{}@example.test"}
    primary = {"account": FIELD[("account", "email1")], "contact": FIELD[("contact", "email")],
               "lead": FIELD[("lead", "email")]}
    per_email = max(1, size["recipients"] // size["emails"])
    pairs = []
    activities, details, links = [], [], []
    for mailid in mail_ids:
        sent = START + timedelta(minutes=7 * (mailid - mail_ids[0]))
        chosen = rng.sample(records, min(per_email, len(records)))
        pairs += [(crmid, mailid) for _, crmid in chosen]
        activities.append((mailid, f"Offer {mailid}", "Emails", sent.date(), sent.strftime("%H:%M")))
        to = json.dumps([address[kind].format(crmid) for kind, crmid in chosen])
        idlists = "".join(f"{crmid}@{primary[kind]}|" for kind, crmid in chosen)
        details.append((mailid, "admin@example.test", to, '[""]', '[""]', idlists, "SENT"))
        links += [(crmid, mailid) for _, crmid in chosen]
    insert(crm, "vtiger_activity", ("activityid", "subject", "activitytype", "date_start", "time_start"), activities)
    insert(crm, "vtiger_emaildetails", ("emailid", "from_email", "to_email", "cc_email", "bcc_email", "idlists",
                                        "email_flag"), details)
    insert(crm, "vtiger_seactivityrel", ("crmid", "activityid"), links)
    opens: dict[tuple[int, int], int] = {}
    for _ in range(size["opens"]):
        pair = pairs[rng.randrange(len(pairs))]
        opens[pair] = opens.get(pair, 0) + 1
    # TrackAccess.php: 1 for a first open, then the rows plus one.
    insert(crm, "vtiger_email_track", ("crmid", "mailid", "access_count"),
           ((crmid, mailid, n if n == 1 else n + 1) for (crmid, mailid), n in opens.items()))
    insert(crm, "vtiger_email_access", ("crmid", "mailid", "accessdate", "accesstime"),
           ((crmid, mailid, (START + timedelta(days=(crmid + index) % 300)).date(),
             f"{(crmid + index) % 24:02d}:{index % 60:02d}:{mailid % 60:02d}")
            for (crmid, mailid), n in opens.items() for index in range(n)))


def import_into(url: str, database_url: str, home: Path) -> tuple[float, float, str]:
    """One run of the command in a process of its own: (seconds, its peak RSS in MB, its output)."""
    environ = {"CORETRACK_HOME": str(home), "CORETRACK_DATABASE_URL": database_url, "CORETRACK_CONFIG": "",
               "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", "from coretrack.cli import main; main()"]
    subprocess.run([*command, "db", "upgrade"], env=environ, check=True, capture_output=True)
    output = home / "import.out"
    started = time.perf_counter()
    with open(output, "wb") as handle:
        process = subprocess.Popen([*command, "import", "corebos", "--from", url, "--time-zone", "Europe/Madrid"],
                                   env=environ, stdout=handle, stderr=subprocess.STDOUT)
        # Its own peak RSS (the kernel's, in KB), not the largest of every child so far.
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    text = output.read_text()
    assert os.waitstatus_to_exitcode(status) == 0, text
    return seconds, usage.ru_maxrss / 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench-import")
    parser.add_argument("--rows", type=int, default=SIZES["opens"], help="access rows (the rest scaled alike)")
    parser.add_argument("--postgres-url", default="", help="an empty PostgreSQL database to import into too")
    options = parser.parse_args()
    size = sizes(options.rows)
    print("coreBOS: " + ", ".join(f"{name} {number:,}" for name, number in size.items()), flush=True)
    root = Path(tempfile.mkdtemp(prefix="coretrack-bench-import-"))
    try:
        with running_mariadb(root / "mariadb") as server:
            crm = CoreBOSDatabase(server, "corebos_bench", "current")
            started = time.perf_counter()
            fill(crm, size)
            crm.close()
            print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
            targets = [("sqlite", f"sqlite:///{root}/coretrack.db")]
            if options.postgres_url:
                targets.append(("postgresql", options.postgres_url))
            rates = {}
            for name, database_url in targets:
                home = root / f"home-{name}"
                home.mkdir()
                seconds, peak, output = import_into(crm.url, database_url, home)
                assert f"events: {size['opens']} in coreBOS, imported {size['opens']} new" in output, output
                again, again_peak, output = import_into(crm.url, database_url, home)
                assert "recipients: " in output and output.count("imported 0 new") == 8, output
                rates[name] = size["opens"] / seconds
                print(f"{name}: {seconds:.1f} s, {rates[name]:,.0f} access rows/s, peak RSS {peak:.0f} MB "
                      f"(goal < {MEMORY_GOAL_MB}); re-run {again:.1f} s (goal < 60), peak RSS {again_peak:.0f} MB",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"rows_per_s={rates.get('postgresql', rates['sqlite']):.0f}")


if __name__ == "__main__":
    main()
