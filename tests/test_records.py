"""Contacts, accounts and leads: forms, lists, search, CSV import, related emails."""

from __future__ import annotations

import secrets
from datetime import datetime

import pytest
import webtest
from sqlalchemy import func, select

from coretrack.models import Account, Contact, Email, Lead, Recipient, utcnow
from coretrack.people import suppression
from coretrack.records import csv_import
from coretrack.records.addresses import recipient_for
from coretrack.records.related import related_emails
from coretrack.records.search import record_choices, search_records
from coretrack.records.store import IMPORT_OPT_OUT, STAFF_OPT_OUT, account_label, create_record
from coretrack.settings import SettingsService
from coretrack.validation import ValidationError


def count(db, model) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


def fill(form: webtest.Form, **values) -> webtest.Form:
    for name, value in values.items():
        form[name] = value
    return form


def add_account(db, name="Acme Ltd", **values) -> Account:
    return create_record(db, "account", {"name": name, **values})


def add_contact(db, first="Ada", last="Lovelace", **values) -> Contact:
    return create_record(db, "contact", {"first_name": first, "last_name": last, **values})


def add_email(db, sender, subject, sent_at, recipients) -> Email:
    """An email as the sender would leave it; ``recipients`` are Recipient keyword dicts."""
    email = Email(subject=subject, html_body="<p>hi</p>", sender_id=sender.id, from_address="crm@example.test",
                  status="sent", sent_at=sent_at)
    for values in recipients:
        email.recipients.append(Recipient(token=secrets.token_urlsafe(24), status="sent", **values))
    db.add(email)
    db.commit()
    return email


# -- create and edit through the forms ----------------------------------------------------


def test_a_contact_created_through_the_form_is_shown_on_its_page(staff, db):
    account = add_account(db)
    form = fill(staff.get("/contacts/new").forms["record-form"], first_name="Ada", last_name="Lovelace",
                email="ada@example.test", phone="+44 1", account=str(account.id))
    form["email_opt_out"] = True
    response = form.submit(status=303).follow()
    assert "Created contact Ada Lovelace." in response
    contact = db.scalars(select(Contact)).one()
    assert (contact.email, contact.account_id, contact.email_opt_out) == ("ada@example.test", account.id, True)
    assert response.request.path == f"/contacts/{contact.id}"
    assert "ada@example.test" in response and "Acme Ltd" in response


def test_an_account_created_through_the_form_keeps_its_website(staff, db):
    form = fill(staff.get("/accounts/new").forms["record-form"], name="Acme Ltd", website="acme.example")
    form.submit(status=303)
    assert db.scalars(select(Account)).one().website == "https://acme.example"


def test_a_lead_created_through_the_form_keeps_its_company(staff, db):
    form = fill(staff.get("/leads/new").forms["record-form"], first_name="Grace", last_name="Hopper",
                company="Navy", email="grace@example.test")
    form.submit(status=303).follow()
    lead = db.scalars(select(Lead)).one()
    assert (lead.display_name, lead.company, lead.email_opt_out) == ("Grace Hopper", "Navy", False)


@pytest.mark.parametrize("section, model, values, changed", [
    ("contacts", Contact, {"first_name": "Ada", "last_name": "Lovelace"}, ("last_name", "Byron")),
    ("accounts", Account, {"name": "Acme Ltd"}, ("name", "Acme Group")),
    ("leads", Lead, {"first_name": "Grace", "last_name": "Hopper"}, ("last_name", "Murray")),
])
def test_each_record_type_is_edited_through_its_form(staff, db, section, model, values, changed):
    record = create_record(db, model.record_type, {**values, "email": "ada@example.test"})
    form = staff.get(f"/{section}/{record.id}/edit").forms["record-form"]
    assert not form["email_opt_out"].checked
    form[changed[0]] = changed[1]
    form["email_opt_out"] = True
    response = form.submit(status=303).follow()
    assert "Saved" in response and changed[1] in response
    db.expire_all()
    saved = db.get(model, record.id)
    assert getattr(saved, changed[0]) == changed[1]
    assert saved.email_opt_out is True
    assert suppression.suppressed(db, ["ada@example.test"]) == {"ada@example.test"}


def test_a_contact_can_be_moved_to_no_account(staff, db):
    contact = add_contact(db, account=str(add_account(db).id))
    form = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]
    fill(form, account="").submit(status=303)
    db.expire_all()
    assert db.get(Contact, contact.id).account_id is None


