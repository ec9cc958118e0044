"""``coretrack import corebos`` as a real coreBOS holds its history: a MariaDB of coreBOS's own tables
(support/corebos_schema.py) written through coreBOS's own statements (support/corebos_db.py), in its
current shape or the old one, imported into SQLite and PostgreSQL.  Times of day and coreBOS's zone,
saved-only emails, the address and record actually mailed, converted leads, From and owners, older and
customised schemas."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from datetime import datetime
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support.apache import ApacheServer
from support.corebos_db import ADMIN, FIELD, CoreBOSDatabase

from coretrack import corebos as corebos_import
from coretrack.cli import main
from coretrack.models import AccessEvent, Account, Email, EmailDraft, Lead, Recipient, User
from coretrack.settings import SettingsService
from coretrack.tracking import corebos_images
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hits import Hit
from coretrack.tracking.image import GIF

APP_KEY = "4a1b2c3d4e5f60718293a4b5c6d7e8f9"
SAVED = datetime(2025, 3, 3, 9, 30)


@pytest.fixture
def cli(config, users):
    environ = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
               "CORETRACK_CONFIG": ""}

    def run(*arguments: str):
        return CliRunner().invoke(main, ["import", "corebos", *arguments], env=environ)

    return run


@pytest.fixture
def corebos(mariadb, request):
    """A new coreBOS database per test (and database kind) of the shape asked for."""
    made: list[CoreBOSDatabase] = []

    def make(shape: str = "current") -> CoreBOSDatabase:
        name = "cb_" + hashlib.sha256(f"{request.node.nodeid}{len(made)}".encode()).hexdigest()[:20]
        made.append(CoreBOSDatabase(mariadb, name, shape))
        return made[-1]

    yield make
    for database in made:
        database.close()


def sent_email(crm: CoreBOSDatabase, to: list[tuple[int, int, str]], owner: int = ADMIN, at: datetime = SAVED,
               custom_from: str = "", to_users: tuple[int, ...] = ()) -> int:
    mailid = crm.email(at, owner, "Spring offer", "<p>Hello</p>", to, to_users)
    crm.send(mailid, owner, at, custom_from)
    return mailid


def contact(crm: CoreBOSDatabase, address: str, secondary: str = "", at: datetime = SAVED) -> int:
    return crm.record("contact", at, {"firstname": "Ada", "lastname": "Lovelace", "email": address,
                                      "secondaryemail": secondary})


def recipients(db) -> dict[tuple[int, int], Recipient]:
    db.expire_all()
    return {(r.corebos_crmid, r.corebos_mailid): r
            for r in db.scalars(select(Recipient).where(Recipient.corebos_mailid.is_not(None)))}


def events_of(db, recipient: Recipient) -> list[AccessEvent]:
    return list(db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id)
                           .order_by(AccessEvent.at)))


def old_image_counts(app, db, crmid: int, mailid: int) -> bool:
    """An old image of coreBOS's (record=crmid, mailid) hit once: whether it counted."""
    SettingsService(db, app.config).update({"corebos_app_key": APP_KEY}, "admin")
    hit = Hit(corebos_images.token(app.secret, str(crmid), str(mailid), APP_KEY), datetime(2026, 12, 3, 10),
              "203.0.113.1", "Thunderbird")
    with write_transaction(app.engine) as connection:
        return bool(count_hits(connection, [hit]))


# -- 1. times of day ----------------------------------------------------------------------------


def test_an_open_comes_over_to_the_second_from_coreBOS_s_TIME_accesstime(cli, db, corebos):
    crm = corebos("current")
    assert crm.query("SELECT data_type FROM information_schema.columns WHERE table_schema = DATABASE() "
                     "AND table_name = 'vtiger_email_access' AND column_name = 'accesstime'") == [("time",)]
    ada = contact(crm, "ada@example.test")
    mailid = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")])
    crm.open(ada, mailid, datetime(2025, 3, 3, 14, 23, 45))
    crm.open(ada, mailid, datetime(2025, 3, 4, 8, 5, 9))
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    recipient = recipients(db)[(ada, mailid)]
    events = events_of(db, recipient)
    assert [event.at for event in events] == [datetime(2025, 3, 3, 14, 23, 45), datetime(2025, 3, 4, 8, 5, 9)]
    assert all(event.time_known for event in events)
    assert (recipient.first_access, recipient.last_access) == (events[0].at, events[1].at)
    assert recipient.access_count == 3  # TrackAccess.php's count: its rows plus one


