"""``coretrack import corebos``: a real MariaDB holding a small coreBOS (the column names and types
of coreBOS's own tables), imported into SQLite and PostgreSQL, imported again, every count compared."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from support.corebos_db import ADMIN, FIELD, CoreBOSDatabase
from support.mariadb import READER_PASSWORD, MariaDB
from support.ports import free_port

from coretrack import corebos
from coretrack.cli import main
from coretrack.models import AccessEvent, Account, Address, ConsentEvent, Contact, Email, Lead, Recipient
from coretrack.people import suppression
from coretrack.records import csv_import
from coretrack.records.fields import FIELDS
from coretrack.records.store import clean_value, form_values
from coretrack.tracking import corebos_images
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hits import Hit

APP_KEY = "4a1b2c3d4e5f60718293a4b5c6d7e8f9"
START = datetime(2025, 3, 1, 9, 0)


@dataclass
class CoreBOS:
    """A coreBOS database (support/corebos_db.py: coreBOS's tables, filled through its own statements)
    and what the tests wrote into it."""

    db: CoreBOSDatabase
    live: dict[str, set[int]] = field(default_factory=lambda: {"account": set(), "contact": set(), "lead": set()})
    emails: set[int] = field(default_factory=set)
    employer: dict[int, int] = field(default_factory=dict)  # contactid -> accountid
    opted_out: set[int] = field(default_factory=set)
    addresses: dict[int, str] = field(default_factory=dict)
    links: set[tuple[int, int]] = field(default_factory=set)
    clock: datetime = START
    serial: int = 0

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def name(self) -> str:
        return self.db.name

    def execute(self, statement: str, *rows: tuple) -> None:
        """A statement of the test's own (a change coreBOS's code would not make: a customised install)."""
        with self.db.connection.cursor() as cursor:
            cursor.executemany(statement, rows) if rows else cursor.execute(statement)

    def tick(self, **delta: float) -> datetime:
        self.clock += timedelta(**delta) if delta else timedelta(hours=1)
        return self.clock

    def record(self, kind: str, rng: random.Random, deleted: bool = False, converted: bool = False) -> int:
        optout = rng.random() < 0.1
        at = self.tick()
        self.serial += 1
        number = self.serial
        address = f"{kind}{number}@example.test"
        flag = "1" if optout else "0"
        if kind == "account":
            crmid = self.db.record("account", at, {"accountname": f"Account {number}", "email1": address,
                                                   "phone": "+34 600", "website": "https://example.test",
                                                   "emailoptout": flag})
        elif kind == "contact":
            accounts = sorted(self.live["account"])
            employer = rng.choice(accounts) if accounts and rng.random() < 0.7 else None
            crmid = self.db.record("contact", at, {"accountid": employer, "firstname": "Ada",
                                                   "lastname": f"Lovelace {number}", "email": address,
                                                   "phone": "+34 601", "emailoptout": flag})
            if employer and not deleted:
                self.employer[crmid] = employer
        else:
            crmid = self.db.record("lead", at, {"email": address, "firstname": "Grace", "lastname": f"Hopper {number}",
                                                "company": "Navy", "emailoptout": flag})
        if deleted:
            self.db.delete(crmid, self.tick())
        if converted:
            self.db.run("UPDATE vtiger_leaddetails SET converted = 1 WHERE leadid = %s", (crmid,))
        if not (deleted or converted):
            self.live[kind].add(crmid)
            self.addresses[crmid] = address
            if optout:
                self.opted_out.add(crmid)
        return crmid

    def field_of(self, crmid: int) -> int:
        kind = next((kind for kind, ids in self.live.items() if crmid in ids), None)
        if kind is None:  # deleted or converted: what coreBOS mailed it at before
            (setype,) = self.db.query("SELECT setype FROM vtiger_crmentity WHERE crmid = %s", (crmid,))[0]
            kind = {"Accounts": "account", "Contacts": "contact", "Leads": "lead"}[setype]
        return FIELD[(kind, "email1" if kind == "account" else "email")]

    def address_of(self, crmid: int) -> str:
        for table, key, column in (("vtiger_account", "accountid", "email1"),
                                   ("vtiger_contactdetails", "contactid", "email"),
                                   ("vtiger_leaddetails", "leadid", "email")):
            found = self.db.query(f"SELECT {column} FROM {table} WHERE {key} = %s", (crmid,))  # noqa: S608
            if found:
                return str(found[0][0])
        raise KeyError(crmid)

    def email(self, rng: random.Random, recipients: list[int], deleted: bool = False, kind: str = "Emails",
              owner: int = ADMIN) -> int:
        """An email saved, sent (mailsend.php) and opened by some (TrackAccess.php), as coreBOS does it."""
        saved = self.tick()
        if kind != "Emails":  # a call: an activity of another type, linked the same way
            mailid = self.db.entity("Calendar", saved)
            self.db.insert("vtiger_activity", {"activityid": mailid, "subject": "Call", "activitytype": kind,
                                               "date_start": saved.date(), "time_start": "10:15"})
            for crmid in recipients:
                self.db.run("insert into vtiger_seactivityrel values(%s,%s)", (crmid, mailid))
            return mailid
        mailid = self.db.email(saved, owner, f"Offer {saved:%d%H}", "<p>Hello from coreBOS</p>",
                               [(crmid, self.field_of(crmid), self.address_of(crmid)) for crmid in recipients])
        self.db.send(mailid, owner, saved)
        for crmid in recipients:
            for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
                self.db.open(crmid, mailid, self.tick(minutes=7))
            if crmid in self.addresses:
                self.links.add((crmid, mailid))
        if deleted:
            self.db.delete(mailid, self.tick())
            self.links -= {(crmid, mailid) for crmid in recipients}
        else:
            self.emails.add(mailid)
        return mailid

    @property
    def counts(self) -> dict[tuple[int, int], int]:
        found = self.db.counts()
        return {pair: found.get(pair, 0) for pair in self.links}

    @property
    def accesses(self) -> dict[tuple[int, int], int]:
        found = self.db.accesses()
        return {pair: found.get(pair, 0) for pair in self.links}


def make_corebos(server: MariaDB, name: str, shape: str = "current") -> CoreBOS:
    return CoreBOS(CoreBOSDatabase(server, name, shape))


@pytest.fixture
def source(mariadb, request):
    """A coreBOS of a few hundred rows: some deleted, some leads converted, some opted out, calls beside
    emails, counts that differ from the access rows as TrackAccess.php makes them differ."""
    rng = random.Random(14)
    crm = make_corebos(mariadb, f"corebos_{request.node.name.split('[')[-1].rstrip(']')}")
    for index in range(30):
        crm.record("account", rng, deleted=index % 15 == 0)
    for index in range(80):
        crm.record("contact", rng, deleted=index % 20 == 0)
    for index in range(40):
        crm.record("lead", rng, deleted=index % 20 == 1, converted=index % 8 == 0)
    everyone = [crmid for (crmid,) in crm.db.query("SELECT crmid FROM vtiger_crmentity ORDER BY crmid")]
    for index in range(40):
        crm.email(rng, rng.sample(everyone, rng.randint(1, 4)), deleted=index % 13 == 0)
    crm.email(rng, everyone[:3], kind="Call")
    yield crm
    crm.db.close()


@pytest.fixture
def cli(config, users):
    environ = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
               "CORETRACK_CONFIG": ""}

    def run(*arguments: str, zone: str | None = "Europe/Madrid"):
        zoned = ["--time-zone", zone] if zone and "--time-zone" not in arguments else []
        return CliRunner().invoke(main, ["import", "corebos", *arguments, *zoned], env=environ)

    return run


def imported(db) -> dict[str, object]:
    """Everything the import wrote, as the comparisons need it."""
    db.expire_all()
    recipients = db.scalars(select(Recipient).where(Recipient.corebos_mailid.is_not(None))).all()
    events = {(crmid, mailid): n for crmid, mailid, n in db.execute(
        select(Recipient.corebos_crmid, Recipient.corebos_mailid, func.count(AccessEvent.id))
        .join(AccessEvent, AccessEvent.recipient_id == Recipient.id).where(AccessEvent.legacy)
        .group_by(Recipient.corebos_crmid, Recipient.corebos_mailid))}
    records = {kind: {row.corebos_id: row for row in db.scalars(select(model).where(model.corebos_id.is_not(None)))}
               for kind, model in (("account", Account), ("contact", Contact), ("lead", Lead))}
    return {
        "records": {kind: set(rows) for kind, rows in records.items()},
        "employer": {crmid: contact.account.corebos_id for crmid, contact in records["contact"].items()
                     if contact.account is not None},
        "opted_out": {crmid for rows in records.values() for crmid, row in rows.items()
                      if row.email_opt_out and row.email_opt_out_reason == "imported from coreBOS"},
        "emails": set(db.scalars(select(Email.corebos_id).where(Email.corebos_id.is_not(None)))),
        "pairs": {(r.corebos_crmid, r.corebos_mailid) for r in recipients},
        "counts": {(r.corebos_crmid, r.corebos_mailid): r.access_count for r in recipients},
        "events": events,
        "addresses": {r.corebos_crmid: r.address for r in recipients},
    }


def expected(crm: CoreBOS) -> dict[str, object]:
    return {
        "records": crm.live, "employer": crm.employer, "opted_out": crm.opted_out, "emails": crm.emails,
        "pairs": crm.links, "counts": crm.counts,
        "events": {pair: n for pair, n in crm.accesses.items() if n},
        "addresses": {crmid: crm.addresses[crmid] for crmid, _ in crm.links},
    }


def test_an_import_brings_every_live_record_email_and_count_and_a_second_run_adds_nothing(cli, db, source):
    result = cli("--from", source.url)
    assert result.exit_code == 0, result.output
    assert imported(db) == expected(source)
    differ = sum(source.counts[pair] != source.accesses[pair] for pair in source.links)
    # TrackAccess.php stores the pair's rows plus one: every pair opened twice or more is one over.
    assert differ == sum(source.accesses[pair] >= 2 for pair in source.links) > 0
    assert all(source.counts[pair] == source.accesses[pair] + 1 for pair in source.links if source.accesses[pair] >= 2)
    assert f"(coreBOS's count kept): {differ}" in result.output
    live = len(source.live["contact"])
    assert f"contacts: {live} in coreBOS, imported {live} new" in result.output
    # An opt-out imported binds to the address: sending asks it, whichever record holds it later.
    opted_out = {source.addresses[crmid].lower() for crmid in source.opted_out}
    assert opted_out and suppression.suppressed(db, opted_out) == opted_out
    assert {row.opt_out_source for row in db.scalars(select(Address))} == {suppression.IMPORT}
    # coreBOS holds no consent to measuring reading: its people's stays unknown.
    assert {row.consent for row in db.scalars(select(Address))} == {""}
    assert db.scalar(select(func.count()).select_from(ConsentEvent)) == 0

    again = cli("--from", source.url)
    assert again.exit_code == 0, again.output
    assert imported(db) == expected(source)
    for stage in ("accounts", "contacts", "leads", "emails", "recipients", "events"):
        line = next(line for line in again.output.splitlines() if line.startswith(f"{stage}: ") and "new" in line)
        assert line.endswith("imported 0 new"), line


def test_a_second_run_adds_what_is_new_in_coreBOS_and_changes_nothing_else(cli, db, source):
    assert cli("--from", source.url).exit_code == 0
    rng = random.Random(99)
    old_pair = sorted(source.links)[0]
    before = imported(db)
    # coreBOS goes on counting an old pair; a contact and an email to it are new.
    source.execute("UPDATE vtiger_email_track SET access_count = access_count + 7 WHERE crmid = %s AND mailid = %s",
                   old_pair)
    contact = source.record("contact", rng)
    mailid = source.email(rng, [contact])
    result = cli("--from", source.url)
    assert result.exit_code == 0, result.output
    after = imported(db)
    assert after["records"]["contact"] - before["records"]["contact"] == {contact}
    assert after["emails"] - before["emails"] == {mailid}
    assert after["pairs"] - before["pairs"] == {(contact, mailid)}
    assert after["counts"][old_pair] == before["counts"][old_pair]  # what was imported is left as it was
    assert after["counts"][(contact, mailid)] == source.counts[(contact, mailid)]


def test_a_dry_run_says_what_it_would_import_and_writes_nothing(cli, db, source):
    result = cli("--from", source.url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"emails: {len(source.emails)} in coreBOS, would import {len(source.emails)} new" in result.output
    assert "dry run: nothing was written" in result.output
    assert imported(db)["pairs"] == set() and db.scalar(select(func.count(Contact.id))) == 0


def test_an_imported_pair_s_coreBOS_image_then_counts(app, cli, db, source):
    from coretrack.settings import SettingsService

    assert cli("--from", source.url).exit_code == 0
    SettingsService(db, app.config).update({"corebos_app_key": APP_KEY}, "admin")
    crmid, mailid = sorted(source.links)[0]
    recipient = db.scalars(select(Recipient).where(Recipient.corebos_crmid == crmid,
                                                   Recipient.corebos_mailid == mailid)).one()
    before = recipient.access_count
    hit = Hit(corebos_images.token(app.secret, str(crmid), str(mailid), APP_KEY), datetime(2026, 12, 3, 10),
              "203.0.113.1", "Thunderbird")
    with write_transaction(app.engine) as connection:
        assert count_hits(connection, [hit]) == 1
    db.refresh(recipient)
    assert recipient.access_count == before + 1


def test_the_source_is_only_read(mariadb, source):
    engine, _ = corebos.connect(source.url)  # the reader may INSERT: the session may not
    try:
        with engine.connect() as connection, pytest.raises(Exception, match="READ ONLY"):
            connection.execute(text("INSERT INTO vtiger_email_track (crmid, mailid, access_count) VALUES (1, 1, 1)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("database", ["sqlite"])
def test_a_source_that_cannot_be_imported_is_one_clear_line_without_the_password(cli, mariadb, source):
    empty = make_corebos(mariadb, "not_corebos")
    empty.execute("SET FOREIGN_KEY_CHECKS = 0")
    empty.execute("DROP TABLE vtiger_crmentity")
    partial = make_corebos(mariadb, "partial_corebos")
    partial.execute("DROP TABLE vtiger_email_access")
    cases = {
        "not-a-url": "not a database URL",
        f"postgresql://reader:{READER_PASSWORD}@127.0.0.1/corebos": "is not a MySQL URL",
        mariadb.url(source.name).replace(str(mariadb.port), str(free_port())): "cannot reach the server",
        mariadb.url(source.name, password="wrong-" + READER_PASSWORD): "password was refused",
        mariadb.url("no_such_database"): "no such database",
        empty.url: "not a coreBOS database",
        partial.url: "missing vtiger_email_access",
    }
    for url, message in cases.items():
        result = cli("--from", url)
        assert result.exit_code == 1, (url, result.output)
        assert message in result.output and "Traceback" not in result.output, result.output
        assert READER_PASSWORD not in result.output
        assert result.output.strip().count("\n") == 0, result.output


# -- every import path uses the form's validation ----------------------------------------------

# Per record type, values the form refuses (then the field they are in) and values it takes as they
# are or cleaned: a javascript: website, bad addresses, line breaks a header would split on, a NUL,
# a value longer than the form's field, HTML (kept as text: pages escape it).
HOSTILE = {
    "account": [
        {"name": '<script>alert("name")</script> Ltd', "email": "evil@example.test>, x@example.test",
         "phone": "+34 600\r\nBcc: evil@x.test", "website": "javascript:alert(document.domain)",
         "email_opt_out": "1"},
        {"name": "Fine Ltd", "email": "info@acme.example", "phone": "+34 600", "website": "acme.example",
         "email_opt_out": "0"},
    ],
    "contact": [
        {"first_name": "A" * 150, "last_name": "Lovelace\u2028Bcc: evil@example.test",
         "email": "ada@example.test\nBcc: evil@example.test", "phone": "555\x00", "email_opt_out": "x"},
    ],
    "lead": [
        {"first_name": "<img src=x onerror=alert(1)>", "last_name": "Hopper", "company": "Na\x0bvy",
         "email": "javascript:alert(1)", "email_opt_out": "0"},
    ],
}
REFUSED = {"accounts email": 1, "accounts phone": 1, "accounts website": 1, "contacts email": 1,
           "contacts email_opt_out": 1, "contacts first_name": 1, "contacts last_name": 1, "contacts phone": 1,
           "emails from_address": 1, "emails subject": 1, "leads company": 1, "leads email": 1}


def hostile_corebos(crm: CoreBOS) -> None:
    # An install whose columns were widened: values longer than the form takes.
    crm.execute("ALTER TABLE vtiger_contactdetails MODIFY firstname varchar(300)")
    accounts = []
    for values in HOSTILE["account"]:
        accounts.append(crm.db.record("account", crm.tick(), {
            "accountname": values["name"], "email1": values["email"], "phone": values["phone"],
            "website": values["website"], "emailoptout": values["email_opt_out"]}))
    for values in HOSTILE["contact"]:
        crm.db.record("contact", crm.tick(), {
            "accountid": accounts[0], "firstname": values["first_name"], "lastname": values["last_name"],
            "email": values["email"], "phone": values["phone"], "emailoptout": values["email_opt_out"]})
    for values in HOSTILE["lead"]:
        crm.db.record("lead", crm.tick(), {
            "email": values["email"], "firstname": values["first_name"], "lastname": values["last_name"],
            "company": values["company"], "emailoptout": values["email_opt_out"]})
    # Its owner's address (mailsend.php's From) is no address.
    owner = crm.db.user("hostile", "Hostile", "not an address")
    at = crm.tick()
    mailid = crm.db.email(at, owner, "Offer\r\nBcc: evil@example.test",
                          '<p>Hello</p><script>alert(1)</script><a href="javascript:alert(1)" onclick="alert(2)">x</a>',
                          [(accounts[1], FIELD[("account", "email1")], "info@acme.example")])
    crm.db.send(mailid, owner, at)


def the_form_would_save(db, record) -> None:
    """Every value of ``record`` is one the form saves as it is (a required one may be empty on import)."""
    submitted = form_values(record)
    for definition in FIELDS[record.record_type]:
        if definition.kind == "account":
            continue
        value = clean_value(db, replace(definition, required=False), submitted[definition.name])
        assert value == getattr(record, definition.name), (definition.name, getattr(record, definition.name))


def live_script(page) -> list[str]:
    """What in a page could run: javascript:/data: links, event handlers, scripts that are not ours."""
    found = [f"{tag.name} {name}={value!r}" for tag in page.html.find_all(True) for name, value in tag.attrs.items()
             if name in ("href", "src", "action", "formaction")
             and str(value).strip().lower().startswith(("javascript:", "data:", "vbscript:"))]
    found += [f"{tag.name} {name}" for tag in page.html.find_all(True) for name in tag.attrs if name.startswith("on")]
    found += [str(tag) for tag in page.html.find_all("script") if "alert" in tag.text]
    found += [f"srcdoc {tag['srcdoc']!r}" for tag in page.html.find_all("iframe", srcdoc=True)
              if "javascript:" in tag["srcdoc"] or "<script" in tag["srcdoc"]]
    return found


def test_coreBOS_values_the_form_would_refuse_are_left_out_and_counted_and_no_page_runs_them(
        cli, db, staff, mariadb, request):
    crm = make_corebos(mariadb, f"corebos_hostile_{request.node.callspec.params['database']}")
    hostile_corebos(crm)
    result = cli("--from", crm.url)
    assert result.exit_code == 0, result.output
    counts = ", ".join(f"{name} {count}" for name, count in sorted(REFUSED.items()))
    assert f"values left out (the form would refuse them): {counts}" in result.output
    for value in ("javascript", "evil@", "A" * 100, "555"):
        assert value not in result.output  # counted, never printed

    db.expire_all()
    hostile, fine = db.scalars(select(Account).order_by(Account.id)).all()
    assert (hostile.name, hostile.email, hostile.phone, hostile.website) == (HOSTILE["account"][0]["name"], "", "", "")
    assert hostile.email_opt_out and hostile.email_opt_out_reason == corebos.records.OPT_OUT_REASON
    assert (fine.email, fine.website) == ("info@acme.example", "https://acme.example")  # cleaned as the form does
    contact, lead = db.scalars(select(Contact)).one(), db.scalars(select(Lead)).one()
    assert (contact.first_name, contact.last_name, contact.email, contact.phone, contact.email_opt_out) == (
        "", "(no name)", "", "", False)
    assert contact.account == hostile
    assert (lead.first_name, lead.company, lead.email) == (HOSTILE["lead"][0]["first_name"], "", "")
    for record in (hostile, fine, contact, lead):
        the_form_would_save(db, record)
    email = db.scalars(select(Email)).one()
    assert (email.subject, email.from_address) == ("(no subject)", "")
    assert "<p>Hello</p>" in email.html_body
    assert "script" not in email.html_body and "javascript:" not in email.html_body and "onclick" not in email.html_body

    pages = [f"/accounts/{hostile.id}", f"/accounts/{fine.id}", f"/contacts/{contact.id}", f"/leads/{lead.id}",
             f"/emails/{email.id}", "/accounts", "/contacts", "/leads"]
    for path in pages:
        page = staff.get(path)
        assert live_script(page) == [], path
    assert staff.get(f"/accounts/{fine.id}").html.select_one("a[href='https://acme.example']") is not None
    assert "<script>" in staff.get(f"/accounts/{hostile.id}").html.select_one("h1").text  # shown, as text


def test_the_same_values_through_the_CSV_import_are_refused_by_line_and_field_and_no_page_runs_them(staff, db):
    for record_type, rows in HOSTILE.items():
        columns = list(rows[0])
        lines = [",".join(columns)] + [",".join('"' + row[name].replace('"', '""') + '"' for name in columns)
                                       for row in rows]
        result = csv_import.import_csv(db, record_type, ("\r\n".join(lines) + "\r\n").encode())
        refused = {number: [name for name in columns if f"{record_type}s {name}" in REFUSED] for number in (2,)}
        # The first row of each holds refused values: that row is reported with each such field named
        # and not imported; a row the form takes is imported as the form cleans it.
        assert [line for line, _ in result.errors] == [2], result.errors
        for name in refused[2]:
            assert f"{name}:" in result.errors[0][1], (name, result.errors[0][1])
        assert result.created == len(rows) - 1
    db.expire_all()
    fine = db.scalars(select(Account)).one()
    assert fine.website == "https://acme.example"
    the_form_would_save(db, fine)
    assert db.scalar(select(func.count()).select_from(Contact)) == 0
    assert db.scalar(select(func.count()).select_from(Lead)) == 0
    for path in (f"/accounts/{fine.id}", "/accounts"):
        assert live_script(staff.get(path)) == [], path
