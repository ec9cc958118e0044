"""What a person decides binds to their address: an opt-out from any source lands on the address
(with an append-only history), every send path asks it, a record form saved over a change made
meanwhile never undoes it, and only a staff user's explicit action lifts it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import select, text
from test_bounces import rfc3464
from test_sendgrid import event, post, signing_key  # noqa: F401  (signing_key: a fixture)

from coretrack.cli import main as cli_main
from coretrack.db import make_engine
from coretrack.delivery_reports import bounces
from coretrack.models import Address, AddressEvent, Contact, Lead, Recipient, utcnow
from coretrack.people import erasure, suppression
from coretrack.people.unsubscribe import UNSUBSCRIBE_PATH
from coretrack.records import csv_import
from coretrack.records.search import Audience
from coretrack.records.store import IMPORT_OPT_OUT, STAFF_OPT_OUT, create_record
from coretrack.schema import upgrade
from coretrack.sending.compose import OPTED_OUT, prepare
from coretrack.sending.delivery import deliver as deliver_email
from coretrack.settings import SettingsService

PAULA = "paula@example.test"
BOUNCE_ADDRESS = "bounces@example.test"


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"subject": "News", "html": "<p>Hi</p>"}


def statuses(db, email_id: int) -> dict[str, str]:
    rows = db.scalars(select(Recipient).where(Recipient.email_id == email_id))
    return {row.address: row.status for row in rows}


def opted_out_now(db, address: str = PAULA) -> tuple[str, str] | None:
    db.expire_all()
    found = suppression.state(db, address)
    return (found.opt_out_source, found.opt_out_reason) if found and found.opted_out_at else None


# -- every source lands on the address -----------------------------------------------------------


@dataclass
class Sent:
    """What an opt-out source needs: the clients, and the recipient a typed address was sent as."""

    app: object
    db: object
    anon: webtest.TestApp
    staff: webtest.TestApp
    signing_key: object
    recipient: Recipient
    mail: object  # as the receiving server got it


def by_link(sent: Sent) -> None:
    page = sent.anon.get(f"{UNSUBSCRIBE_PATH}?t={sent.recipient.token}")
    page.forms[0].submit(status=200)


def by_one_click(sent: Sent) -> None:
    sent.anon.post(f"{UNSUBSCRIBE_PATH}?t={sent.recipient.token}", "List-Unsubscribe=One-Click",
                   content_type="application/x-www-form-urlencoded", status=200)


def by_sendgrid(kind, **fields):
    def opt_out(sent: Sent) -> None:
        post(sent.anon, sent.signing_key, [event(sent.recipient, kind, f"ev-{kind}", **fields)])
    return opt_out


def by_mailbox_bounce(sent: Sent) -> None:
    # The bounce mailbox's own parsing and applying, of the report a receiving server sends back.
    bounce = bounces.parse(rfc3464(sent.mail, diagnostic=f"smtp; 550 5.1.1 <{PAULA}>: User unknown"),
                           BOUNCE_ADDRESS, sent.app.config.secret_key())
    assert bounce is not None and bounce.hard
    assert bounces.apply(sent.db, bounce) is not None
    sent.db.commit()


def by_csv_import_opted_out(sent: Sent) -> None:
    data = f"first_name,last_name,email,email_opt_out\r\nPaula,P,{PAULA},yes\r\n".encode()
    result = csv_import.import_csv(sent.db, "lead", data)
    assert result.created == 1


def by_staff(sent: Sent) -> None:
    form = sent.staff.get("/contacts/new").forms["record-form"]
    form["first_name"], form["last_name"], form["email"] = "Paula", "Once", PAULA
    form["email_opt_out"] = True
    form.submit(status=303)


SOURCES = [
    pytest.param(by_link, suppression.LINK, "unsubscribed with the link", id="link"),
    pytest.param(by_one_click, suppression.ONE_CLICK, "unsubscribed with the link", id="one-click"),
    pytest.param(by_sendgrid("unsubscribe"), suppression.SENDGRID, "unsubscribed through SendGrid",
                 id="sendgrid-unsubscribe"),
    pytest.param(by_sendgrid("spamreport"), suppression.SENDGRID, "reported the email as spam", id="sendgrid-spam"),
    pytest.param(by_sendgrid("bounce", status="5.1.1", reason="550 no such user", type="bounce"),
                 suppression.SENDGRID, "bounced (SendGrid)", id="sendgrid-bounce"),
    pytest.param(by_sendgrid("dropped", reason="Invalid"), suppression.SENDGRID, "dropped by SendGrid",
                 id="sendgrid-drop"),
    pytest.param(by_mailbox_bounce, suppression.BOUNCE, "bounced: 5.1.1", id="mailbox-bounce"),
    pytest.param(by_staff, suppression.STAFF, STAFF_OPT_OUT, id="staff"),
    pytest.param(by_csv_import_opted_out, suppression.IMPORT, IMPORT_OPT_OUT, id="csv-import"),
]


@pytest.mark.parametrize(("opt_out", "source", "reason"), SOURCES)
def test_every_opt_out_source_suppresses_the_address_and_the_next_send_to_it_is_skipped(
        app, db, users, anon, staff, smtp_settings, signing_key, opt_out, source, reason, send):  # noqa: F811
    sink, _ = smtp_settings
    SettingsService(db, app.config).update({"bounce_address": BOUNCE_ADDRESS}, user_name="admin")
    # A typed address no contact, account or lead holds.
    first = send(to=[PAULA])
    [mail] = sink.received
    [recipient] = first.email.recipients

    opt_out(Sent(app, db, anon, staff, signing_key, recipient, mail))

    assert opted_out_now(db) is not None
    assert opted_out_now(db)[0] == source and opted_out_now(db)[1].startswith(reason)
    [entry] = db.scalars(select(AddressEvent)).all()
    assert (entry.event, entry.source) == (suppression.OPTED_OUT, source)
    assert entry.user_name == ("sam" if source == suppression.STAFF else "")
    later = send(to=["Paula@Example.test", "other@example.test"])
    assert statuses(db, later.email.id) == {"Paula@Example.test": "skipped", "other@example.test": "sent"}
    assert [mail.rcpt_tos for mail in sink.received[1:]] == [["other@example.test"]]


def test_asking_again_from_another_source_keeps_the_first_when_and_why(app, db, users):
    at = utcnow() - timedelta(days=3)
    assert suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link in email 1", at)
    assert not suppression.opt_out(db, "PAULA@example.test ", suppression.SENDGRID, "reported as spam")
    db.commit()
    found = suppression.state(db, PAULA)
    assert (found.address, found.opted_out_at, found.opt_out_source) == (PAULA, at, suppression.LINK)
    assert len(suppression.history(db, PAULA)) == 1


# -- every send path asks the address ----------------------------------------------------------


def new_record(db, record_type):
    values = {"contact": {"first_name": "Paula", "last_name": "Later"}, "lead": {"first_name": "Paula",
              "last_name": "Lead"}, "account": {"name": "Paula's Shop"}}[record_type]
    return create_record(db, record_type, {**values, "email": PAULA.upper()})


def by_typed_address(app, db, send, staff):
    return send(to=["Paula@example.test"]).email.id


def by_record(record_type):
    def path(app, db, send, staff):
        record = new_record(db, record_type)
        return send(to=[f"{record_type}:{record.id}"]).email.id
    return path


def by_mass_send(record_type):
    def path(app, db, send, staff):
        new_record(db, record_type)
        return send(to=[], audience=Audience(record_type, "paula")).email.id
    return path


def by_csv_import(app, db, send, staff):
    result = csv_import.import_csv(db, "lead", f"first_name,last_name,email\r\nPaula,Imported,{PAULA}\r\n".encode())
    assert result.created == 1
    lead = db.scalars(select(Lead)).one()
    return send(to=[f"lead:{lead.id}"]).email.id


def by_the_api(app, db, send, staff):
    return staff.post_json("/api/emails", {"to": PAULA, "subject": "News", "html": "<p>x</p>"}, status=201).json["id"]


def by_the_cli(app, db, send, staff):
    result = CliRunner().invoke(cli_main, ["send", "--from-user", "sam", "--to", PAULA, "--subject", "News",
                                           "--html", "<p>Hi</p>"])
    assert result.exit_code == 0, result.output
    assert "0 sent, 0 failed, 1 skipped" in result.output
    return int(re.search(r"email (\d+)", result.output)[1])


PATHS = [
    pytest.param(by_typed_address, id="typed"),
    pytest.param(by_record("contact"), id="contact"),
    pytest.param(by_record("account"), id="account"),
    pytest.param(by_record("lead"), id="lead"),
    pytest.param(by_mass_send("account"), id="mass-accounts"),
    pytest.param(by_mass_send("lead"), id="mass-leads"),
    pytest.param(by_csv_import, id="csv-import"),
    pytest.param(by_the_api, id="api"),
    pytest.param(by_the_cli, id="cli"),
]


@pytest.mark.parametrize("path", PATHS)
def test_every_send_path_skips_an_opted_out_address_whatever_holds_it_later(
        app, db, users, staff, smtp_settings, path, monkeypatch, send):
    sink, _ = smtp_settings
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", app.config.public_url or "")
    # Paula unsubscribed when only a contact held her address; that contact is gone since.
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link in email 1")
    db.commit()

    email_id = path(app, db, send, staff)

    db.expire_all()
    assert set(statuses(db, email_id).values()) == {"skipped"}
    assert db.scalars(select(Recipient.reply).where(Recipient.email_id == email_id)).all() == [OPTED_OUT]
    assert sink.received == []
    # Records made later show it too: their pages and lists read their own flag.
    assert all(record.email_opt_out for record in suppression.holders(db, [PAULA]))


def test_a_queued_send_skips_an_address_opted_out_after_it_was_written(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    later = utcnow() + timedelta(minutes=30)
    queued = send.compose(to=[PAULA, "other@example.test"], send_at=later)
    suppression.opt_out(db, PAULA, suppression.SENDGRID, "reported the email as spam (SendGrid)")
    db.commit()
    db.execute(text("UPDATE emails SET send_at = :now"), {"now": utcnow() - timedelta(minutes=1)})
    db.commit()

    deliver_email(app.Session, app.config, queued.email.id)

    db.expire_all()
    assert statuses(db, queued.email.id) == {PAULA: "skipped", "other@example.test": "sent"}
    assert [mail.rcpt_tos for mail in sink.received] == [["other@example.test"]]


def test_a_mass_send_asks_in_chunks_not_once_per_recipient(app, db, users):
    from sqlalchemy import event as sa_event

    db.add_all(Lead(last_name=f"L{number}", email=f"l{number}@example.test") for number in range(25_000))
    suppression.opt_out(db, "l7@example.test", suppression.STAFF, "asked by phone")
    db.commit()
    statements: list[str] = []
    engine = db.get_bind()
    listener = lambda *args: statements.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
    sa_event.listen(engine, "before_cursor_execute", listener)
    try:
        prepared = prepare(db, to=[], subject="News", html="<p>Hi</p>", audience=Audience("lead"))
    finally:
        sa_event.remove(engine, "before_cursor_execute", listener)
    asked = [statement for statement in statements if "FROM addresses" in statement]
    assert len(asked) == 3  # 25,000 addresses, 10,000 a statement
    assert [planned.address for planned in prepared.skipped] == ["l7@example.test"]


# -- the record form (row 5) ----------------------------------------------------------------------


def test_a_form_opened_before_an_unsubscribe_saves_its_change_and_keeps_the_opt_out(
        app, db, users, anon, staff, smtp_settings, send):
    sink, _ = smtp_settings
    contact = create_record(db, "contact", {"first_name": "Paula", "last_name": "Person", "email": PAULA})
    first = send(to=[f"contact:{contact.id}"])
    form = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]  # staff open the form
    anon.post(f"{UNSUBSCRIBE_PATH}?t={first.email.recipients[0].token}", "List-Unsubscribe=One-Click",
              content_type="application/x-www-form-urlencoded", status=200)  # then Paula unsubscribes

    form["phone"] = "+44 20 7946 0000"
    form.submit(status=303)  # and staff save a phone change

    db.expire_all()
    contact = db.get(Contact, contact.id)
    assert contact.phone == "+44 20 7946 0000"
    assert contact.email_opt_out and contact.email_opt_out_reason.startswith("unsubscribed with the link")
    assert opted_out_now(db)[0] == suppression.ONE_CLICK
    later = send(to=[f"contact:{contact.id}"])
    assert statuses(db, later.email.id) == {PAULA: "skipped"} and len(sink.received) == 1


def test_saving_a_field_someone_changed_meanwhile_is_refused_saying_what_it_is_now(app, db, staff):
    contact = create_record(db, "contact", {"first_name": "Paula", "last_name": "Person", "phone": "1"})
    mine = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]
    theirs = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]
    theirs["phone"], theirs["last_name"] = "2", "Persson"
    theirs.submit(status=303)

    mine["phone"], mine["first_name"] = "3", "Pauline"
    refused = mine.submit(status=400)

    assert "Nothing was saved" in refused.text
    assert "changed since you opened this form: it is now “2”" in refused.html.select_one("#e-phone").text
    db.expire_all()
    saved = db.get(Contact, contact.id)
    assert (saved.first_name, saved.last_name, saved.phone) == ("Paula", "Persson", "2")
    # Shown again over the record as it is now, with this user's changes: saving again is deliberate.
    again = refused.forms["record-form"]
    assert (again["phone"].value, again["first_name"].value, again["last_name"].value) == ("3", "Pauline", "Persson")
    again.submit(status=303)
    db.expire_all()
    saved = db.get(Contact, contact.id)
    assert (saved.first_name, saved.last_name, saved.phone) == ("Pauline", "Persson", "3")


def test_the_edit_form_of_an_opted_out_record_cannot_clear_the_opt_out(app, db, staff):
    contact = create_record(db, "contact", {"first_name": "Paula", "last_name": "P", "email": PAULA,
                                                    "email_opt_out": "on"})
    form = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]
    assert "email_opt_out" not in form.fields  # the form says where it is lifted instead
    form["phone"] = "5"
    form.submit(status=303)
    # A post without the values it was opened with (an older page, a script): the box unticked.
    staff.post(f"/contacts/{contact.id}/edit", {"csrf_token": form["csrf_token"].value, "first_name": "Paula",
                                                "last_name": "P", "email": PAULA, "phone": "5", "email_opt_out": ""},
               status=303)
    db.expire_all()
    assert db.get(Contact, contact.id).phone == "5"
    assert db.get(Contact, contact.id).email_opt_out and opted_out_now(db) is not None


def test_a_record_given_another_address_follows_it_and_an_opted_out_one_takes_its_opt_out_along(app, db, staff):
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link in email 1")
    db.commit()
    moving = create_record(db, "lead", {"first_name": "Quinn", "last_name": "Q", "email": "q@example.test"})
    form = staff.get(f"/leads/{moving.id}/edit").forms["record-form"]
    form["email"] = PAULA
    form.submit(status=303)
    db.expire_all()
    assert db.get(Lead, moving.id).email_opt_out  # given an opted-out address: shows it

    form = staff.get(f"/leads/{moving.id}/edit").forms["record-form"]
    form["email"] = "paula.new@example.test"
    form.submit(status=303)
    db.expire_all()
    assert db.get(Lead, moving.id).email_opt_out  # the person asked: their new address is opted out too
    assert suppression.suppressed(db, [PAULA, "paula.new@example.test"]) == {PAULA, "paula.new@example.test"}


# -- lifting: only staff's explicit action ---------------------------------------------------------


def test_staff_lift_an_opt_out_on_the_record_page_with_a_reason_kept_in_the_history(
        app, db, users, staff, smtp_settings, send):
    sink, _ = smtp_settings
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link in email 1")
    db.commit()
    lead = new_record(db, "lead")
    page = staff.get(f"/leads/{lead.id}")
    assert "opted out of email" in page.html.select_one("#opt-out").text
    assert "from: link; unsubscribed with the link in email 1" in page.html.select_one("#opt-out").text
    form = page.forms["lift-opt-out"]
    assert form["csrf_token"].value

    staff.post(f"/leads/{lead.id}/lift-opt-out", {"reason": "asked again"}, status=403)  # no CSRF token
    empty = form.submit(status=303).follow()
    assert "say why" in empty.text and opted_out_now(db) is not None
    form["reason"] = "Paula asked by phone to get the newsletter again"
    lifted = form.submit(status=303).follow()

    assert f"Lifted the opt-out of {lead.email}" in lifted.text
    assert opted_out_now(db) is None
    assert not db.get(Lead, lead.id).email_opt_out
    newest, oldest = suppression.history(db, PAULA)
    assert (newest.event, newest.source, newest.user_name, newest.reason) == (
        suppression.LIFTED, suppression.STAFF, "sam", "Paula asked by phone to get the newsletter again")
    assert oldest.event == suppression.OPTED_OUT
    assert "by sam" in lifted.html.select_one("#address-history").text
    later = send(to=[f"lead:{lead.id}"])
    assert statuses(db, later.email.id) == {lead.email: "sent"}


# -- erasure and the carried-over opt-outs --------------------------------------------------------


def test_erasing_an_address_erases_its_opt_out_and_history_and_mail_to_it_stays_skipped(app, db, users,
                                                                                         smtp_settings, send):
    sink, _ = smtp_settings
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link in email 1")
    db.commit()
    erasure.erase(db, app.config.secret_key(), PAULA, "admin")
    assert db.scalars(select(Address)).all() == [] and db.scalars(select(AddressEvent)).all() == []
    later = send(to=[PAULA])
    assert statuses(db, later.email.id) == {PAULA: "skipped"} and sink.received == []


def test_the_migration_carries_records_opt_outs_over_to_their_addresses(tmp_path, empty_database_url):
    url = empty_database_url or f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0020")  # the revision before addresses
    engine = make_engine(url)
    columns = "first_name, last_name, email, phone, email_opt_out, email_opt_out_at, email_opt_out_reason, created_at"
    values = "'P', :last, :email, '', :out, :at, :reason, :created"
    created = datetime(2026, 1, 1)
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO contacts ({columns}, do_not_track) VALUES ({values}, :no)"), [
            {"last": "One", "email": "Paula@Example.test", "out": True, "at": datetime(2026, 2, 1, 10),
             "reason": "unsubscribed", "created": created, "no": False},
            {"last": "Two", "email": "ann@example.test", "out": False, "at": None, "reason": "", "created": created,
             "no": False}])
        connection.execute(text(f"INSERT INTO leads ({columns}, company, do_not_track) VALUES ({values}, '', :no)"), [
            {"last": "Lead", "email": "paula@example.test", "out": True, "at": datetime(2026, 1, 15, 9),
             "reason": "bounced: 5.1.1", "created": created, "no": False}])
        connection.execute(text("INSERT INTO accounts (name, email, phone, website, email_opt_out, "
                                "email_opt_out_at, email_opt_out_reason, created_at) "
                                "VALUES ('Shop', 'shop@example.test', '', '', :out, NULL, '', :created)"),
                           {"out": True, "created": created})
    upgrade(url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT address, opted_out_at, opt_out_source, opt_out_reason FROM addresses ORDER BY address")).all()
        assert [(row[0], str(row[1])[:16], row[2], row[3]) for row in rows] == [
            (PAULA, "2026-01-15 09:00", suppression.CARRIED_OVER, "bounced: 5.1.1"),  # the earliest of the two
            ("shop@example.test", str(rows[1][1])[:16], suppression.CARRIED_OVER, "")]  # no time kept: the upgrade's
        assert rows[1][1] is not None
        assert connection.execute(text("SELECT event, source FROM address_history")).all() == [
            (suppression.OPTED_OUT, suppression.CARRIED_OVER)] * 2
    engine.dispose()


# -- the public sources through a real Apache -------------------------------------------------------


@pytest.mark.slow
def test_an_unsubscribe_and_a_sendgrid_spam_report_through_apache_suppress_typed_addresses():
    import base64
    import json
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from support.apache import ApacheServer
    from test_apache import make_recipient
    from test_sendgrid import public_key_text

    from coretrack.delivery_reports import sendgrid

    server = ApacheServer("site")
    try:
        server.start()
        key = ec.generate_private_key(ec.SECP256R1())
        with server.session() as session:
            SettingsService(session, server.config).update({"sendgrid_webhook_key": public_key_text(key)},
                                                           user_name="test")
        unsubscribing = make_recipient(server, "paula@example.test")
        complaining = make_recipient(server, "quinn@example.test")

        reply = server.request("POST", f"{UNSUBSCRIBE_PATH}?t={unsubscribing.token}",
                               body=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert reply.status == 200, server.error_log()
        body = json.dumps([{"event": "spamreport", "sg_event_id": "ev-spam", "timestamp": int(time.time()),
                            "email": complaining.address, sendgrid.UNIQUE_ARG: complaining.token}]).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        reply = server.request("POST", "/webhooks/sendgrid", body=body, headers={
            "Content-Type": "application/json", sendgrid.SIGNATURE_HEADER: signature,
            sendgrid.TIMESTAMP_HEADER: stamp})
        assert reply.status == 204, server.error_log()

        with server.session() as session:
            prepared = prepare(session, to=["Paula@example.test", "quinn@example.test", "other@example.test"],
                               subject="News", html="<p>Hi</p>")
            assert {planned.address: planned.skip_reason for planned in prepared.recipients} == {
                "Paula@example.test": OPTED_OUT, "quinn@example.test": OPTED_OUT,
                "other@example.test": ""}
            assert {row.address: row.opt_out_source for row in session.scalars(select(Address))} == {
                "paula@example.test": suppression.ONE_CLICK, "quinn@example.test": suppression.SENDGRID}
    finally:
        server.stop()