def test_an_old_DATETIME_accesstime_keeps_each_open_s_day_with_its_time_unknown_never_an_invented_time(
        cli, db, corebos, staff):
    crm = corebos("old")
    crm.run("SET SESSION sql_mode = ''")  # the MySQL without strict mode that wrote such rows
    ada = contact(crm, "ada@example.test")
    mailid = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")])
    crm.open(ada, mailid, datetime(2025, 3, 3, 23, 30, 0))
    crm.open(ada, mailid, datetime(2025, 3, 4, 10, 11, 12))
    stored = [value for (value,) in crm.query("SELECT CAST(accesstime AS CHAR) FROM vtiger_email_access")]
    assert stored == ["0000-00-00 00:00:00", "2010-11-12 00:00:00"]  # what MySQL made of date('H:i:s')
    result = cli("--from", crm.url, "--time-zone", "Europe/Madrid")
    assert result.exit_code == 0, result.output
    events = events_of(db, recipients(db)[(ada, mailid)])
    # Each day's start in Madrid (UTC+1 in March), kept as UTC; no hour claimed.
    assert [(event.at, event.time_known) for event in events] == [
        (datetime(2025, 3, 2, 23, 0), False), (datetime(2025, 3, 3, 23, 0), False)]
    assert "opens whose time of day an old coreBOS lost (kept as their day, time unknown): 2" in result.output
    # The Activity report counts them in their days, and in no hour.
    days = staff.get("/api/reports/activity", params={"from": "2025-03-02", "to": "2025-03-03"}).json
    assert [row["accesses"] for row in days["rows"]] == [1, 1]
    hours = staff.get("/api/reports/activity", params={"from": "2025-03-02", "to": "2025-03-03", "by": "hour",
                                                       "per_page": 100}).json
    assert len(hours["rows"]) == 48 and sum(row["accesses"] for row in hours["rows"]) == 0


# -- 2. coreBOS's zone ---------------------------------------------------------------------------


def test_coreBOS_times_are_read_in_its_zone_and_kept_as_UTC_across_a_daylight_saving_change(cli, db, corebos):
    crm = corebos("current")
    # Madrid: UTC+1 until 2025-03-30 02:00, then UTC+2.
    ada = contact(crm, "ada@example.test", at=datetime(2025, 3, 29, 12, 0))
    mailid = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")], at=datetime(2025, 3, 29, 18, 40))
    for at in (datetime(2025, 3, 30, 1, 30), datetime(2025, 3, 30, 3, 30), datetime(2025, 3, 31, 9, 0, 5)):
        crm.open(ada, mailid, at)
    result = cli("--from", crm.url, "--time-zone", "Europe/Madrid")
    assert result.exit_code == 0, result.output
    db.expire_all()
    email = db.scalars(select(Email).where(Email.corebos_id == mailid)).one()
    assert email.sent_at == datetime(2025, 3, 29, 17, 40)
    assert email.created_at == datetime(2025, 3, 29, 17, 40)
    recipient = recipients(db)[(ada, mailid)]
    assert recipient.contact.created_at == datetime(2025, 3, 29, 11, 0)
    assert [event.at for event in events_of(db, recipient)] == [
        datetime(2025, 3, 30, 0, 30), datetime(2025, 3, 30, 1, 30), datetime(2025, 3, 31, 7, 0, 5)]


@pytest.mark.parametrize("database", ["sqlite"])
def test_without_its_zone_the_import_refuses_and_says_where_coreBOS_keeps_it(cli, db, corebos):
    crm = corebos("current")
    contact(crm, "ada@example.test")
    for arguments in ((), ("--time-zone", "Mars/Olympus_Mons")):
        result = cli("--from", crm.url, *arguments)
        assert result.exit_code == 2, result.output
        assert "$default_timezone" in result.output and "config.inc.php" in result.output
    assert db.scalars(select(User).where(User.corebos_id.is_not(None))).all() == []


# -- 3. saved-only emails -------------------------------------------------------------------------


