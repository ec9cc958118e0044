"""Send as me: an administrator allows domains (and whether staff may too); a user whose own address
is at one sends from their own name and address, replies going to them unless another Reply-To is
given; the install's address stays the default; with DKIM on the signature is made for the From used."""

from __future__ import annotations

import dataclasses

import dkim
import pytest
from sqlalchemy import select

from coretrack.models import Email, User
from coretrack.settings import SettingsService
from coretrack.validation import ValidationError


@pytest.fixture
def allowed(db, config, smtp_settings, users):
    """example.test allowed; sam is Sam Smith <sam@example.test>."""
    SettingsService(db, config).update({"own_from_domains": "Example.test, example.test"}, user_name="admin")
    sam = db.scalar(select(User).where(User.name == "sam"))
    sam.first_name, sam.last_name, sam.email = "Sam", "Smith", "sam@example.test"
    db.commit()
    return smtp_settings


def compose_as_me(client, **fields):
    form = client.get("/emails/new").forms["compose"]
    form["to"] = "ann@example.test"
    form["subject"], form["html"] = "Hello", "<p>Hi</p>"
    for name, value in fields.items():
        form[name] = value
    return form


def test_the_admin_lists_domains_in_the_settings_each_checked(db, config):
    service = SettingsService(db, config)
    assert service.get("own_from_domains") == ""
    service.update({"own_from_domains": "Example.test, mail.example.test example.test"}, user_name="admin")
    assert service.get("own_from_domains") == "example.test, mail.example.test"
    with pytest.raises(ValidationError) as refused:
        service.update({"own_from_domains": "example.test, not a domain!"}, user_name="admin")
    assert "own_from_domains" in refused.value.errors


def test_a_user_at_an_allowed_domain_sends_from_their_own_name_and_replies_go_to_them(staff, db, allowed):
    sink, _ = allowed
    page = compose_as_me(staff, from_me=True).submit("action", value="send", status=303)
    mail = sink.received[-1].message
    assert mail["From"] == "Sam Smith <sam@example.test>" and mail["Reply-To"] == "sam@example.test"
    email = db.scalars(select(Email)).one()
    assert (email.from_address, email.from_name) == ("sam@example.test", "Sam Smith")
    assert "Sam Smith" in page.follow().html.select_one("section.card[aria-label=Details]").text


def test_a_reply_to_given_wins_and_the_install_address_stays_the_default(staff, db, allowed):
    sink, _ = allowed
    compose_as_me(staff, from_me=True, reply_to="team@example.test").submit("action", value="send", status=303)
    assert sink.received[-1].message["Reply-To"] == "team@example.test"
    compose_as_me(staff).submit("action", value="send", status=303)
    assert sink.received[-1].message["From"] == "Example CRM <crm@example.test>"
    assert sink.received[-1].message["Reply-To"] is None


def test_the_choice_is_offered_only_to_whom_it_is_allowed(staff, admin, db, config, allowed):
    assert staff.get("/emails/new").html.select_one("#f-from_me")
    SettingsService(db, config).update({"own_from_staff": "false"}, user_name="admin")
    assert not staff.get("/emails/new").html.select_one("#f-from_me")
    compose_as_me(staff).submit("action", value="send", status=303)  # without the box: the install's address
    form = staff.get("/emails/new").forms["compose"]
    form["to"], form["subject"], form["html"] = "ann@example.test", "Hello", "<p>Hi</p>"
    forged = staff.post("/emails", {**dict(form.submit_fields()), "from_me": "on", "action": "send"}, status=400)
    assert "only administrators" in forged.html.select_one("#e-from_me").text
    assert db.scalar(select(Email).where(Email.from_address == "sam@example.test")) is None


def test_an_address_at_a_domain_not_allowed_is_refused_saying_why(staff, db, allowed):
    sam = db.scalar(select(User).where(User.name == "sam"))
    sam.email = "sam@elsewhere.test"
    db.commit()
    page = staff.get("/emails/new")
    assert not page.html.select_one("#f-from_me")
    form = page.forms["compose"]
    form["to"], form["subject"], form["html"] = "ann@example.test", "Hello", "<p>Hi</p>"
    refused = staff.post("/emails", {**dict(form.submit_fields()), "from_me": "on", "action": "send"}, status=400)
    assert "elsewhere.test is not among the domains" in refused.html.select_one("#e-from_me").text


@pytest.fixture
def config(config, dns_server):
    return dataclasses.replace(config, dns_server=dns_server.address)


@pytest.mark.slow
def test_with_dkim_on_mail_sent_as_me_is_signed_for_my_domain(admin, staff, db, config, dns_server, allowed):
    """The install's address is at example.test; Sam's at people.test: each signature is for its From's domain."""
    SettingsService(db, config).update({"own_from_domains": "people.test"}, user_name="admin")
    sam = db.scalar(select(User).where(User.name == "sam"))
    sam.email = "sam@people.test"
    db.commit()
    admin.get("/settings").forms["generate-dkim-key"].submit().follow()
    page = admin.get("/settings")
    text = page.html.select_one("#dkim-record-text").get_text(strip=True)
    for domain in ("example.test", "people.test"):
        dns_server.txt(f"coretrack._domainkey.{domain}", text)
    dns_server.start()
    form = page.forms["settings-form"]
    form["dkim_enabled"] = True
    form.submit().follow()
    sink, _ = allowed
    compose_as_me(staff, from_me=True).submit("action", value="send", status=303)
    compose_as_me(staff).submit("action", value="send", status=303)
    mine, install = sink.received[-2], sink.received[-1]
    assert "d=people.test" in mine.message["DKIM-Signature"] and dkim.verify(mine.data, dnsfunc=dns_server.txt_of)
    assert "d=example.test" in install.message["DKIM-Signature"]
    assert dkim.verify(install.data, dnsfunc=dns_server.txt_of)


def test_the_admin_sets_the_domains_on_the_settings_page(admin, db, config):
    form = admin.get("/settings").forms["settings-form"]
    form["own_from_domains"] = "example.test people.test"
    form["own_from_staff"] = False
    form.submit().follow()
    service = SettingsService(db, config)
    assert (service.get("own_from_domains"), service.get("own_from_staff")) == ("example.test, people.test", False)


def test_the_api_sends_as_me_when_allowed_and_says_why_not_otherwise(staff, db, config, allowed):
    body = {"to": ["ann@example.test"], "subject": "Hello", "html": "<p>Hi</p>", "from_me": True}
    sent = staff.post_json("/api/emails", body, status=201).json
    assert sent["from"] == "sam@example.test" and db.get(Email, sent["id"]).reply_to == "sam@example.test"
    SettingsService(db, config).update({"own_from_domains": ""}, user_name="admin")
    refused = staff.post_json("/api/emails", body, status=400).json
    assert "not enabled" in refused["fields"]["from_me"]