def test_invalid_fields_are_shown_next_to_each_field_and_nothing_is_saved(staff, db):
    form = fill(staff.get("/contacts/new").forms["record-form"], first_name="Ada", last_name="", email="not-an-email")
    response = form.submit(status=400)
    assert count(db, Contact) == 0
    assert response.html.select_one("#e-last_name").text == "the last name is required"
    assert "not a valid email address" in response.html.select_one("#e-email").text
    assert response.html.select_one("#f-last_name")["aria-invalid"] == "true"
    # What the user typed is kept.
    assert response.forms["record-form"]["first_name"].value == "Ada"
    assert response.forms["record-form"]["email"].value == "not-an-email"


def test_an_invalid_edit_changes_nothing(staff, db):
    account = add_account(db, email="info@acme.example")
    form = fill(staff.get(f"/accounts/{account.id}/edit").forms["record-form"], name="New name", email="bad@")
    response = form.submit(status=400)
    assert response.html.select_one("#e-email") is not None
    db.expire_all()
    assert (db.get(Account, account.id).name, db.get(Account, account.id).email) == ("Acme Ltd", "info@acme.example")


def test_a_contact_cannot_point_at_an_account_that_does_not_exist(staff, db):
    token = staff.get("/contacts/new").forms["record-form"]["csrf_token"].value
    response = staff.post("/contacts/new", {"csrf_token": token, "first_name": "Ada", "last_name": "L",
                                            "account": "999"}, status=400)
    assert response.html.select_one("#e-account").text == "choose an account from the list"
    assert count(db, Contact) == 0


def test_names_with_line_breaks_are_refused_so_they_cannot_inject_mail_headers(db):
    with pytest.raises(ValidationError) as raised:
        create_record(db, "lead", {"first_name": "Eve\r\nBcc: all@example.test", "last_name": "X"})
    assert raised.value.errors == {"first_name": "the first name must be a single line"}
    assert count(db, Lead) == 0


def test_a_website_must_be_a_web_address(db):
    with pytest.raises(ValidationError) as raised:
        create_record(db, "account", {"name": "Acme", "website": "javascript:alert(1)"})
    assert "website" in raised.value.errors


def test_a_post_without_csrf_token_is_refused_and_changes_nothing(staff, db):
    account = add_account(db)
    staff.post("/accounts/new", {"name": "Forged"}, status=403)
    staff.post(f"/accounts/{account.id}/edit", {"name": "Forged"}, status=403)
    assert [a.name for a in db.scalars(select(Account))] == ["Acme Ltd"]


def test_a_missing_record_is_not_found(staff):
    staff.get("/contacts/999", status=404)
    staff.get("/leads/999/edit", status=404)


def test_anonymous_visitors_are_challenged(anon):
    anon.get("/contacts", status=401)


# -- markup in user data -----------------------------------------------------------------


def test_markup_in_names_is_shown_escaped_on_the_list_and_detail_pages(staff, db):
    contact = add_contact(db, last="<script>alert(1)</script>")
    for path in ("/contacts", f"/contacts/{contact.id}"):
        response = staff.get(path)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
        assert "<script>" not in response.text


# -- lists: search and pagination --------------------------------------------------------


def test_search_matches_names_email_and_account_case_insensitively(staff, db):
    acme = add_account(db, "Acme Ltd")
    add_contact(db, "Ada", "Lovelace", email="ada@analytical.example", account=str(acme.id))
    add_contact(db, "Charles", "Babbage", email="cb@engines.example")
    names = lambda response: [a.text for a in response.html.select("tbody td.pick + td a")]  # noqa: E731
    assert names(staff.get("/contacts", {"q": "LOVE"})) == ["Ada Lovelace"]
    assert names(staff.get("/contacts", {"q": "engines"})) == ["Charles Babbage"]
    assert names(staff.get("/contacts", {"q": "acme"})) == ["Ada Lovelace"]
    assert names(staff.get("/contacts", {"q": "ada lovelace"})) == ["Ada Lovelace"]
    assert names(staff.get("/contacts")) == ["Charles Babbage", "Ada Lovelace"]  # by last name


def test_search_wildcards_match_only_themselves(db):
    add_contact(db, "Ada", "Lovelace")
    add_contact(db, "Per", "Cent%")
    assert [c.last_name for c in search_records(db, "contact", "%", 1, 25).items] == ["Cent%"]
    assert search_records(db, "contact", "_", 1, 25).total == 0