def test_an_email_coreBOS_only_saved_becomes_a_draft_of_its_owner_and_is_never_sent_mail(cli, db, corebos):
    crm = corebos("current")
    jo = crm.user("jo", "Bloggs", "jo@corp.example")
    ada = contact(crm, "ada@example.test")
    draft_id = crm.email(SAVED, jo, "Not finished", "<p>Draft</p>", [(ada, FIELD[("contact", "email")],
                                                                        "ada@example.test")])
    sent_id = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")], owner=jo)
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "drafts: 1 in coreBOS, imported 1 new" in result.output
    assert "emails: 1 in coreBOS, imported 1 new" in result.output
    db.expire_all()
    assert set(db.scalars(select(Email.corebos_id))) == {sent_id}
    draft = db.scalars(select(EmailDraft)).one()
    owner = db.get(User, draft.owner_id)
    assert (draft.corebos_id, draft.subject, owner.corebos_id) == (draft_id, "Not finished", jo)
    fields = json.loads(draft.fields)
    assert (fields["to"], fields["html"]) == ("ada@example.test", "<p>Draft</p>")
    assert set(recipients(db)) == {(ada, sent_id)}
    assert cli("--from", crm.url, "--time-zone", "UTC").exit_code == 0
    assert len(db.scalars(select(EmailDraft)).all()) == 1


# -- 4. the address actually mailed ---------------------------------------------------------------


def test_each_recipient_is_the_address_coreBOS_mailed_secondary_fields_included_and_its_old_image_counts(
        app, cli, db, corebos):
    crm = corebos("current")
    home = contact(crm, "", secondary="ada.home@example.test")  # no primary address at all
    both = contact(crm, "grace@example.test", secondary="grace.private@example.test")
    firm = crm.record("account", SAVED, {"accountname": "Acme", "email1": "info@acme.example",
                                         "email2": "billing@acme.example"})
    lead = crm.record("lead", SAVED, {"lastname": "Hopper", "company": "Navy", "email": "lead@example.test",
                                      "secondaryemail": "lead.other@example.test"})
    mailid = sent_email(crm, [(home, FIELD[("contact", "secondaryemail")], "ada.home@example.test"),
                              (both, FIELD[("contact", "email")], "grace@example.test"),
                              (firm, FIELD[("account", "email2")], "billing@acme.example"),
                              (lead, FIELD[("lead", "secondaryemail")], "lead.other@example.test")])
    crm.open(home, mailid, datetime(2025, 3, 4, 10, 0))
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    found = recipients(db)
    assert {pair[0]: r.address for pair, r in found.items()} == {
        home: "ada.home@example.test", both: "grace@example.test", firm: "billing@acme.example",
        lead: "lead.other@example.test"}
    assert found[(home, mailid)].contact.email == ""  # the record as coreBOS has it
    assert found[(home, mailid)].access_count == 1
    assert old_image_counts(app, db, home, mailid)
    db.refresh(found[(home, mailid)])
    assert found[(home, mailid)].access_count == 2


# -- 5. converted leads -----------------------------------------------------------------------------


def converted_lead(crm: CoreBOSDatabase) -> tuple[int, int, int]:
    """A lead mailed and opening twice, then converted (ConvertLead.php) into a contact: (lead, contact, mailid)."""
    lead = crm.record("lead", SAVED, {"lastname": "Hopper", "company": "Navy", "email": "grace@navy.example"})
    mailid = sent_email(crm, [(lead, FIELD[("lead", "email")], "grace@navy.example")])
    crm.open(lead, mailid, datetime(2025, 3, 4, 10, 0))
    crm.open(lead, mailid, datetime(2025, 3, 5, 11, 0))
    became = contact(crm, "grace@navy.example", at=datetime(2025, 3, 6, 9, 0))
    crm.convert(lead, became)
    return lead, became, mailid


def test_a_converted_lead_s_history_follows_it_to_its_contact_and_its_old_image_still_counts(app, cli, db, corebos):
    crm = corebos("current")
    lead, became, mailid = converted_lead(crm)
    assert crm.query("SELECT crmid FROM vtiger_seactivityrel WHERE activityid = %s", (mailid,)) == [(became,)]
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "converted leads' recipients put on the contact or account they became: 1" in result.output
    found = recipients(db)
    assert set(found) == {(lead, mailid)}  # one recipient: the lead's pair, not a second one for the contact
    recipient = found[(lead, mailid)]
    assert (recipient.contact.corebos_id, recipient.address, recipient.access_count) == (
        became, "grace@navy.example", 3)
    assert len(events_of(db, recipient)) == 2
    assert db.scalars(select(Lead)).all() == []
    assert old_image_counts(app, db, lead, mailid)


