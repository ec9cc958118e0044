"""Sending under the tracking policy: each recipient's message is tracked or not as the policy and their
address's consent say when it goes; unmeasured messages carry nothing that names the recipient where
a mail client loads or follows (only the unsubscribe and consent links and delivery headers do), the
email's anonymous image when enough share it, and SendGrid's own tracking turned off; tracked ones
carry the withdrawal link; "Ask for tracking consent" sends the consent link and measures nobody."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select

from coretrack.cli import main as cli_main
from coretrack.delivery_reports import sendgrid
from coretrack.models import Contact, Email, EmailTemplate, Recipient, Setting
from coretrack.people import consent
from coretrack.people.consent import CONSENT_PATH, WITHDRAWAL_PATH
from coretrack.people.unsubscribe import UNSUBSCRIBE_PATH
from coretrack.sending.claims import claim_batch
from coretrack.sending.delivery import deliver
from coretrack.sending.measuring import Measuring
from coretrack.settings import SettingsService
from coretrack.tracking import anonymous
from coretrack.tracking.clicks import CLICK_PATH
from coretrack.tracking.image import TRACK_ACCESS_PATH

HTML = '<html><body><p>Hi</p><p><a href="https://example.org/offer">the offer</a></p></body></html>'
PEOPLE = {"granted@example.test": consent.GRANTED, "unknown@example.test": "",
          "refused@example.test": consent.REFUSED, "withdrawn@example.test": consent.WITHDRAWN}


def set_policy(app, db, policy: str, minimum: int = 10, **more: str) -> None:
    SettingsService(db, app.config).update({"tracking_policy": policy, "anonymous_minimum": str(minimum), **more},
                                           user_name="test-setup")


def state_consents(db, consents: dict[str, str]) -> None:
    for address, state in consents.items():
        if state:
            consent.record(db, address, state, consent.STAFF, "told us on the phone")
    db.commit()




@pytest.fixture
def email_fields() -> dict:
    return {"subject": "Hello", "html": HTML}


def recipient(db, address: str) -> Recipient:
    return db.scalars(select(Recipient).where(Recipient.address == address)).one()


def mail_to(sink, address: str):
    (mail,) = [mail for mail in sink.received if mail.rcpt_tos == [address]]
    return mail.message


def bodies(message) -> tuple[str, str]:
    return (message.get_body(preferencelist=("html",)).get_content(),
            message.get_body(preferencelist=("plain",)).get_content())


def public_url(app, db) -> str:
    return SettingsService(db, app.config).get("public_url").rstrip("/")


def without_allowed_links(app, db, text: str, token: str) -> str:
    """The body with the links that may name the recipient taken out: unsubscribe and consent."""
    for path in (UNSUBSCRIBE_PATH, CONSENT_PATH):
        text = text.replace(f"{public_url(app, db)}{path}?t={token}", "")
    return text


def assert_unmeasured(app, db, sink, address: str) -> None:
    token = recipient(db, address).token
    for body in bodies(mail_to(sink, address)):
        assert token not in without_allowed_links(app, db, body, token)
        assert CLICK_PATH not in body and WITHDRAWAL_PATH not in body
        if "https://example.org/offer" in recipient(db, address).email.html_body:
            assert "https://example.org/offer" in body  # the link as written
    assert not recipient(db, address).tracked


def assert_tracked(app, db, sink, address: str) -> None:
    token = recipient(db, address).token
    html, text = bodies(mail_to(sink, address))
    assert f"{public_url(app, db)}{TRACK_ACCESS_PATH}?t={token}" in html
    assert f"{public_url(app, db)}{CLICK_PATH}" in html and "https://example.org/offer" not in html
    for body in (html, text):
        assert f"{public_url(app, db)}{WITHDRAWAL_PATH}?t={token}" in body
    assert "Stop measuring my reading" in html and "Stop measuring my reading" in text
    assert recipient(db, address).tracked


def anonymous_image_of(app, email: Email) -> str:
    return f"{TRACK_ACCESS_PATH}?t={anonymous.token(app.config.secret_key(), email.id)}"


def test_under_consented_only_the_granted_recipient_is_measured_and_the_others_share_the_anonymous_image(
        app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    set_policy(app, db, consent.CONSENTED, minimum=3)
    state_consents(db, PEOPLE)
    email = send(to=list(PEOPLE)).email
    assert len(sink.received) == 4
    assert_tracked(app, db, sink, "granted@example.test")
    assert anonymous_image_of(app, email) not in bodies(mail_to(sink, "granted@example.test"))[0]
    for address in ("unknown@example.test", "refused@example.test", "withdrawn@example.test"):
        assert_unmeasured(app, db, sink, address)
        html = bodies(mail_to(sink, address))[0]
        assert html.count(TRACK_ACCESS_PATH) == 1 and anonymous_image_of(app, email) in html
    assert db.get(Email, email.id).anonymous_image is True


def test_fewer_unmeasured_recipients_than_the_minimum_get_no_image_at_all(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    set_policy(app, db, consent.CONSENTED, minimum=4)
    state_consents(db, PEOPLE)
    email = send(to=list(PEOPLE)).email
    assert_tracked(app, db, sink, "granted@example.test")
    for address in ("unknown@example.test", "refused@example.test", "withdrawn@example.test"):
        assert_unmeasured(app, db, sink, address)
        assert TRACK_ACCESS_PATH not in bodies(mail_to(sink, address))[0]
    assert db.get(Email, email.id).anonymous_image is False


def test_the_decision_is_made_when_the_message_goes_not_when_the_email_is_written(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    set_policy(app, db, consent.CONSENTED)
    state_consents(db, {"later@example.test": "", "leaving@example.test": consent.GRANTED})
    email = send.compose(to=["later@example.test", "leaving@example.test"]).email
    # Queued: meanwhile one grants consent and the other withdraws it.
    state_consents(db, {"later@example.test": consent.GRANTED, "leaving@example.test": consent.WITHDRAWN})
    deliver(app.Session, app.config, email.id)
    db.expire_all()
    assert_tracked(app, db, sink, "later@example.test")
    assert_unmeasured(app, db, sink, "leaving@example.test")


def test_do_not_track_ticked_after_the_email_was_written_still_holds_when_it_goes(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    contact = Contact(first_name="Quiet", last_name="Later", email="Quiet@Example.test")
    db.add(contact)
    db.commit()
    email = send.compose(to=["quiet@example.test", "open@example.test"]).email
    contact.do_not_track = True
    db.commit()
    deliver(app.Session, app.config, email.id)
    db.expire_all()
    assert_unmeasured(app, db, sink, "quiet@example.test")
    assert_tracked(app, db, sink, "open@example.test")


def test_under_everyone_a_withdrawn_address_is_not_measured_and_the_others_carry_the_withdrawal_link(
        app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    state_consents(db, {"gone@example.test": consent.WITHDRAWN, "refused@example.test": consent.REFUSED})
    send(to=["gone@example.test", "refused@example.test", "someone@example.test"])
    assert_tracked(app, db, sink, "someone@example.test")
    for address in ("gone@example.test", "refused@example.test"):
        assert_unmeasured(app, db, sink, address)
        assert TRACK_ACCESS_PATH not in bodies(mail_to(sink, address))[0]  # two: fewer than ten


def test_through_the_sendgrid_preset_unmeasured_messages_turn_sendgrids_tracking_off(app, db, users, smtp_server, send):
    sink, port = smtp_server
    set_policy(app, db, consent.CONSENTED, smtp_preset="sendgrid", from_address="crm@example.test")
    # As if smtp.sendgrid.net were the test server (the preset holds the real relay's name).
    for key, value in {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
                       "smtp_username": ""}.items():
        db.merge(Setting(key=key, value=value))
    db.commit()
    state_consents(db, {"granted@example.test": consent.GRANTED})
    send(to=["granted@example.test", "unknown@example.test"])
    tracked = json.loads(mail_to(sink, "granted@example.test")["X-SMTPAPI"])
    assert tracked == {"unique_args": {sendgrid.UNIQUE_ARG: recipient(db, "granted@example.test").token}}
    unmeasured = json.loads(mail_to(sink, "unknown@example.test")["X-SMTPAPI"])
    assert unmeasured["unique_args"] == {sendgrid.UNIQUE_ARG: recipient(db, "unknown@example.test").token}
    assert unmeasured["filters"] == {"opentrack": {"settings": {"enable": 0}},
                                     "clicktrack": {"settings": {"enable": 0}}}


def assert_consent_request(app, db, sink, address: str) -> None:
    token = recipient(db, address).token
    html, text = bodies(mail_to(sink, address))
    for body in (html, text):
        assert f"{public_url(app, db)}{CONSENT_PATH}?t={token}" in body
        assert "May we measure when you read our email?" in body
    assert TRACK_ACCESS_PATH not in html
    assert_unmeasured(app, db, sink, address)


def test_asking_for_tracking_consent_on_compose_sends_the_consent_link_and_no_image(
        app, db, users, staff, smtp_settings):
    sink, _ = smtp_settings
    set_policy(app, db, consent.CONSENTED, minimum=2)
    state_consents(db, {"granted@example.test": consent.GRANTED})
    form = staff.get("/emails/new").forms["compose"]
    assert not form["ask_consent"].checked
    form["to"], form["subject"], form["html"] = "granted@example.test, a@example.test, b@example.test", "May we?", HTML
    form["ask_consent"] = True
    form.submit("action", value="send").follow()
    assert len(sink.received) == 3
    for address in ("granted@example.test", "a@example.test", "b@example.test"):
        assert_consent_request(app, db, sink, address)
    email = db.scalars(select(Email)).one()
    assert email.asks_consent and not email.tracking and not email.links


def test_the_api_and_the_send_command_ask_for_tracking_consent_too(app, db, users, staff, smtp_settings,
                                                                   monkeypatch):
    sink, _ = smtp_settings
    body = {"to": ["api@example.test"], "subject": "May we?", "html": HTML, "ask_consent": True}
    reply = staff.post("/api/emails", json.dumps(body), content_type="application/json", status=201).json
    assert reply["asks_consent"] is True and reply["recipient_list"][0]["tracked"] is False
    assert_consent_request(app, db, sink, "api@example.test")
    bad = staff.post("/api/emails", json.dumps({**body, "ask_consent": "yes"}), content_type="application/json",
                     status=400)
    assert "ask_consent" in bad.json["fields"]

    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", public_url(app, db))
    result = CliRunner().invoke(cli_main, ["send", "--from-user", "sam", "--to", "cli@example.test", "--subject",
                                           "May we?", "--html", HTML, "--ask-consent"])
    assert result.exit_code == 0, result.output
    db.expire_all()
    assert_consent_request(app, db, sink, "cli@example.test")


def test_a_mass_send_asks_for_tracking_consent(app, db, users, staff, smtp_settings):
    sink, _ = smtp_settings
    db.add_all([Contact(first_name="Ann", last_name=f"Mass{n}", email=f"mass{n}@example.test") for n in range(3)])
    db.commit()
    page = staff.get("/emails/new", {"audience": "contacts", "scope": "all"})
    form = page.forms["compose"]
    form["subject"], form["html"], form["ask_consent"] = "May we?", HTML, True
    form.submit("action", value="send").follow()
    assert len(sink.received) == 3
    for n in range(3):
        assert_consent_request(app, db, sink, f"mass{n}@example.test")


def test_the_built_in_consent_request_is_saved_as_a_template_whose_use_asks_for_consent(
        app, db, users, staff, smtp_settings):
    sink, _ = smtp_settings
    listing = staff.get("/templates")
    form = listing.click("Tracking consent request").forms["template-form"]
    assert form["asks_consent"].checked and form["name"].value == "Tracking consent request"
    form.submit(status=303)
    template = db.scalars(select(EmailTemplate)).one()
    assert template.asks_consent and template.owner_id == users["sam"].id
    compose_form = staff.get("/emails/new", {"template": template.id}).forms["compose"]
    assert compose_form["ask_consent"].checked
    compose_form["to"] = "reader@example.test"
    compose_form["ask_consent"] = False  # the template asks all the same
    compose_form.submit("action", value="send").follow()
    assert_consent_request(app, db, sink, "reader@example.test")
    # An ordinary template's box is unticked, and it stays a plain template.
    edit = staff.get(f"/templates/{template.id}").forms["template-form"]
    edit["asks_consent"] = False
    edit.submit(status=303)
    db.expire_all()
    assert not db.get(EmailTemplate, template.id).asks_consent


def test_deciding_a_batch_costs_the_same_queries_whatever_its_size(app, db, users, send):
    set_policy(app, db, consent.CONSENTED)
    small = [f"small{n}@example.test" for n in range(5)]
    large = [f"large{n}@example.test" for n in range(60)]
    state_consents(db, {address: consent.GRANTED for address in small[:2] + large[:30]})
    db.add_all([Contact(first_name="No", last_name="Track", email=address, do_not_track=True)
                for address in (small[2], *large[30:40])])
    db.commit()
    measuring = Measuring.of(db, app.config, db.get(Email, send.compose(to=small).email.id))
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    costs = []
    for addresses in (small, large):
        email = send.compose(to=addresses).email
        event.listen(db.get_bind(), "before_cursor_execute", count)
        try:
            claimed = claim_batch(db, email.id, 100, measuring)
        finally:
            event.remove(db.get_bind(), "before_cursor_execute", count)
        costs.append(len(statements))
        statements.clear()
        assert sorted(address for _, address, _, _, tracked in claimed if tracked) == sorted(
            addresses[:2] if addresses is small else addresses[:30])
    assert costs[0] == costs[1]


def test_messages_with_merge_fields_come_in_the_same_two_kinds(app, db, users, smtp_settings, send):
    sink, _ = smtp_settings
    set_policy(app, db, consent.CONSENTED, minimum=2)
    people = [Contact(first_name=name, last_name="Merge", email=f"{name.lower()}@example.test")
              for name in ("Granted", "Unknown", "Refused")]
    db.add_all(people)
    db.commit()
    state_consents(db, {"granted@example.test": consent.GRANTED, "refused@example.test": consent.REFUSED})
    email = send(to=[f"contact:{person.id}" for person in people],
                 html=HTML.replace("<p>Hi</p>", "<p>Hi $contacts-firstname$</p>")).email
    assert "Hi Granted" in bodies(mail_to(sink, "granted@example.test"))[0]
    assert_tracked(app, db, sink, "granted@example.test")
    for address, name in (("unknown@example.test", "Unknown"), ("refused@example.test", "Refused")):
        assert f"Hi {name}" in bodies(mail_to(sink, address))[0]
        assert_unmeasured(app, db, sink, address)
        assert anonymous_image_of(app, email) in bodies(mail_to(sink, address))[0]


def test_the_email_page_says_it_is_a_consent_request_and_who_is_not_measured(app, db, staff, smtp_settings, send):
    set_policy(app, db, consent.CONSENTED)
    request = send(to=["asked@example.test"], asks_consent=True).email
    assert "a tracking consent request" in staff.get(f"/emails/{request.id}")
    email = send(to=["unknown@example.test"]).email
    page = staff.get(f"/emails/{email.id}")
    assert "a tracking consent request" not in page and "(not measured)" in page