def test_search_of_leads_and_accounts(db):
    add_account(db, "Initech", email="info@initech.example")
    create_record(db, "lead", {"first_name": "Peter", "last_name": "Gibbons", "company": "Initrode"})
    assert [a.name for a in search_records(db, "account", "initech.example", 1, 25).items] == ["Initech"]
    assert [lead.last_name for lead in search_records(db, "lead", "initrode", 1, 25).items] == ["Gibbons"]


def test_no_match_says_so_and_an_empty_list_offers_create_and_import(staff, db):
    empty = staff.get("/leads")
    assert empty.html.select_one(".empty a[href='/leads/new']") is not None
    assert empty.html.select_one(".empty a[href='/leads/import']") is not None
    add_account(db)
    assert "No accounts match “zzz”" in staff.get("/accounts", {"q": "zzz"})


def test_lists_are_paginated_by_the_page_size_setting(staff, db, config):
    SettingsService(db, config).update({"page_size": "5"}, user_name="admin")
    for number in range(12):
        add_contact(db, "Person", f"Number {number:02d}")
    first = staff.get("/contacts")
    assert len(first.html.select("tbody tr")) == 5
    assert "Page 1 of 3 (12 rows)" in first
    last = first.click(href="page=2").click(href="page=3")
    assert [a.text for a in last.html.select("tbody td.pick + td a")] == ["Person Number 10", "Person Number 11"]


def test_pagination_keeps_the_search(staff, db, config):
    SettingsService(db, config).update({"page_size": "5"}, user_name="admin")
    for number in range(7):
        add_contact(db, "Match", f"M{number}")
        add_contact(db, "Other", f"O{number}")
    second = staff.get("/contacts", {"q": "match"}).click(href="page=2")
    assert [a.text for a in second.html.select("tbody td.pick + td a")] == ["Match M5", "Match M6"]


# -- CSV import --------------------------------------------------------------------------


def upload(staff, section, data: bytes, status=200):
    form = staff.get(f"/{section}/import").forms["import-form"]
    form["file"] = webtest.Upload("records.csv", data, "text/csv")
    return form.submit(status=status)


def test_csv_import_keeps_good_rows_and_reports_bad_rows_by_line(staff, db):
    add_account(db, "Acme Ltd")
    data = (
        b"first_name,last_name,email,phone,account,email_opt_out\r\n"
        b"Ada,Lovelace,ada@example.test,,Acme Ltd,no\r\n"
        b"Bad,,x@example.test,,,\r\n"  # line 3: no last name
        b"\r\n"
        b"Charles,Babbage,not-an-email,,,\r\n"  # line 5
        b'Multi,Line,,"+1\n555",,\r\n'  # lines 6-7, one row: a line break in a field
        b"Alan,Turing,,,Nowhere Inc,\r\n"  # line 8: unknown account
        b'"Grace","Hopper, ""Amazing""",grace@example.test,,,yes\r\n'
    )
    response = upload(staff, "contacts", data)
    assert "Created 2 contacts." in response
    rows = [[td.text for td in tr.select("td")] for tr in response.html.select("tbody tr")]
    assert [line for line, _ in rows] == ["3", "5", "6", "8"]
    assert "last_name" in rows[0][1] and "not a valid email address" in rows[1][1]
    assert "single line" in rows[2][1] and "Nowhere Inc" in rows[3][1]
    contacts = {c.last_name: c for c in db.scalars(select(Contact))}
    assert set(contacts) == {"Lovelace", 'Hopper, "Amazing"'}
    assert contacts["Lovelace"].account.name == "Acme Ltd"
    assert contacts['Hopper, "Amazing"'].email_opt_out is True


def test_csv_import_handles_a_byte_order_mark_and_header_spelling(db):
    data = "\ufeffName,Email,Website\nAcme Ltd,info@acme.example,acme.example\n".encode("utf-8")
    result = csv_import.import_csv(db, "account", data)
    assert (result.created, result.errors) == (1, [])
    assert db.scalars(select(Account)).one().website == "https://acme.example"


def test_csv_import_reports_unknown_columns_once(db):
    data = b"first_name,last_name,shoe_size\nAda,Lovelace,5\nGrace,Hopper,6\n"
    result = csv_import.import_csv(db, "lead", data)
    assert result.created == 2
    assert len(result.errors) == 1 and result.errors[0][0] == 1 and "shoe_size" in result.errors[0][1]


