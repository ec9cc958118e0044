"""Housekeeping: duplicate warnings on create and import, deleting records (what happens is stated
first), and erasing a person for a data-protection request (audited without the address)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from coretrack.models import AccessEvent, Contact, Email, Erasure, Lead, Recipient
from coretrack.people import erasure
from coretrack.records import csv_import
from coretrack.records.store import create_record
from coretrack.reports.catalog import REPORTS
from coretrack.reports.filters import parse_filters
from coretrack.reports.tables import table_page
from coretrack.sending.compose import ERASED, compose, prepare
from coretrack.tracking import tokens


def add_contact(db, email="ann@example.test", first="Ann", last="Smith", **values) -> Contact:
    return create_record(db, "contact", {"first_name": first, "last_name": last, "email": email, **values})


def sent_email(app, db, users, *recipients: tuple[str, Contact | None], status: str = "sent") -> Email:
    email = Email(subject="News", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test",
                  status="sent", sent_at=datetime(2026, 3, 2, 9, 0))
    for address, contact in recipients:
        recipient = Recipient(address=address, name=contact.display_name if contact else "", status=status,
                              token=tokens.new_token(app.secret), contact_id=contact.id if contact else None,
                              access_count=2, first_access=datetime(2026, 3, 2, 10),
                              last_access=datetime(2026, 3, 2, 11))
        email.recipients.append(recipient)
    db.add(email)
    db.flush()
    for recipient in email.recipients:
        db.add(AccessEvent(recipient_id=recipient.id, at=datetime(2026, 3, 2, 10), hits=2, user_agent="Thunderbird",
                           ip="203.0.113.0"))
    db.commit()
    return email


def count(db, model, *conditions) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model).where(*conditions))


# -- duplicates --------------------------------------------------------------------------


def test_creating_a_contact_whose_address_a_lead_has_warns_first_and_creates_when_confirmed(staff, db):
    lead = create_record(db, "lead", {"first_name": "Ann", "last_name": "Smith", "email": "Ann@Example.test"})
    form = staff.get("/contacts/new").forms["record-form"]
    form["first_name"], form["last_name"], form["email"] = "Ann", "Smith", "ann@example.test"
    page = form.submit(status=200)
    warning = page.html.select_one("#duplicates")
    assert "already the address of" in warning.text and warning.select_one("a")["href"] == f"/leads/{lead.id}"
    assert count(db, Contact) == 0
    form = page.forms["record-form"]
    form["duplicate_ok"] = True
    form.submit(status=303)
    assert count(db, Contact) == 1


def test_an_import_skips_or_lists_rows_for_people_already_here(staff, db):
    add_contact(db)
    data = (b"first_name,last_name,email\r\nAnn,Smith,ANN@example.test\r\nBob,Jones,bob@example.test\r\n"
            b"Bobby,Jones,bob@example.test\r\nCid,Lee,\r\n")
    result = csv_import.import_csv(db, "contact", data)
    assert result.created == 2  # Bob and Cid
    assert result.duplicates == [(2, "ANN@example.test is already contact Ann Smith"),
                                 (4, "bob@example.test is already on line 3 of this file")]
    again = csv_import.import_csv(db, "lead", b"first_name,last_name,email\r\nAnn,Smith,ann@example.test\r\n",
                               skip_duplicates=False)
    assert again.created == 1 and again.duplicates and not again.duplicates_skipped
    form = staff.get("/contacts/import").forms["import-form"]
    form["file"] = ("people.csv", b"first_name,last_name,email\r\nAnn,S,ann@example.test\r\n")
    page = form.submit(status=200)
    assert "were skipped" in page.html.select_one("#duplicates").text


# -- deleting records ------------------------------------------------------------------------


def test_deleting_a_contact_says_what_happens_then_keeps_its_emails_and_the_reports(app, admin, db, users):
    ann = add_contact(db)
    email = sent_email(app, db, users, ("ann@example.test", ann), ("bob@example.test", None))
    filters = parse_filters({}, report=REPORTS["emails"])
    before = table_page(db, REPORTS["emails"], filters, 1, 25).items
    page = admin.get(f"/contacts/{ann.id}").click("Delete…")
    assert "1 email (1 recipient) sent to it stay" in page.html.select_one("#impact").text
    page.forms["delete-record"].submit(status=400)  # not confirmed: nothing deleted
    assert count(db, Contact) == 1
    form = page.forms["delete-record"]
    form["confirm"] = True
    assert "Deleted contact Ann Smith." in form.submit(status=303).follow().text
    assert count(db, Contact) == 0
    recipient = db.scalars(select(Recipient).where(Recipient.address == "ann@example.test")).one()
    assert recipient.contact_id is None and recipient.access_count == 2 and recipient.email_id == email.id
    assert table_page(db, REPORTS["emails"], filters, 1, 25).items == before


def test_only_admins_delete_records_and_only_with_the_forms_token(staff, admin, db):
    ann = add_contact(db)
    staff.get(f"/contacts/{ann.id}/delete", status=403)
    staff.post(f"/contacts/{ann.id}/delete", {"confirm": "yes"}, status=403)
    admin.post(f"/contacts/{ann.id}/delete", {"confirm": "yes"}, status=403)  # no CSRF token
    assert count(db, Contact) == 1


# -- erasing a person ------------------------------------------------------------------------


def test_erasing_a_person_removes_every_trace_keeps_the_counts_and_audits_without_the_address(
        app, admin, db, users):
    ann = add_contact(db)
    create_record(db, "lead", {"first_name": "Ann", "last_name": "S", "email": "ann@example.test"})
    email = sent_email(app, db, users, ("ann@example.test", ann), ("bob@example.test", None))
    queued = sent_email(app, db, users, ("Ann@example.test", None), status="pending")
    page = admin.get("/erase", params={"address": "ann@example.test"})
    assert page.html.select_one("#preview").text.startswith(
        "2 record(s), 2 recipient address(es) and 2 access event(s)")
    form = page.forms["erase"]
    form["confirm"] = True
    done = form.submit(status=303).follow()
    assert "Erased: 2 record(s), 2 recipient address(es), 2 access event(s)." in done.text
    assert count(db, Contact) == count(db, Lead) == 0
    assert count(db, Recipient, func.lower(Recipient.address) == "ann@example.test") == 0
    erased = db.scalars(select(Recipient).where(Recipient.address == erasure.ERASED_ADDRESS)).all()
    assert len(erased) == 2 and all(r.name == "" and r.contact_id is None for r in erased)
    assert [r.access_count for r in erased if r.email_id == email.id] == [2]  # the counts stay
    assert count(db, AccessEvent, AccessEvent.recipient_id.in_([r.id for r in erased])) == 0
    assert count(db, AccessEvent) == 1  # Bob's
    assert [r.status for r in erased if r.email_id == queued.id] == ["cancelled"]
    db.refresh(queued)
    assert queued.status == "cancelled"  # its one pending recipient was cancelled: the email's status follows
    audit = db.scalars(select(Erasure)).one()
    assert (audit.user_name, audit.records, audit.recipients, audit.events) == ("admin", 2, 2, 2)
    assert "ann@example.test" not in audit.address_digest and erasure.was_erased(db, app.secret, "ANN@example.test")
    assert "ann@example.test" not in done.html.select_one("table[aria-labelledby=erasures]").text


def test_erasing_needs_an_admin_a_confirmation_and_an_address(staff, admin, db):
    add_contact(db)
    staff.get("/erase", status=403)
    page = admin.get("/erase", params={"address": "ann@example.test"})
    form = page.forms["erase"]
    assert "tick the box" in form.submit(status=400).text
    assert "address" in admin.get("/erase", params={"address": "not an address"}, status=400).html.select_one(
        "#e-address").text
    assert count(db, Contact) == 1 and count(db, Erasure) == 0


@pytest.mark.parametrize("section", ["accounts", "leads"])
def test_every_record_type_has_its_delete_confirmation(admin, db, section):
    values = {"name": "Acme"} if section == "accounts" else {"first_name": "L", "last_name": "Lead"}
    record = create_record(db, section[:-1], values)
    page = admin.get(f"/{section}/{record.id}/delete")
    assert "No email was sent to it." in page.html.select_one("#impact").text


def test_mail_to_an_erased_person_is_skipped_although_their_opt_out_went_with_them(app, db, users):
    add_contact(db, email_opt_out="yes")
    erasure.erase(db, app.secret, "ann@example.test", "admin")
    prepared = prepare(db, to=["Ann@Example.test", "bob@example.test"], subject="Again", html="<p>x</p>")
    result = compose(db, app.config, users["sam"], prepared)
    statuses = {recipient.address: (recipient.status, recipient.reply) for recipient in result.email.recipients}
    assert statuses == {"Ann@Example.test": ("skipped", ERASED), "bob@example.test": ("pending", "")}


def test_the_erasure_check_of_a_mass_send_finds_erased_people_among_70000_addresses(app, db):
    # More addresses than one PostgreSQL statement takes parameters (65,535): the check goes in parts.
    erasure.erase(db, app.secret, "ann@example.test", "admin")
    erasure.erase(db, app.secret, "zoe@example.test", "admin")
    addresses = [f"person{number:05}@example.test" for number in range(70_000)]
    addresses[10] = "Ann@Example.test"
    addresses[-10] = "zoe@example.test"

    assert erasure.erased(db, app.secret, addresses) == {"Ann@Example.test", "zoe@example.test"}
