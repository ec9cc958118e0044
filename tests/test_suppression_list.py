"""The suppression list: every suppressed address with why, when and its evidence, searched, paged,
exported and imported as CSV; reinstated only by an admin with a reason (a complaint or an erasure
confirmed as well), audited in the address's history; the same through the API."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
import webtest
from sqlalchemy import select

from coretrack.models import Address, AddressEvent, MailReport, Setting, utcnow
from coretrack.people import erasure, suppression
from coretrack.sending.compose import compose, prepare

PAULA = "paula@example.test"
ONE_OF_EACH = [
    ("ulla@example.test", suppression.LINK, "", "unsubscribed with the link in email 1"),
    ("hank@example.test", suppression.BOUNCE, "", "bounced: 5.1.1 user unknown"),
    ("sofia@example.test", suppression.SOFT_BOUNCES, "", "3 soft bounces within 7 days"),
    ("carl@example.test", suppression.COMPLAINT_REPORT, "", "complained: abuse report from fbl.example.net"),
    ("dora@example.test", suppression.SENDGRID, suppression.PROVIDER_DROP, "dropped by SendGrid: Invalid"),
    ("stan@example.test", suppression.STAFF, "", "asked by phone"),
    ("ivy@example.test", suppression.IMPORT, "", "imported opted out"),
]


@pytest.fixture
def listed(db):
    """One suppressed address of each category but erasure, each a minute after the one before."""
    for minute, (address, source, category, reason) in enumerate(ONE_OF_EACH):
        suppression.opt_out(db, address, source, reason, datetime(2026, 12, 1, 9, minute), category=category)
    db.commit()


def rows(page) -> list[list[str]]:
    return [[cell.text.strip() for cell in row.select("td")] for row in page.html.select("#suppressions tbody tr")]


def test_the_page_lists_every_suppressed_address_with_why_when_and_the_reason(staff, listed):
    page = staff.get("/suppressions")
    assert [row[:2] for row in rows(page)] == [
        ["ivy@example.test", "Import"], ["stan@example.test", "Staff"], ["dora@example.test", "Provider drop"],
        ["carl@example.test", "Complaint"], ["sofia@example.test", "Repeated soft bounces"],
        ["hank@example.test", "Hard bounce"], ["ulla@example.test", "Unsubscribed"]]
    assert rows(page)[-1][2:] == ["2026-12-01 09:00", "unsubscribed with the link in email 1", "—"]


def test_search_and_the_category_narrow_the_list(staff, listed):
    assert [row[0] for row in rows(staff.get("/suppressions", {"q": "  HANK@"}))] == ["hank@example.test"]
    assert [row[0] for row in rows(staff.get("/suppressions", {"category": "complaint"}))] == ["carl@example.test"]
    # LIKE's own characters are searched for as such.
    assert rows(staff.get("/suppressions", {"q": "%"})) == []
    assert "No suppressed address matches" in staff.get("/suppressions", {"q": "nobody"}).text


def test_the_list_is_paged(app, db, staff):
    db.add(Setting(key="page_size", value="2"))
    for number in range(5):
        suppression.opt_out(db, f"p{number}@example.test", suppression.LINK, "unsubscribed",
                            datetime(2026, 12, 1, 9, number))
    db.commit()
    second = staff.get("/suppressions", {"page": "2"})
    assert [row[0] for row in rows(second)] == ["p2@example.test", "p1@example.test"]
    assert "Page 2 of 3 (5 rows)" in second.html.select_one(".pager").text


def test_an_admin_reinstates_an_address_with_a_reason_and_the_history_keeps_who_and_why(admin, db, listed):
    found = suppression.state(db, "ulla@example.test")
    page = admin.get(f"/suppressions/{found.id}")
    form = page.forms["reinstate"]
    form["reason"] = "asked by letter on 3 December"
    notice = form.submit(status=303).follow().html.select_one("[role=status]").text
    assert "Reinstated ulla@example.test (Unsubscribed): email to it is sent again." in notice
    assert suppression.suppressed(db, ["ulla@example.test"]) == set()
    lifted = db.scalars(select(AddressEvent).where(AddressEvent.address_id == found.id)
                        .order_by(AddressEvent.id.desc())).first()
    assert (lifted.event, lifted.user_name, lifted.reason, lifted.category) == (
        suppression.LIFTED, "admin", "asked by letter on 3 December", suppression.UNSUBSCRIBED)
    history = admin.get(f"/suppressions/{found.id}").html.select("#history tbody tr")
    assert [row.select("td")[1].text for row in history] == ["reinstated", "suppressed"]
    assert prepare(db, to=["ulla@example.test"], subject="Hi", html="<p>Hi</p>").recipients[0].skip_reason == ""


def test_without_a_reason_nothing_is_reinstated_and_the_page_says_why(admin, db, listed):
    found = suppression.state(db, "ulla@example.test")
    form = admin.get(f"/suppressions/{found.id}").forms["reinstate"]
    form["reason"] = "   "
    page = form.submit(status=400)
    assert "say why email may reach this address again" in page.html.select_one("#reinstate-error").text
    assert suppression.suppressed(db, ["ulla@example.test"]) == {"ulla@example.test"}


def test_a_complaint_is_reinstated_only_with_the_confirmation(admin, db, listed):
    found = suppression.state(db, "carl@example.test")
    form = admin.get(f"/suppressions/{found.id}").forms["reinstate"]
    form["reason"] = "he wrote that the report was a mistake"
    refused = form.submit(status=400)
    assert "tick the box to confirm" in refused.html.select_one("#reinstate-error").text
    assert suppression.suppressed(db, ["carl@example.test"]) == {"carl@example.test"}
    form = refused.forms["reinstate"]
    assert form["reason"].value == "he wrote that the report was a mistake"  # nothing typed is lost
    form["confirm"] = True
    form.submit(status=303)
    assert suppression.suppressed(db, ["carl@example.test"]) == set()


def test_staff_see_the_list_but_only_admins_reinstate_or_import(staff, admin, db, listed):
    found = suppression.state(db, "ulla@example.test")
    page = staff.get(f"/suppressions/{found.id}")
    assert "reinstate" not in page.forms
    token = page.html.select_one("input[name=csrf_token]")
    token = token["value"] if token else staff.get("/contacts/new").forms["record-form"]["csrf_token"].value
    staff.post("/suppressions/reinstate", {"csrf_token": token, "address": "ulla@example.test", "reason": "x"},
               status=403)
    staff.post("/suppressions/import", {"csrf_token": token}, status=403)
    staff.post_json("/api/suppressions/reinstate", {"address": "ulla@example.test", "reason": "x"}, status=403)
    assert suppression.suppressed(db, ["ulla@example.test"]) == {"ulla@example.test"}


def test_a_reinstatement_without_the_csrf_token_is_refused(admin, db, listed):
    admin.post("/suppressions/reinstate", {"address": "ulla@example.test", "reason": "forged"}, status=403)
    assert suppression.suppressed(db, ["ulla@example.test"]) == {"ulla@example.test"}


def test_an_erased_person_is_found_by_their_exact_address_and_reinstated_only_when_confirmed(app, admin, db):
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed")
    db.commit()
    erasure.erase(db, app.secret, PAULA, "admin")
    page = admin.get("/suppressions")
    assert len(page.html.select("#erased ~ .table-wrap tbody tr")) == 1
    assert "reinstate-erasure" not in page.forms  # only for the exact address searched
    found = admin.get("/suppressions", {"q": PAULA})
    form = found.forms["reinstate-erasure"]
    form["reason"] = "she signed up again on 5 December"
    form["confirm"] = False
    refused = form.submit(status=400)
    assert "this person was erased: tick the box" in refused.html.select_one("#suppressions-error").text
    assert erasure.erased(db, app.secret, [PAULA]) == {PAULA}
    form = refused.forms["reinstate-erasure"]
    assert form["reason"].value == "she signed up again on 5 December"
    form["confirm"] = True
    form.submit(status=303)
    assert erasure.erased(db, app.secret, [PAULA]) == set()
    assert prepare(db, to=[PAULA], subject="Hi", html="<p>Hi</p>").recipients[0].skip_reason == ""
    assert "No erasure" in admin.get("/suppressions").text


def test_the_csv_export_has_every_row_and_no_formula(staff, db, listed):
    suppression.opt_out(db, "eve@example.test", suppression.STAFF, "=HYPERLINK(\"http://evil\")")
    db.commit()
    response = staff.get("/suppressions.csv", {"category": "staff"})
    assert response.content_type == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="suppressions.csv"'
    table = list(csv.reader(io.StringIO(response.body.decode())))
    assert table[0] == ["address", "category", "source", "reason", "opted_out_at_utc", "evidence"]
    assert sorted(row[0] for row in table[1:]) == ["eve@example.test", "stan@example.test"]
    assert next(row for row in table if row[0] == "eve@example.test")[3] == "'=HYPERLINK(\"http://evil\")"


def test_a_csv_import_suppresses_each_good_line_and_lists_each_refused_one(admin, db, listed):
    form = admin.get("/suppressions").forms["suppression-import"]
    form["file"] = webtest.Upload("list.csv", b"address,reason\r\nnew@example.test,old list\r\nnot an address,x\r\n"
                                              b"ULLA@example.test,again\r\n", "text/csv")
    page = form.submit(status=200)
    assert page.html.select_one("#import-result").text.startswith(
        "1 address(es) suppressed, 1 already suppressed, 1 line(s) refused")
    assert [item.text for item in page.html.select("#import-refused li")] == [
        "line 3: 'not an address' is not a valid email address"]
    found = suppression.state(db, "new@example.test")
    assert (found.opt_out_category, found.opt_out_reason) == (suppression.BY_IMPORT, "old list")
    assert suppression.state(db, "ulla@example.test").opt_out_category == suppression.UNSUBSCRIBED  # kept


def test_a_file_that_is_not_text_imports_nothing(admin, db):
    form = admin.get("/suppressions").forms["suppression-import"]
    form["file"] = webtest.Upload("list.csv", b"\xff\xfe\x00binary", "text/csv")
    page = form.submit(status=400)
    assert "not UTF-8" in page.html.select_one("#suppressions-error").text
    assert db.scalar(select(Address.id)) is None


def test_the_api_lists_pages_and_reinstates(admin, db, listed):
    answer = admin.get("/api/suppressions", {"category": "hard_bounce"}).json
    assert answer["total"] == 1
    assert answer["suppressions"][0] == {
        "address": "hank@example.test", "category": "hard_bounce", "category_label": "Hard bounce",
        "source": "bounce", "reason": "bounced: 5.1.1 user unknown", "opted_out_at": "2026-12-01T09:01:00Z",
        "evidence": None}
    assert admin.get("/api/suppressions", {"per_page": "3", "page": "3"}).json["suppressions"][0]["address"] == \
        "ulla@example.test"
    assert admin.get("/api/suppressions", {"category": "nonsense"}, status=400).json["fields"]["category"]
    refused = admin.post_json("/api/suppressions/reinstate", {"address": "carl@example.test", "reason": "asked"},
                              status=400).json
    assert "tick the box" in refused["error"]
    assert admin.post_json("/api/suppressions/reinstate", {"address": "Carl@example.test", "reason": "asked",
                                                           "confirm": True}).json == {
        "address": "carl@example.test", "reinstated": "complaint"}
    assert admin.post_json("/api/suppressions/reinstate", {"address": "carl@example.test", "reason": "again"},
                           status=400).json["error"] == "carl@example.test is not suppressed"


def test_an_unsubscribed_address_complained_of_since_is_reinstated_only_with_the_confirmation(app, admin, db,
                                                                                            users):
    """It keeps its first reason (unsubscribed), but the complaint that came after binds as one would."""
    prepared = prepare(db, to=[PAULA], subject="Hi", html="<p>Hi</p>")
    recipient = compose(db, app.config, users["sam"], prepared).email.recipients[0]
    suppression.opt_out(db, PAULA, suppression.LINK, "unsubscribed with the link")
    db.add(MailReport(kind="arf", recipient_id=recipient.id, at=utcnow(), status="abuse", bounce_class="",
                      detail="abuse report from fbl.example.net", raw="..."))
    db.commit()
    found = suppression.state(db, PAULA)
    form = admin.get(f"/suppressions/{found.id}").forms["reinstate"]
    form["reason"] = "asked by letter"
    assert "this person complained of our email: tick the box" in form.submit(status=400).text
    form["confirm"] = True
    form.submit(status=303)
    assert suppression.suppressed(db, [PAULA]) == set()
