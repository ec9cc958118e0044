"""The public consent page: GET shows the consent text, who measures, what and how to withdraw, and
changes nothing; its buttons record the answer with its proof (the text version shown, the IP as the
IP policy keeps it, the agent, the email); any token but a recipient's own changes nothing; admins
write new versions of the text, every one kept."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from coretrack.models import Address, ConsentEvent, ConsentText, Email, Recipient
from coretrack.people import consent, erasure
from coretrack.people.consent import CONSENT_PATH, WITHDRAWAL_PATH
from coretrack.people.consent_page import MAX_BODY_BYTES
from coretrack.settings import SettingsService
from coretrack.tracking import anonymous, tokens

AGENT = "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115"
CLIENT = {"extra_environ": {"REMOTE_ADDR": "203.0.113.77"}, "headers": {"User-Agent": AGENT}}


@pytest.fixture
def email(app, db, users):
    email = Email(subject="Hello", html_body="<p>hi</p>", sender_id=users["sam"].id,
                  from_address="crm@example.test", status="sent")
    email.recipients = [Recipient(address=address, token=tokens.new_token(app.secret), status="sent")
                        for address in ("Ann@Example.test", "bob@example.test")]
    db.add(email)
    db.commit()
    return email


@pytest.fixture
def ann(email):
    return email.recipients[0]


def history(db) -> list[ConsentEvent]:
    db.expire_all()
    return list(db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))


def answers(response) -> list[str]:
    """The consent page's buttons, by the answer each sends."""
    return [button["value"] for button in response.html.select("form button[name=answer]")]


def page(anon, token: str, **kwargs):
    return anon.get(CONSENT_PATH, {"t": token}, **kwargs)


def test_the_page_shows_the_text_who_measures_what_and_how_to_withdraw_and_changes_nothing(app, anon, db, ann):
    SettingsService(db, app.config).update({"from_name": "Acme <Sales>"}, "admin")
    shown = page(anon, ann.token)
    assert shown.status_int == 200 and shown.content_type == "text/html"
    assert consent.DEFAULT_TEXT.split("\n")[0] in shown.text
    assert "Acme &lt;Sales&gt;" in shown.text  # the From name, escaped
    assert "a shortened" in shown.text  # the IP policy as it is (truncated by default)
    assert f"{WITHDRAWAL_PATH}?t={ann.token}" in shown.text
    form = shown.forms[0]
    assert form["version"].value == "1"
    assert answers(shown) == ["accept", "decline"]
    assert "csrf_token" not in form.fields
    page(anon, ann.token, **CLIENT)
    anon.head(f"{CONSENT_PATH}?t={ann.token}")
    assert history(db) == [] and consent.state(db, ann.address) == ""
    assert shown.headers["Cache-Control"] == "no-store"


def test_accept_records_granted_with_the_text_version_truncated_ip_agent_and_email(anon, db, ann):
    done = page(anon, ann.token).forms[0].submit("answer", value="accept", **CLIENT)
    assert done.status_int == 200 and "Thank you" in done.text
    (event,) = history(db)
    assert (event.state, event.means, event.text_version, event.ip, event.user_agent, event.email_id) == (
        consent.GRANTED, consent.PAGE, 1, "203.0.113.0", AGENT, ann.email_id)
    assert not event.measurements_deleted and event.user_name == ""
    # Bound to the address (any letter case), not to the recipient row.
    assert consent.state(db, "ann@example.test") == consent.GRANTED
    assert consent.state(db, "bob@example.test") == ""


def test_the_ip_policy_decides_what_of_the_address_the_proof_keeps(app, anon, db, ann):
    SettingsService(db, app.config).update({"ip_storage": "none"}, "admin")
    page(anon, ann.token).forms[0].submit("answer", value="accept", **CLIENT)
    assert history(db)[0].ip == ""


def test_refuse_records_refused(anon, db, ann):
    done = page(anon, ann.token).forms[0].submit("answer", value="decline", **CLIENT)
    assert "You have refused" in done.text
    assert [(event.state, event.text_version) for event in history(db)] == [(consent.REFUSED, 1)]
    assert consent.state(db, ann.address) == consent.REFUSED
    # Asked again, the page offers both answers again.
    assert answers(page(anon, ann.token)) == ["accept", "decline"]


def test_once_accepted_the_page_offers_withdrawal_instead_of_refusal(anon, db, ann):
    page(anon, ann.token).forms[0].submit("answer", value="accept")
    again = page(anon, ann.token)
    assert "You have accepted" in again.text and "Refuse" not in again.text
    assert answers(again) == ["decline"]
    done = again.forms[0].submit("answer", value="decline")
    assert "Your consent is withdrawn" in done.text
    assert [event.state for event in history(db)] == [consent.GRANTED, consent.WITHDRAWN]
    assert consent.state(db, ann.address) == consent.WITHDRAWN