def test_csv_import_reports_rows_with_too_many_values(db):
    result = csv_import.import_csv(db, "lead", b"first_name,last_name\nAda,Lovelace,extra\nGrace,Hopper\n")
    assert result.created == 1
    assert [line for line, _ in result.errors] == [2]


@pytest.mark.parametrize("data, message", [
    (b"", "must name the columns"),
    (b"Ada,Lovelace\nGrace,Hopper\n", "must name the columns"),
    (b"first_name,email\nAda,ada@example.test\n", "last_name"),
    (b"first_name,last_name,Last Name\nAda,L,L\n", "more than once"),
    ("first_name,last_name\nRené,Descartes\n".encode("latin-1"), "not UTF-8"),
])
def test_a_file_without_a_usable_header_is_refused(db, data, message):
    with pytest.raises(ValidationError) as raised:
        csv_import.import_csv(db, "contact", data)
    assert message in raised.value.errors["file"]
    assert count(db, Contact) == 0


def test_the_import_page_shows_a_refused_file_next_to_the_field(staff, db):
    response = upload(staff, "leads", b"foo;bar\n1;2\n", status=400)
    assert "must name the columns" in response.html.select_one("#e-file").text
    assert count(db, Lead) == 0


# -- related emails ----------------------------------------------------------------------


def test_a_contact_page_lists_its_emails_with_access_counts_newest_first(staff, db, users):
    ada, other = add_contact(db, "Ada", "Lovelace", email="ada@example.test"), add_contact(db, "Bo", "B")
    add_email(db, users["sam"], "Older news", datetime(2024, 1, 1, 9), [
        {"address": "ada@example.test", "contact_id": ada.id, "access_count": 2, "human_opens": 1,
         "last_access": datetime(2024, 1, 2, 10, 30)},
    ])
    newer = add_email(db, users["admin"], "Newer <b>news</b>", datetime(2024, 3, 1, 9), [
        {"address": "ada@example.test", "contact_id": ada.id, "access_count": 0},
        {"address": "bo@example.test", "contact_id": other.id, "access_count": 7},
    ])
    listed = related_emails(db, "contact", ada.id)
    assert [(e.subject, e.sender, e.access_count, e.human_opens) for e in listed] == [
        ("Newer <b>news</b>", "admin", 0, 0), ("Older news", "sam", 2, 1)]
    assert listed[1].last_access == datetime(2024, 1, 2, 10, 30)

    page = staff.get(f"/contacts/{ada.id}")
    rows = page.html.select("#emails + .table-wrap tbody tr")
    assert [[td.text.strip() for td in row.select("td")] for row in rows] == [
        ["Newer <b>news</b>", "2024-03-01 09:00", "admin", "sent", "0", "0", "—", "0", "0"],
        ["Older news", "2024-01-01 09:00", "sam", "sent", "2", "1", "2024-01-02 10:30", "0", "0"],
    ]
    assert rows[0].select_one("a")["href"] == f"/emails/{newer.id}"
    assert page.html.select_one(f"a[href='/emails/new?contact={ada.id}']").text == "Send email"


def test_an_account_rolls_up_the_emails_of_its_contacts(staff, db, users):
    acme = add_account(db, "Acme Ltd", email="info@acme.example")
    ada = add_contact(db, "Ada", "L", email="ada@acme.example", account=str(acme.id))
    bob = add_contact(db, "Bob", "M", email="bob@acme.example", account=str(acme.id))
    stranger = add_contact(db, "Eve", "X", email="eve@example.test")
    sam = users["sam"]
    add_email(db, sam, "To the account", datetime(2024, 1, 1), [
        {"address": "info@acme.example", "account_id": acme.id, "access_count": 5,
         "last_access": datetime(2024, 1, 3)}])
    add_email(db, sam, "To both contacts", datetime(2024, 2, 1), [
        {"address": "ada@acme.example", "contact_id": ada.id, "access_count": 1, "last_access": datetime(2024, 2, 2)},
        {"address": "bob@acme.example", "contact_id": bob.id, "access_count": 4, "last_access": datetime(2024, 2, 5)},
        {"address": "eve@example.test", "contact_id": stranger.id, "access_count": 100}])
    add_email(db, sam, "To a stranger", datetime(2024, 3, 1), [
        {"address": "eve@example.test", "contact_id": stranger.id, "access_count": 1}])

    listed = related_emails(db, "account", acme.id)
    assert [(e.subject, e.access_count, e.last_access) for e in listed] == [
        ("To both contacts", 5, datetime(2024, 2, 5)), ("To the account", 5, datetime(2024, 1, 3))]
    assert [e.subject for e in related_emails(db, "contact", bob.id)] == ["To both contacts"]

    page = staff.get(f"/accounts/{acme.id}")
    assert [a.text for a in page.html.select("#emails + .table-wrap tbody td:first-child a")] == [
        "To both contacts", "To the account"]
    assert [a.text for a in page.html.select("#contacts + .table-wrap tbody a")] == ["Ada L", "Bob M"]


