"""The Emails pages: list, compose (preview, send), detail, retry, attachment download."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit

import webtest
from sqlalchemy import func, select
from support.constants import PUBLIC_URL
from support.hit_load import wait_until

from coretrack.models import Contact, Email, Recipient
from coretrack.people import suppression
from coretrack.sending.compose import OPTED_OUT
from coretrack.settings import SettingsService

IMAGE_URL = re.compile(r'<img src="([^"]+)" width="1" height="1" alt="">')


def compose_form(client, url="/emails/new"):
    return client.get(url).forms["compose"]


def submit(form, action="send", **values):
    for name, value in values.items():
        form[name] = value
    return form.submit("action", value=action, expect_errors=True)


def email_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Email))


def test_the_home_page_leads_to_the_emails(staff):
    assert staff.get("/", status=303).headers["Location"].endswith("/emails")


def test_the_empty_list_links_to_compose(staff):
    page = staff.get("/emails")
    assert "No emails yet" in page.text
    assert page.html.select_one("p.empty a")["href"] == "/emails/new"


def test_sending_through_the_form_delivers_and_shows_the_detail_page(staff, db, smtp_settings):
    sink, _ = smtp_settings
    response = submit(compose_form(staff), to="ann@example.test, bob@example.test", cc="cid@example.test",
                      subject="Quarterly update", html="<html><body><p>Numbers</p></body></html>",
                      attachments=[webtest.Upload("q3.pdf", b"%PDF q3", "application/pdf")])

    assert response.status_int == 303
    detail = response.follow()
    assert "Sent to 3 of 3 recipients." in detail.text
    rows = detail.html.select("table[aria-labelledby=recipients] tbody tr")
    assert [row.select("td")[0].text for row in rows] == ["ann@example.test", "bob@example.test", "cid@example.test"]
    assert all("sent" in row.select("td")[4].text for row in rows)
    assert "q3.pdf" in detail.text
    assert detail.html.select_one("progress") is None and 'http-equiv="refresh"' not in detail.text
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ann@example.test", "bob@example.test",
                                                                  "cid@example.test"]


def test_preview_shows_the_body_sandboxed_and_who_is_skipped_without_saving(staff, db, users):
    contact = Contact(first_name="Opt", last_name="Out", email="out@example.test")
    db.add(contact)
    suppression.opt_out_record(db, contact, suppression.STAFF, "asked by phone")
    db.commit()
    response = submit(compose_form(staff), action="preview", to=f"ann@example.test, contact:{contact.id}",
                      subject="Hi", html='<p>Hello</p><script>alert("x")</script>')

    assert response.status_int == 200
    iframe = response.html.select_one("iframe")
    assert iframe.has_attr("sandbox") and not iframe["sandbox"]
    assert iframe["srcdoc"] == "<p>Hello</p>"  # cleaned of its script when prepared
    assert 'srcdoc="&lt;p&gt;Hello&lt;/p&gt;"' in response.text  # autoescaped into the attribute
    rows = response.html.select("table[aria-label=Recipients] tbody tr")
    assert [row.select("td")[0].text for row in rows] == ["ann@example.test"]  # the skipped are listed once:
    [skipped] = response.html.select("#skipped tbody tr")
    assert "out@example.test" in skipped.text and OPTED_OUT in skipped.text
    assert "1 will get it; 1 skipped (1 opted out of email)" in response.html.select_one("#recipient-counts").text
    assert response.forms["compose"]["subject"].value == "Hi"
    assert email_count(db) == 0


def test_bad_input_is_shown_next_to_the_fields_with_the_values_kept(staff, db, users):
    response = submit(compose_form(staff), to="ann@example.test, not an address", subject="Line\r\nBcc: x@y.test",
                      html="")

    assert response.status_int == 400
    form = response.forms["compose"]
    assert form["to"].value == "ann@example.test, not an address"
    assert "is not a valid email address" in response.html.select_one("#e-to").text
    assert "single line" in response.html.select_one("#e-subject").text
    assert "HTML body is required" in response.html.select_one("#e-html").text
    assert response.html.select_one("#f-html")["aria-describedby"].split() == ["h-html", "e-html"]
    assert email_count(db) == 0


def test_the_html_field_says_before_saving_that_style_sheets_are_removed(staff, db, smtp_settings):
    page = staff.get("/emails/new")
    help_id = page.html.select_one("#f-html")["aria-describedby"]
    assert "style sheets" in page.html.select_one(f"#{help_id}").text

    sent = submit(page.forms["compose"], to="ann@example.test", subject="Styled",
                  html="<style>p { color: red }</style><p style=\"color: red\">Hi</p>")
    assert sent.status_int == 303
    html = db.scalar(select(Email.html_body).where(Email.subject == "Styled"))
    assert html == '<p style="color:red">Hi</p>'  # the sheet gone, the inline style kept


def test_a_post_without_the_csrf_token_is_refused_and_creates_nothing(staff, db, users):
    staff.post("/emails", {"to": "ann@example.test", "subject": "x", "html": "<p>x</p>", "action": "send"},
               status=403)
    assert email_count(db) == 0


def test_a_record_link_prefills_the_to_field_and_shows_the_name(staff, db, users):
    contact = Contact(first_name="Ada", last_name="Lovelace", email="ada@example.test")
    db.add(contact)
    db.commit()
    page = staff.get(f"/emails/new?contact={contact.id}")
    assert page.forms["compose"]["to"].value == f"contact:{contact.id}"
    assert "Ada Lovelace <ada@example.test>" in page.html.select_one("ul[aria-label]").text


def test_the_search_box_lists_records_with_links_adding_them(staff, db, users):
    contact = Contact(first_name="Grace", last_name="Hopper", email="grace@example.test")
    db.add(contact)
    db.commit()
    page = staff.get("/emails/new?find=hopper&to=ann@example.test")
    link = page.html.find("a", string="Add to To")
    assert "Grace Hopper" in link.parent.text
    added = staff.get(link["href"])
    assert added.forms["compose"]["to"].value == f"ann@example.test, contact:{contact.id}"


def test_the_detail_page_counts_an_image_hit(staff, anon, db, smtp_settings):
    sink, _ = smtp_settings
    detail = submit(compose_form(staff), to="ann@example.test, bob@example.test", subject="Tracked",
                    html="<p>Hi</p>").follow()
    [url] = IMAGE_URL.findall(next(mail for mail in sink.received if mail.rcpt_tos == ["bob@example.test"])
                              .message.get_body(preferencelist=("html",)).get_content())
    parts = urlsplit(url)
    anon.get(parts.path.removeprefix(urlsplit(PUBLIC_URL).path) + "?" + parts.query,
             headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0"},
             extra_environ={"REMOTE_ADDR": "203.0.113.9"})

    def counted() -> bool:
        db.expire_all()
        return db.scalar(select(func.sum(Recipient.access_count))) == 1

    wait_until(counted, "the hit to be counted", 10)
    detail = staff.get(detail.request.path)
    rows = {row.select("td")[0].text: row.select("td") for row in
            detail.html.select("table[aria-labelledby=recipients] tbody tr")}
    assert rows["bob@example.test"][5].text == "1" and rows["ann@example.test"][5].text == "0"
    [event] = detail.html.select("table[aria-labelledby=accesses] tbody tr")
    # Loaded within seconds of the send: a security scanner's, counted but no likely-human open.
    assert "bob@example.test" in event.text and "203.0.113.0" in event.text and "scanner" in event.text
    assert "loaded within seconds of the send" in event.text

    listing = staff.get("/emails")
    cells = listing.html.select("tbody tr td")
    # recipients, opened (of the measured ones), accesses, human opens, clicks (likely human)
    assert [cell.text for cell in cells[5:10]] == ["2", "0 of 2 measured recipients", "1", "0", "0 0 likely human"]


def test_markup_in_subject_and_body_is_shown_escaped(staff, app, db, users, send):
    email = send.compose(subject="<b>bold</b> offer", html="<p>x</p><script>alert(1)</script>").email
    listing = staff.get("/emails")
    detail = staff.get(f"/emails/{email.id}")
    for page in (listing, detail):
        assert "&lt;b&gt;bold&lt;/b&gt; offer" in page.text
        assert "<b>bold</b>" not in page.text
    assert "<script>alert(1)" not in detail.text
    body = detail.html.select_one("iframe")
    assert body.has_attr("sandbox") and not body["sandbox"] and body["srcdoc"] == "<p>x</p>"


def test_the_list_filters_by_sender_status_and_date(staff, app, db, users, send):
    old = send.compose(user=users["admin"], subject="Old news").email
    old.created_at = datetime(2024, 1, 15, 12, 0)
    new = send.compose(subject="New news").email
    new.status = "failed"
    db.commit()

    def subjects(query):
        return [link.text for link in staff.get("/emails" + query).html.select("tbody td:first-child a")]

    assert subjects("") == ["New news", "Old news"]
    assert subjects("?sender=admin") == ["Old news"]
    assert subjects("?status=failed") == ["New news"]
    assert subjects("?from=2024-01-01&to=2024-01-31") == ["Old news"]
    assert subjects("?to=2024-01-14") == []
    assert "No emails match these filters" in staff.get("/emails?to=2024-01-14").text
    bad = staff.get("/emails?from=yesterday", status=400)
    assert "YYYY-MM-DD" in bad.html.select_one("#e-from").text


def test_the_list_refuses_a_date_range_that_ends_before_it_starts(staff):
    page = staff.get("/emails?from=2024-02-01&to=2024-01-31", status=400)
    assert "the end of the range is before its start" in page.html.select_one("#e-to").text


def test_the_list_is_paginated_with_the_page_size_setting(staff, app, db, users, send):
    SettingsService(db, app.config).update({"page_size": "5"}, user_name="admin")
    for number in range(7):
        send.compose(subject=f"Email {number}")
    first = staff.get("/emails")
    assert len(first.html.select("tbody tr")) == 5
    second = staff.get(first.html.select_one("a[rel=next]")["href"])
    assert len(second.html.select("tbody tr")) == 2


def test_a_queued_email_shows_progress_and_refreshes_itself(staff, app, db, users, send):
    email = send.compose(to=[f"r{n}@example.test" for n in range(3)]).email
    page = staff.get(f"/emails/{email.id}")
    progress = page.html.select_one("progress")
    assert (progress["value"], progress["max"]) == ("0", "3")
    assert page.html.select_one('meta[http-equiv="refresh"]')["content"] == "3"


def test_retrying_failed_recipients_sends_them(staff, db, smtp_settings):
    sink, _ = smtp_settings
    sink.refuse["x@example.test"] = "550 5.1.1 No such user"
    detail = submit(compose_form(staff), to="ann@example.test, x@example.test", subject="S",
                    html="<p>x</p>").follow()
    assert "550 5.1.1 No such user" in detail.text
    assert "1 failed" in detail.text

    del sink.refuse["x@example.test"]
    staff.post(detail.request.path + "/retry", status=403)  # no CSRF token
    retried = detail.forms["retry"].submit().follow()
    assert "Retried 1: sent." in retried.text
    assert sorted(mail.rcpt_tos[0] for mail in sink.received) == ["ann@example.test", "x@example.test"]
    db.expire_all()
    assert db.scalar(select(Email.status)) == "sent"
    assert db.scalar(select(func.count()).select_from(Recipient).where(Recipient.status == "sent")) == 2


def test_attachments_download_with_their_name_and_never_as_html(staff, app, db, users, send):
    email = send.compose(attachments=[("notes.pdf", "application/pdf", b"%PDF-1"),
                                      ("page.html", "text/html", b"<script>x</script>")]).email
    pdf, page = email.attachments

    response = staff.get(f"/emails/{email.id}/attachments/{pdf.id}")
    assert response.body == b"%PDF-1"
    assert response.content_type == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "notes.pdf" in response.headers["Content-Disposition"]

    response = staff.get(f"/emails/{email.id}/attachments/{page.id}")
    assert response.content_type == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    other = send.compose().email
    staff.get(f"/emails/{other.id}/attachments/{pdf.id}", status=404)
    staff.get(f"/emails/{email.id + 100}", status=404)
