"""Mass sends: from the contacts, accounts and leads lists, the rows ticked or every record the search
matches, composed as one email; the preview lists who is skipped (opted out, no address, duplicate)
before anything is saved, and the server resolves the list again at the send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, select

from coretrack.models import Account, Contact, Email, Lead, Recipient
from coretrack.people import suppression


@pytest.fixture
def crowd(db):
    acme = Account(name="Acme Tools", email="office@acme.test")
    globex = Account(name="Globex", email="")
    people = [
        Contact(first_name="Ada", last_name="Acme-One", email="ada@acme.test", account=acme),
        Contact(first_name="Bob", last_name="Acme-Two", email="bob@acme.test", account=acme),
        Contact(first_name="Cy", last_name="Acme-Opted", email="cy@acme.test", account=acme),
        Contact(first_name="Di", last_name="Acme-Nomail", email="", account=acme),
        Contact(first_name="Ed", last_name="Acme-Twin", email="ADA@acme.test", account=acme),
        Contact(first_name="Flo", last_name="Elsewhere", email="flo@globex.test", account=globex),
    ]
    db.add_all([acme, globex, *people])
    suppression.opt_out_record(db, people[2], suppression.STAFF, "asked by phone")
    db.commit()
    return {"acme": acme, "globex": globex, **{person.first_name: person for person in people}}


def compose_from_list(client, path: str, scope: str, tick: list[int] = (), with_contacts: bool = False,
                      status: int = 200):
    form = client.get(path).forms["mass-email"]
    for box in form.fields.get("ids", []):
        box.checked = int(box._value) in tick
    if with_contacts:
        form["with_contacts"] = True
    return form.submit("scope", value=scope, status=status)


def fill_and_preview(page):
    form = page.forms["compose"]
    form["subject"] = "News for $contacts-firstname$"
    form["html"] = "<p>Hello $contacts-firstname$</p>"
    return form.submit("action", value="preview")


def test_all_contacts_matching_a_search_get_one_message_each_and_the_preview_says_who_is_skipped(
        staff, db, crowd, smtp_settings):
    sink, _ = smtp_settings
    compose = compose_from_list(staff, "/contacts?q=acme-", "all")
    assert "To all 5 contacts matching “acme-”" in compose.html.select_one("#audience").text
    preview = fill_and_preview(compose)
    assert db.scalar(select(func.count()).select_from(Email)) == 0  # nothing saved by a preview
    skipped = {row.select("td")[0].text: row.select("td")[2].text for row in preview.html.select("#skipped tbody tr")}
    assert skipped == {
        "contact Cy Acme-Opted": "opted out of email", "contact Di Acme-Nomail": "no email address",
        "contact Ed Acme-Twin": "duplicate: ADA@acme.test already gets this email (contact Ada Acme-One)"}
    assert "2 will get it; 3 skipped" in preview.text
    preview.forms["compose"].submit("action", value="send", status=303)
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ada@acme.test", "bob@acme.test"]
    assert {mail.message["Subject"] for mail in sink.received} == {"News for Ada", "News for Bob"}
    email = db.scalars(select(Email)).one()
    assert {(r.address, r.status) for r in email.recipients} == {
        ("ada@acme.test", "sent"), ("bob@acme.test", "sent"), ("cy@acme.test", "skipped")}


def test_only_the_rows_ticked_are_emailed(staff, db, crowd, smtp_settings):
    sink, _ = smtp_settings
    compose = compose_from_list(staff, "/contacts", "selected", tick=[crowd["Bob"].id, crowd["Flo"].id])
    assert "To the 2 contacts ticked" in compose.html.select_one("#audience").text
    fill_and_preview(compose).forms["compose"].submit("action", value="send", status=303)
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["bob@acme.test", "flo@globex.test"]


def test_nothing_ticked_is_a_clear_error_and_nothing_is_saved(staff, db, crowd):
    page = compose_from_list(staff, "/contacts", "selected", status=400)
    assert "tick at least one of the contacts" in page.html.select_one("#e-audience").text
    assert db.scalar(select(func.count()).select_from(Email)) == 0


def test_an_account_means_its_address_and_if_chosen_its_contacts(staff, db, crowd, smtp_settings):
    sink, _ = smtp_settings
    alone = fill_and_preview(compose_from_list(staff, "/accounts?q=acme", "all"))
    assert [row.select("td")[0].text for row in alone.html.select("table[aria-label=Recipients] tbody tr")] == [
        "office@acme.test"]
    compose = compose_from_list(staff, "/accounts", "selected", tick=[crowd["acme"].id], with_contacts=True)
    assert "the 1 account ticked and their contacts" in compose.html.select_one("#audience").text
    fill_and_preview(compose).forms["compose"].submit("action", value="send", status=303)
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == [
        "ada@acme.test", "bob@acme.test", "office@acme.test"]  # the opted-out, address-less and twin skipped


def test_leads_too_and_typed_addresses_go_with_the_list(staff, db, smtp_settings):
    sink, _ = smtp_settings
    db.add_all([Lead(first_name="Gil", last_name="Prospect", company="X", email="gil@x.test"),
                Lead(first_name="Hal", last_name="Prospect", company="Y", email="hal@y.test")])
    db.commit()
    form = compose_from_list(staff, "/leads?q=prospect", "all").forms["compose"]
    form["to"] = "boss@example.test, gil@x.test"  # Gil is on the list too: one message
    form["subject"], form["html"] = "Offer", "<p>Offer</p>"
    form.submit("action", value="send", status=303)
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["boss@example.test", "gil@x.test", "hal@y.test"]


def test_a_list_is_resolved_in_a_constant_number_of_queries(staff, app, db):
    """Preview and send of 1,000 records take as many statements as of 100: the page stays fast for
    10,000 (scripts/bench-mass measures the time)."""
    # Scheduled, so that neither send goes out within the request.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    def statements(count: int, last_name: str) -> tuple[int, int]:
        db.execute(insert(Contact), [{"first_name": f"P{number}", "last_name": last_name,
                                      "email": f"p{number}.{last_name}@example.test"} for number in range(count)])
        db.commit()
        seen = []
        listener = lambda *args: seen.append(1)  # noqa: E731
        page = staff.get(f"/emails/new?audience=contacts&scope=all&q={last_name}")
        form = page.forms["compose"]
        form["subject"], form["html"], form["send_at"] = "Later", "<p>Hi</p>", tomorrow
        event.listen(app.engine, "before_cursor_execute", listener)
        try:
            preview = form.submit("action", value="preview")
            previewed = len(seen)
            assert f"The first 100 of {count} recipients" in preview.text or count <= 100
            form.submit("action", value="send", status=303)
        finally:
            event.remove(app.engine, "before_cursor_execute", listener)
        return previewed, len(seen) - previewed

    small, large = statements(100, "Hundred"), statements(1000, "Thousand")
    assert large == small, (small, large)
    assert db.scalar(select(func.count()).select_from(Recipient)) == 1100


@pytest.mark.parametrize("query", ["audience=<script>x</script>&scope=all", "audience=people&scope=all",
                                   "audience=contacts&scope=some&ids=abc", "audience=contacts&scope=some"])
def test_compose_sent_a_list_that_names_no_records_says_so_at_once(staff, query):
    """A crafted or stale link from a list page: the compose page names the problem (400), never a 500."""
    page = staff.get(f"/emails/new?{query}", status=400)
    assert page.html.select_one("#e-audience").get_text(strip=True)
    assert "<script>x" not in page.text