def tampered(token: str) -> str:
    return token[:5] + ("A" if token[5] != "A" else "B") + token[6:]


OTHER_TOKENS = {
    "tampered": lambda app, ann: tampered(ann.token),
    "truncated": lambda app, ann: ann.token[:-1],
    "extended": lambda app, ann: ann.token + "A",
    "another-install": lambda app, ann: tokens.new_token(b"another install's key"),
    "signed-but-unknown": lambda app, ann: tokens.new_token(app.secret),
    "anonymous-image": lambda app, ann: anonymous.token(app.secret, ann.email_id),
    "empty": lambda app, ann: "",
}


@pytest.mark.parametrize("path", [CONSENT_PATH, WITHDRAWAL_PATH])
def test_forged_mangled_and_other_tokens_get_one_invalid_page_and_change_nothing(app, anon, db, ann, path):
    answers = set()
    for name, make in OTHER_TOKENS.items():
        token = make(app, ann)
        shown = anon.get(path, {"t": token}, status=400)
        posted = anon.post(f"{path}?t={token}", {"answer": "accept", "version": "1", "delete": "yes"}, status=400)
        assert "This link does not work" in shown.text, name
        answers.update({shown.text, posted.text})
    assert len(answers) == 1  # nothing tells one bad token from another
    assert history(db) == [] and db.scalar(select(func.count()).select_from(Address)) == 0


def test_an_erased_persons_old_token_changes_nothing(app, anon, db, users, ann):
    erasure.erase(db, app.secret, "ann@example.test", "admin")
    for path in (CONSENT_PATH, WITHDRAWAL_PATH):
        assert "This link does not work" in anon.get(path, {"t": ann.token}, status=400).text
        anon.post(f"{path}?t={ann.token}", {"answer": "accept", "version": "1"}, status=400)
    assert history(db) == []


@pytest.mark.parametrize("fields", [{"answer": "accept", "version": "99"}, {"answer": "accept", "version": "x"},
                                    {"answer": "accept"}, {"answer": "maybe", "version": "1"}, {"version": "1"}])
def test_an_answer_the_page_cannot_have_sent_records_nothing_and_asks_again(anon, db, ann, fields):
    shown = anon.post(f"{CONSENT_PATH}?t={ann.token}", fields, status=400)
    assert "Nothing was recorded" in shown.text and shown.forms[0]["version"].value == "1"
    assert history(db) == []


def test_a_body_past_the_limit_is_refused_unread(anon, db, ann):
    body = "answer=accept&version=1&pad=" + "x" * MAX_BODY_BYTES
    anon.post(f"{CONSENT_PATH}?t={ann.token}", body, content_type="application/x-www-form-urlencoded", status=413)
    assert history(db) == []


def test_a_new_consent_text_shows_on_the_page_and_is_what_the_next_consent_names(admin, anon, db, ann, email):
    bob = email.recipients[1]
    shown_before = page(anon, bob.token)  # a page opened before the new version is answered after it
    form = admin.get("/settings/consent-text").forms["consent-text"]
    form["body"] = "Version two.\n\nWe measure opens, to send less."
    saved = form.submit().follow()
    assert "Saved as version 2" in saved.text
    shown = page(anon, ann.token)
    assert "We measure opens, to send less." in shown.text and shown.forms[0]["version"].value == "2"
    shown.forms[0].submit("answer", value="accept")
    shown_before.forms[0].submit("answer", value="accept")
    assert [(event.email_id, event.text_version) for event in history(db)] == [(ann.email_id, 2), (bob.email_id, 1)]


def test_only_admins_edit_the_consent_text_and_every_version_is_listed_with_its_date_and_author(
        admin, staff, db):
    assert "/settings/consent-text" in admin.get("/settings").text
    staff.get("/settings/consent-text", status=403)
    staff.post("/settings/consent-text", {"body": "sneaky"}, status=403)
    form = admin.get("/settings/consent-text").forms["consent-text"]
    form["body"] = "   "
    refused = form.submit(status=400)
    assert "cannot be empty" in refused.text
    form = admin.get("/settings/consent-text").forms["consent-text"]
    form["body"] = "Second <b>text</b>"
    form.submit()
    form = admin.get("/settings/consent-text").forms["consent-text"]
    assert "Nothing changed" in form.submit().follow().text  # the same text again: no new version
    listed = admin.get("/settings/consent-text")
    rows = listed.html.select("table tbody tr")
    assert [row.find_all("td")[0].get_text() for row in rows] == ["2 (current)", "1"]
    assert rows[0].find_all("td")[2].get_text() == "admin" and rows[0].find("time") is not None
    assert "Second &lt;b&gt;text&lt;/b&gt;" in listed.text
    admin.post("/settings/consent-text", {"body": "no token"}, status=403)  # CSRF
    assert [text.version for text in db.scalars(select(ConsentText))] == [1, 2]