def test_related_emails_are_one_query_however_many_emails(db, users, app):
    from sqlalchemy import event

    contact = add_contact(db, email="ada@example.test")
    for number in range(5):
        add_email(db, users["sam"], f"Email {number}", datetime(2024, 1, number + 1),
                  [{"address": "ada@example.test", "contact_id": contact.id, "access_count": number}])
    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(app.engine, "before_cursor_execute", listen)
    try:
        listed = related_emails(db, "contact", contact.id)
    finally:
        event.remove(app.engine, "before_cursor_execute", listen)
    assert [e.access_count for e in listed] == [4, 3, 2, 1, 0]
    assert len(statements) == 1 and "GROUP BY" in statements[0]


def test_a_lead_page_links_to_compose_for_the_lead(staff, db):
    lead = create_record(db, "lead", {"first_name": "G", "last_name": "H", "email": "g@example.test"})
    page = staff.get(f"/leads/{lead.id}")
    assert page.html.select_one(f"a[href='/emails/new?lead={lead.id}']") is not None
    assert "No email sent to this lead yet." in page


# -- for the compose page ----------------------------------------------------------------


def test_recipient_for_gives_address_name_and_opt_out(db):
    contact = add_contact(db, email="ada@example.test", email_opt_out="on")
    address, name, record = recipient_for(db, "contact", contact.id)
    assert (address, name, record.id) == ("ada@example.test", "Ada Lovelace", contact.id)
    assert recipient_for(db, "contact", contact.id).opted_out is True


def test_recipient_for_refuses_a_record_without_an_address(db):
    account = add_account(db)
    with pytest.raises(ValidationError) as raised:
        recipient_for(db, "account", account.id)
    assert "no email address" in raised.value.errors["account"]


def test_record_choices_offers_only_records_with_an_address(db):
    add_contact(db, "Ada", "Lovelace", email="ada@example.test")
    add_contact(db, "Ada", "Nomail")
    assert [c.last_name for c in record_choices(db, "contact", "ada")] == ["Lovelace"]


def test_links_and_redirects_keep_the_url_prefix_the_app_is_mounted_under(app, users, db):
    mounted = webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam", "SCRIPT_NAME": "/crm"})
    account = add_account(db)
    form = mounted.get("/crm/contacts/new").forms["record-form"]
    fill(form, first_name="Ada", last_name="Lovelace", email="ada@example.test", account=str(account.id))
    response = form.submit(status=303)
    assert response.headers["Location"].split("?")[0].endswith("/crm/contacts/1")
    page = response.follow()
    assert page.html.select_one("a[href='/crm/emails/new?contact=1']") is not None
    assert page.html.select_one("a[href='/crm/accounts/1']") is not None
    listing = mounted.get("/crm/contacts")
    assert listing.html.select_one("a[href='/crm/contacts/1']") is not None


# -- opting out: when and why -------------------------------------------------------------


def test_staff_opting_a_record_out_records_when_and_why_and_lifting_it_forgets_them(staff, db):
    contact = add_contact(db, email="ada@example.test")
    form = staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]
    form["email_opt_out"] = True
    page = form.submit(status=303).follow()
    db.expire_all()
    assert contact.email_opt_out and contact.email_opt_out_reason == STAFF_OPT_OUT
    assert contact.email_opt_out_at is not None and (utcnow() - contact.email_opt_out_at).total_seconds() < 60
    assert STAFF_OPT_OUT in page.html.select_one("p.alert").text
    form = page.forms["lift-opt-out"]
    form["reason"] = "asked to get email again"
    form.submit(status=303)
    db.expire_all()
    assert (contact.email_opt_out, contact.email_opt_out_at, contact.email_opt_out_reason) == (False, None, "")