@pytest.mark.slow
def test_through_real_apache_a_converted_lead_s_old_image_counts_for_the_contact_it_became(corebos):
    crm = corebos("current")
    lead, became, mailid = converted_lead(crm)
    server = ApacheServer("site", "/your_coreBOS", hit_log=True)
    try:
        server.start()
        engine, schema = corebos_import.connect(crm.url)
        try:
            with server.session() as session:
                SettingsService(session, server.config).update({"corebos_app_key": APP_KEY}, "admin")
                corebos_import.Importer(engine, schema, session, server.config.secret_key(),
                                        corebos_import.clock_for("UTC")).run()
        finally:
            engine.dispose()
        www = pwd.getpwnam("www-data")  # the import ran as root: the workers' files stay theirs
        for path in [server.home, *server.home.rglob("*")]:
            os.chown(path, www.pw_uid, www.pw_gid)
        for record in (lead, became):  # the image in the email names the lead; the contact's id names nothing
            query = urlencode({"record": record, "mailid": mailid, "app_key": APP_KEY})
            reply = server.request("GET", f"{server.prefix}/modules/Emails/TrackAccess.php?{query}")
            assert reply.status == 200 and reply.body == GIF
        server.run("ingest", "--once")
        with server.session() as session:
            recipient = session.scalars(select(Recipient)).one()
            assert (recipient.corebos_crmid, recipient.contact.corebos_id) == (lead, became)
            assert recipient.access_count == 3 + 1
            assert len(session.scalars(select(AccessEvent)).all()) == 2 + 1
    finally:
        server.stop()


def test_without_convertedfromlead_a_converted_lead_s_history_is_left_out_and_the_column_named(cli, db, corebos):
    crm = corebos("old")
    lead, became, mailid = converted_lead(crm)
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "no vtiger_contactdetails.convertedfromlead (coreBOS's 2016 update " in result.output
    assert "links skipped (record deleted, converted or without an address): 1" in result.output
    assert (lead, mailid) not in recipients(db)


# -- 6. From and owners ---------------------------------------------------------------------------


def test_the_From_typed_in_coreBOS_is_the_From_and_each_email_belongs_to_its_owner_a_disabled_user(
        app, cli, db, corebos, admin):
    crm = corebos("current")
    jo = crm.user("jo", "Bloggs", "jo@corp.example")
    ada = contact(crm, "ada@example.test")
    to = [(ada, FIELD[("contact", "email")], "ada@example.test")]
    custom = sent_email(crm, to, owner=jo, custom_from="news@corp.example")
    own = sent_email(crm, to, owner=jo)
    by_admin = sent_email(crm, to, owner=ADMIN)
    stored = crm.query("SELECT from_email FROM vtiger_emaildetails WHERE emailid = %s", (custom,))
    assert stored == [("jo@corp.example > news@corp.example",)]
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    db.expire_all()
    emails = {email.corebos_id: email for email in db.scalars(select(Email))}
    assert {mailid: emails[mailid].from_address for mailid in (custom, own, by_admin)} == {
        custom: "news@corp.example", own: "jo@corp.example", by_admin: "admin@example.test"}
    person = emails[custom].sender
    assert (person.name, person.active, person.corebos_id, person.email) == ("jo", False, jo, "jo@corp.example")
    assert "imported from coreBOS" in person.note and "no password" in person.note
    assert app.config.htpasswd_path.read_text().count("jo:") == 0
    users_page = admin.get("/users")
    assert "no password" in users_page.html.find(id="note-jo").text
    assert "disabled" in users_page.html.find(id="user-jo").text
    # coreBOS's admin is the coretrack user of that name: kept as it is.
    assert emails[by_admin].sender.name == "admin" and emails[by_admin].sender.active
    assert "owners that already were coretrack users of the same name (left as they are): 1" in result.output


