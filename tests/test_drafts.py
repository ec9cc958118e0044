"""Drafts: an email being written, saved as it is (unfinished too) to finish later, seen and deleted
only by whoever wrote it; sending it removes it from Drafts."""

from __future__ import annotations

import webtest
from sqlalchemy import func, select

from coretrack.auth import Htpasswd, UserService
from coretrack.models import Email, EmailDraft


def save_draft(client, **fields):
    form = client.get("/emails/new").forms["compose"]
    for name, value in fields.items():
        form[name] = value
    return form.submit("action", value="draft", status=303).follow()


def test_an_unfinished_email_is_saved_as_a_draft_and_opens_as_it_was_left(staff, db):
    page = save_draft(staff, subject="Half written", html="<p>To be continued</p>", to="not yet an address")
    assert "Draft saved" in page.text
    form = page.forms["compose"]
    assert (form["subject"].value, form["html"].value, form["to"].value) == (
        "Half written", "<p>To be continued</p>", "not yet an address")
    assert db.scalar(select(func.count()).select_from(Email)) == 0  # nothing sent, nothing queued
    listed = staff.get("/emails/drafts")
    assert "Half written" in listed.text
    form["subject"] = "Nearly done"
    form.submit("action", value="draft", status=303)
    assert [draft.subject for draft in db.scalars(select(EmailDraft))] == ["Nearly done"]  # the same draft


def test_sending_a_draft_removes_it(staff, db, smtp_settings):
    sink, _ = smtp_settings
    form = save_draft(staff, subject="Ready", html="<p>Hi</p>").forms["compose"]
    form["to"] = "ann@example.test"
    form.submit("action", value="send", status=303)
    assert [mail.rcpt_tos for mail in sink.received] == [["ann@example.test"]]
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(EmailDraft)) == 0
    form["draft"].force_value("not-an-id")  # a draft id that names nothing does not stop the send
    form["subject"] = "Again"
    form.submit("action", value="send", status=303)
    assert len(sink.received) == 2


def test_drafts_are_their_writers_own_and_deleting_one_asks_first(app, staff, db, users):
    save_draft(staff, subject="Sam's secret plan")
    draft_id = db.scalar(select(EmailDraft.id))
    UserService(db, Htpasswd(app.config.htpasswd_path)).add("kim", "kim-password-1", role="staff")
    kim = webtest.TestApp(app, extra_environ={"REMOTE_USER": "kim"})
    assert "Sam's secret plan" not in kim.get("/emails/drafts").text
    kim.get(f"/emails/new?draft={draft_id}", status=404)
    token = kim.get("/emails/new").forms["compose"]["csrf_token"].value
    kim.post(f"/emails/drafts/{draft_id}/delete", {"csrf_token": token, "confirm": "yes"}, status=404)
    listed = staff.get("/emails/drafts")
    delete = listed.forms[f"delete-draft-{draft_id}"]
    assert "Nothing was deleted" in delete.submit(status=303).follow().text
    delete["confirm"] = True
    assert "Deleted the draft “Sam's secret plan”." in delete.submit(status=303).follow().html.text
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(EmailDraft)) == 0


def test_a_mass_send_and_its_template_are_kept_in_the_draft(staff, db):
    page = staff.get("/emails/new?audience=contacts&scope=all&q=acme")
    form = page.forms["compose"]
    form["subject"] = "Hello $contacts-firstname$"
    reopened = form.submit("action", value="draft", status=303).follow()
    assert "To all 0 contacts matching “acme”" in reopened.html.select_one("#audience").text
    assert reopened.forms["compose"]["subject"].value == "Hello $contacts-firstname$"