def test_an_imported_opt_out_says_it_was_imported(db):
    result = csv_import.import_csv(db, "lead", b"first_name,last_name,email_opt_out\r\nGrace,Hopper,yes\r\n")
    assert result.created == 1
    lead = db.scalars(select(Lead)).one()
    assert (lead.email_opt_out, lead.email_opt_out_reason) == (True, IMPORT_OPT_OUT)


def test_opting_out_a_recipient_opts_out_every_record_with_its_address_and_keeps_the_first_reason(db, users):
    contact = add_contact(db, email="Ada@Example.test")
    lead = create_record(db, "lead", {"first_name": "Ada", "last_name": "L", "email": "ada@example.test"})
    other = add_contact(db, first="Grace", email="grace@example.test")
    email = add_email(db, users["sam"], "Hello", datetime(2026, 1, 1), [
        {"address": "ada@example.test", "contact_id": contact.id}])
    recipient = email.recipients[0]
    at = datetime(2026, 2, 3, 4, 5)
    assert suppression.opt_out_recipient(db, recipient, suppression.LINK, "unsubscribed by the recipient", at)
    db.commit()
    db.expire_all()
    assert [(r.email_opt_out, r.email_opt_out_at, r.email_opt_out_reason) for r in (contact, lead)] == [
        (True, at, "unsubscribed by the recipient")] * 2
    assert other.email_opt_out is False
    assert not suppression.opt_out_recipient(db, recipient, suppression.SENDGRID, "again")
    # A record given the address later shows the first when and why.
    account = add_account(db, email="ADA@example.test")
    assert (account.email_opt_out, account.email_opt_out_at, account.email_opt_out_reason) == (
        True, at, "unsubscribed by the recipient")


# -- the account picker ------------------------------------------------------------------------


def test_the_contact_form_searches_accounts_instead_of_listing_them_all(staff, db):
    ids = {number: add_account(db, f"Company {number:02}").id for number in range(60)}
    page = staff.get("/contacts/new")
    assert page.html.select("select#f-account") == [] and page.html.select("datalist#f-account-choices option") == []
    picker = page.html.select_one("input#f-account")
    assert picker["data-choices"] == "/accounts/choices" and picker["list"] == "f-account-choices"
    suggestions = staff.get("/accounts/choices", params={"q": "company 1"}).json["accounts"]
    # Every word anywhere in the name, as the list's search: 01, 10-19, 21, 31, 41, 51.
    assert suggestions == [f"Company {number:02} #{ids[number]}" for number in range(60) if "1" in f"{number:02}"]
    assert len(staff.get("/accounts/choices", params={"q": "company"}).json["accounts"]) == 20  # a page of them


def test_the_suggestions_need_a_login(anon):
    anon.get("/accounts/choices", params={"q": "a"}, status=401)


@pytest.mark.parametrize("typed", ["{label}", "acme ltd", "{id}"], ids=["a suggestion", "the exact name", "an id"])
def test_an_account_is_chosen_by_its_suggestion_its_exact_name_or_its_id(staff, db, typed):
    acme = add_account(db, "Acme Ltd")
    add_account(db, "Acme Group")
    form = fill(staff.get("/contacts/new").forms["record-form"], first_name="Ada", last_name="Lovelace",
                account=typed.format(label=account_label(acme), id=acme.id))
    contact_page = form.submit(status=303).follow()
    contact = db.scalars(select(Contact)).one()
    assert contact.account_id == acme.id and "Acme Ltd" in contact_page.text
    assert staff.get(f"/contacts/{contact.id}/edit").forms["record-form"]["account"].value == f"Acme Ltd #{acme.id}"


@pytest.mark.parametrize("typed, message", [
    ("Acme", "several accounts are named 'Acme'"),
    ("Initech", "there is no account named 'Initech'"),
    ("Acme #999999", "choose an account from the list"),
])
def test_a_name_that_names_no_single_account_is_refused_and_nothing_saved(staff, db, typed, message):
    add_account(db, "Acme")
    add_account(db, "ACME")
    page = fill(staff.get("/contacts/new").forms["record-form"], first_name="Ada", last_name="Lovelace",
                account=typed).submit(status=400)
    assert message in page.html.select_one("#e-account").text
    assert db.scalars(select(Contact)).all() == []