@pytest.mark.parametrize("database", ["sqlite"])
def test_a_typed_From_the_column_cut_short_is_no_address_the_owner_s_is_kept_and_it_is_counted(cli, db, corebos):
    crm = corebos("current")
    crm.run("SET SESSION sql_mode = ''")  # without strict mode MySQL cuts the concat to from_email's 50 characters
    jo = crm.user("jo", "Bloggs", "jo@corp.example")
    ada = contact(crm, "ada@example.test")
    mailid = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")], owner=jo,
                        custom_from="newsletter.department@marketing.corp.example")
    (stored,) = crm.query("SELECT from_email FROM vtiger_emaildetails WHERE emailid = %s", (mailid,))[0]
    assert stored == "jo@corp.example > newsletter.department@marketing."
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "values left out (the form would refuse them): emails from_address 1" in result.output
    assert db.scalars(select(Email)).one().from_address == "jo@corp.example"


def test_recipients_that_were_coreBOS_users_are_reported_and_skipped(cli, db, corebos):
    crm = corebos("current")
    jo = crm.user("jo", "Bloggs", "jo@corp.example")
    ada = contact(crm, "ada@example.test")
    mailid = sent_email(crm, [(ada, FIELD[("contact", "email")], "ada@example.test")], to_users=(jo,))
    assert crm.query("SELECT smid FROM vtiger_salesmanactivityrel WHERE activityid = %s", (mailid,)) == [(jo,)]
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "recipients that were coreBOS users (not imported): 1" in result.output
    assert set(recipients(db)) == {(ada, mailid)}


# -- 7, 8. older and customised schemas ---------------------------------------------------------


def test_an_install_without_leads_emailoptout_imports_what_it_can_and_names_the_update_that_adds_it(
        cli, db, corebos):
    crm = corebos("old")
    crm.record("lead", SAVED, {"lastname": "Hopper", "company": "Navy", "email": "grace@navy.example"},
               lead_phone="+34 611 222 333")
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert ("no vtiger_leaddetails.emailoptout (coreBOS's 2016 update addLeadEmailOptOutAndConversionRelatedFields"
            in result.output)
    assert "not imported: leads' email opt-outs" in result.output
    lead = db.scalars(select(Lead)).one()
    assert (lead.email, lead.phone, lead.email_opt_out) == ("grace@navy.example", "+34 611 222 333", False)


@pytest.mark.parametrize("database", ["sqlite"])
def test_a_customised_install_without_a_column_the_import_needs_is_refused_naming_it(cli, db, corebos):
    crm = corebos("current")
    crm.run("ALTER TABLE vtiger_activity DROP COLUMN time_start")
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 1, result.output
    assert "the import needs vtiger_activity.time_start" in result.output
    assert result.output.strip().count("\n") == 0


def test_a_module_moved_to_its_own_entity_table_is_read_there_and_others_are_named(cli, db, corebos):
    crm = corebos("current")
    live = crm.record("account", SAVED, {"accountname": "Acme", "email1": "info@acme.example"})
    gone = crm.record("account", SAVED, {"accountname": "Gone", "email1": "gone@acme.example"})
    crm.delete(gone, SAVED)
    crm.denormalize("Accounts", 6)
    assert crm.query("SELECT count(*) FROM vtiger_crmentity WHERE setype = 'Accounts'") == [(0,)]
    # A module of the install's own, moved out too (the test's statements: a tab and its names).
    crm.run("INSERT INTO vtiger_tab (tabid, name, presence, tablabel) VALUES (70, 'cbCompany', 0, 'cbCompany')")
    crm.run("INSERT INTO vtiger_entityname (tabid, modulename, tablename, fieldname, entityidfield, entityidcolumn, "
            "isdenormalized, denormtable) VALUES (70, 'cbCompany', 'vtiger_cbcompany', 'companyname', "
            "'cbcompanyid', 'cbcompanyid', '1', 'vtiger_cbcompany')")
    result = cli("--from", crm.url, "--time-zone", "UTC")
    assert result.exit_code == 0, result.output
    assert "accounts: 1 in coreBOS, imported 1 new" in result.output
    assert "modules with their own entity table, not imported: cbCompany" in result.output
    db.expire_all()
    assert [account.corebos_id for account in db.scalars(select(Account))] == [live]
