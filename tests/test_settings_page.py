"""The configuration editor: typed fields, all-or-nothing saves, encrypted secrets, an audit trail, admins only."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from support.hit_load import commits, wait_until

from coretrack import csrf
from coretrack.config import Config, SmtpServer
from coretrack.models import Email, Recipient, Setting, SettingChange
from coretrack.settings import MASK, SettingsService
from coretrack.tracking import tokens
from coretrack.tracking.image import GIF
from coretrack.views.public import TRACK_ACCESS_PATH

SMTP_PASSWORD = "Sm7p-pa55word!"


def stored(db, key: str) -> str | None:
    """The raw text in the settings table (None: never saved, the default applies)."""
    db.expire_all()
    return db.scalar(select(Setting.value).where(Setting.key == key))


def audit(db) -> list[SettingChange]:
    db.expire_all()
    return list(db.scalars(select(SettingChange).order_by(SettingChange.id)))


def settings_form(client):
    return client.get("/settings").forms["settings-form"]


def error_next_to(response, key: str) -> str:
    """The error text of a field, found the way a screen reader would: through aria-describedby."""
    control = response.html.find(id=f"f-{key}")
    assert control is not None, key
    assert control.get("aria-invalid") == "true"
    assert f"e-{key}" in control["aria-describedby"].split()
    return response.html.find(id=f"e-{key}").get_text(strip=True)


def test_the_editor_groups_typed_fields_under_legends(admin):
    page = admin.get("/settings")
    legends = [legend.get_text(strip=True) for legend in page.html.select("fieldset > legend")]
    assert legends == ["Tracking", "Outgoing mail", "Mail authentication", "General", "SendGrid events", "Bounces",
                       "Guardrails"]
    html = page.html
    assert html.find("label", attrs={"for": "f-tracking_disabled"}).get_text(strip=True) == \
        "Disable Email Statistics Tracking"
    assert html.find(id="f-tracking_disabled")["type"] == "checkbox"
    port = html.find(id="f-smtp_port")
    assert (port["type"], port["min"], port["max"]) == ("number", "1", "65535")
    assert html.find(id="f-smtp_security").name == "select"
    assert html.find(id="f-smtp_password")["type"] == "password"
    assert html.find(id="f-from_address")["type"] == "email"
    assert html.find(id="f-public_url")["type"] == "url"
    assert html.find(id="f-from_name")["type"] == "text"
    # Every field is described by its help text.
    for control in html.select("#settings-form input[id^=f-], #settings-form select"):
        key = control["id"][2:]
        assert f"h-{key}" in control["aria-describedby"].split()
        assert html.find(id=f"h-{key}").get_text(strip=True)


def test_admin_changes_the_outgoing_mail_server_and_every_change_is_audited(admin, db):
    form = settings_form(admin)
    form["smtp_host"] = "mail.example.test"
    form["smtp_port"] = "587"
    form["smtp_security"] = "starttls"
    form["from_address"] = "news@example.test"
    response = form.submit(status=303)

    page = response.follow()
    assert "4 settings changed" in page.html.find(class_="notice").get_text()
    assert (stored(db, "smtp_host"), stored(db, "smtp_port"), stored(db, "smtp_security"),
            stored(db, "from_address")) == ("mail.example.test", "587", "starttls", "news@example.test")
    changes = {change.key: change for change in audit(db)}
    assert set(changes) == {"smtp_host", "smtp_port", "smtp_security", "from_address"}
    assert all(change.user_name == "admin" for change in changes.values())
    assert (changes["smtp_port"].old_value, changes["smtp_port"].new_value) == ("25", "587")
    assert (changes["smtp_host"].old_value, changes["smtp_host"].new_value) == ("127.0.0.1", "mail.example.test")

    # The audit trail under the form: who, which setting (by its label), old -> new.
    rows = [[cell.get_text(" ", strip=True) for cell in row.find_all("td")]
            for row in page.html.select("#history ~ .table-wrap tbody tr")]
    assert ["admin", "Port", "25 → 587"] in [row[1:] for row in rows]
    assert ["admin", "Security", "None → STARTTLS"] in [row[1:] for row in rows]
    assert page.forms["settings-form"]["smtp_port"].value == "587"


def test_saving_an_unchanged_form_changes_nothing(admin, db):
    response = settings_form(admin).submit(status=303).follow()
    assert "nothing changed" in response.html.find(class_="notice").get_text()
    assert audit(db) == []


def test_the_smtp_password_is_stored_encrypted_and_never_shown(admin, app, db):
    form = settings_form(admin)
    assert "no password is stored" in form.response.text
    form["smtp_username"] = "mailer"
    form["smtp_password"] = SMTP_PASSWORD
    page = form.submit(status=303).follow()

    raw = stored(db, "smtp_password")
    assert raw and SMTP_PASSWORD not in raw
    assert SettingsService(db, app.config).get("smtp_password") == SMTP_PASSWORD
    assert SMTP_PASSWORD not in page.text
    assert raw not in page.text
    assert page.forms["settings-form"]["smtp_password"].value == ""
    assert "Currently a password is stored." in page.text
    change = next(change for change in audit(db) if change.key == "smtp_password")
    assert (change.old_value, change.new_value) == ("", MASK)
    assert f"(empty) → {MASK}" in page.text


def test_leaving_the_password_empty_keeps_the_stored_one(admin, app, db):
    form = settings_form(admin)
    form["smtp_password"] = SMTP_PASSWORD
    form.submit(status=303)
    before = stored(db, "smtp_password")

    form = settings_form(admin)
    assert form["smtp_password"].value == ""
    form["from_name"] = "Sales"
    form.submit(status=303)

    assert stored(db, "smtp_password") == before
    assert SettingsService(db, app.config).get("smtp_password") == SMTP_PASSWORD
    assert [change.key for change in audit(db)] == ["smtp_password", "from_name"]


def test_a_changed_password_is_audited_as_mask_to_mask(admin, db):
    for password in (SMTP_PASSWORD, "another-password"):
        form = settings_form(admin)
        form["smtp_password"] = password
        form.submit(status=303)
    last = audit(db)[-1]
    assert (last.key, last.old_value, last.new_value) == ("smtp_password", MASK, MASK)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("smtp_port", "70000", "from 1 to 65535"),
        ("smtp_port", "twenty-five", "whole number"),
        ("smtp_connections", "0", "enter a whole number from 1 to 10"),
        ("smtp_connections", "11", "enter a whole number from 1 to 10"),
        ("from_address", "not an address", "not a valid email address"),
        ("public_url", "ftp://files.example.test", "http://"),
        ("public_url", "https://track.example.test/crm?x=1", "http://"),
        ("smtp_security", "ssl3", "choose one of the options"),
        ("smtp_host", "", "required"),
    ],
)
def test_an_invalid_field_is_refused_with_its_message_and_nothing_is_saved(admin, db, key, value, message):
    form = settings_form(admin)
    form["from_name"] = "A valid new name"  # valid, and must not be saved either
    form["tracking_disabled"] = True
    form["smtp_password"] = SMTP_PASSWORD
    if key == "smtp_security":
        form[key].force_value(value)  # a value the select does not offer, as a forged post would send
    else:
        form[key] = value
    response = form.submit(status=400)

    assert message in error_next_to(response, key)
    assert "Nothing was saved" in response.html.find(class_="alert").get_text()
    assert db.scalar(select(func.count()).select_from(Setting)) == 0
    assert audit(db) == []
    # What was typed is still there to correct, except the password.
    again = response.forms["settings-form"]
    assert again["from_name"].value == "A valid new name"
    assert again["tracking_disabled"].checked
    assert again["smtp_password"].value == ""
    assert SMTP_PASSWORD not in response.text
    if key != "smtp_security":
        assert again[key].value == value


def test_disabling_tracking_stops_counting_but_the_image_still_loads(admin, anon, app, db, users):
    email = Email(subject="Hello", html_body="<p>Hi</p>", sender_id=users["admin"].id,
                  from_address="crm@example.test", status="sent")
    recipient = Recipient(address="ann@example.test", token=tokens.new_token(app.secret), status="sent")
    email.recipients.append(recipient)
    db.add(email)
    db.commit()

    def hit():
        written = commits(app.tracker.engine)
        response = anon.get(TRACK_ACCESS_PATH, params={"t": recipient.token}, status=200)
        assert response.content_type == "image/gif" and response.body == GIF
        wait_until(lambda: written, "the hit to be written", 10)
        db.expire_all()
        return db.get(Recipient, recipient.id).access_count

    assert hit() == 1

    form = settings_form(admin)
    assert not form["tracking_disabled"].checked
    form["tracking_disabled"] = True
    form.submit(status=303)
    assert stored(db, "tracking_disabled") == "true"
    assert settings_form(admin)["tracking_disabled"].checked
    assert hit() == 1
    assert hit() == 1

    # Unchecking the box is sent as "false": tracking is on again.
    form = settings_form(admin)
    form["tracking_disabled"] = False
    form.submit(status=303)
    assert stored(db, "tracking_disabled") == "false"
    assert hit() == 2
    change = [c for c in audit(db) if c.key == "tracking_disabled"]
    assert [(c.old_value, c.new_value) for c in change] == [("false", "true"), ("true", "false")]


def test_staff_cannot_open_or_post_the_editor(staff, app, db):
    staff.get("/settings", status=403)
    token = csrf.make_token(app.secret, "sam")  # a valid token for sam: the role alone refuses
    staff.post("/settings", {"csrf_token": token, "smtp_host": "evil.example.test",
                             "tracking_disabled": "on"}, status=403)
    assert stored(db, "smtp_host") is None
    assert stored(db, "tracking_disabled") is None
    assert audit(db) == []


def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(admin, app, db):
    fields = {"smtp_host": "evil.example.test", "tracking_disabled": "on"}
    admin.post("/settings", fields, status=403)
    admin.post("/settings", {**fields, "csrf_token": csrf.make_token(app.secret, "sam")}, status=403)
    assert stored(db, "smtp_host") is None
    assert stored(db, "tracking_disabled") is None
    assert audit(db) == []


def test_setting_values_with_markup_are_shown_escaped(admin, app, db):
    markup = '<script>alert("x")</script>'
    SettingsService(db, app.config).update({"from_name": markup}, user_name="<b>intruder</b>")
    page = admin.get("/settings")
    assert markup not in page.text
    assert "<b>intruder</b>" not in page.text
    assert "&lt;script&gt;" in page.text
    assert page.forms["settings-form"]["from_name"].value == markup
    assert page.html.find("script") is None


# -- the SMTP password goes only to the login it was typed for ------------------------------


def store_login(admin, password=SMTP_PASSWORD):
    form = settings_form(admin)
    form["smtp_host"] = "mail.example.test"
    form["smtp_port"] = "587"
    form["smtp_security"] = "starttls"
    form["smtp_username"] = "mailer"
    form["smtp_password"] = password
    form.submit(status=303)


@pytest.mark.parametrize(("key", "value"), [
    ("smtp_host", "mail.elsewhere.test"), ("smtp_port", "25"), ("smtp_security", "none"),
    ("smtp_security", "tls"), ("smtp_username", "someone-else"),
])
def test_changing_the_server_or_login_removes_the_stored_password_unless_typed_again(admin, app, db, key, value):
    store_login(admin)
    form = settings_form(admin)
    form[key] = value
    page = form.submit(status=303).follow()

    assert SettingsService(db, app.config).get("smtp_password") == ""
    assert SettingsService(db, app.config).smtp_server().password == ""
    notice = page.html.find(class_="notice").get_text(" ", strip=True)
    assert "2 settings changed" in notice and "password was removed" in notice
    assert "Currently no password is stored." in page.text
    last = audit(db)[-2:]
    assert [(c.key, c.old_value, c.new_value, c.user_name) for c in last] == [
        (key, {"smtp_host": "mail.example.test", "smtp_port": "587", "smtp_security": "starttls",
               "smtp_username": "mailer"}[key], value, "admin"),
        ("smtp_password", MASK, "", "admin")]
    assert f"{MASK} → (empty)" in page.text


def test_a_password_typed_with_the_new_server_is_kept(admin, app, db):
    store_login(admin)
    form = settings_form(admin)
    form["smtp_host"] = "mail.elsewhere.test"
    form["smtp_password"] = "the-new-servers-password"
    form.submit(status=303)
    assert SettingsService(db, app.config).get("smtp_password") == "the-new-servers-password"
    assert [(c.key, c.old_value, c.new_value) for c in audit(db)[-2:]] == [
        ("smtp_host", "mail.example.test", "mail.elsewhere.test"), ("smtp_password", MASK, MASK)]


def test_other_changes_keep_the_stored_password(admin, app, db):
    store_login(admin)
    form = settings_form(admin)
    form["from_name"] = "Sales"
    form["smtp_port"] = "587"  # unchanged
    form.submit(status=303)
    assert SettingsService(db, app.config).get("smtp_password") == SMTP_PASSWORD


def test_the_form_says_when_the_password_is_removed(admin):
    help_text = settings_form(admin).response.html.find(id="h-smtp_password").get_text(" ", strip=True)
    assert "removed when the server, port, security or user name changes" in help_text


def test_the_stored_password_can_be_removed_explicitly(admin, app, db):
    assert "smtp_password_clear" not in settings_form(admin).fields  # nothing to remove yet
    store_login(admin)
    form = settings_form(admin)
    box = form.response.html.find(id="f-smtp_password_clear")
    assert box["type"] == "checkbox"
    assert form.response.html.find("label", attrs={"for": "f-smtp_password_clear"}).get_text(strip=True) == \
        "Remove the stored password"
    form["smtp_password_clear"] = True
    page = form.submit(status=303).follow()

    assert SettingsService(db, app.config).get("smtp_password") == ""
    assert stored(db, "smtp_host") == "mail.example.test" and stored(db, "smtp_username") == "mailer"
    assert [(c.key, c.old_value, c.new_value) for c in audit(db)[-1:]] == [("smtp_password", MASK, "")]
    assert "password was removed" in page.html.find(class_="notice").get_text()
    assert "Currently no password is stored." in page.text


def test_removing_and_typing_a_password_at_once_is_refused(admin, app, db):
    store_login(admin)
    form = settings_form(admin)
    form["smtp_password_clear"] = True
    form["smtp_password"] = "another-password"
    form["from_name"] = "Sales"
    response = form.submit(status=400)
    assert "not both" in error_next_to(response, "smtp_password")
    assert SettingsService(db, app.config).get("smtp_password") == SMTP_PASSWORD
    assert stored(db, "from_name") is None


def test_the_environments_password_goes_only_to_the_environments_server(app, db):
    environment = {"CORETRACK_HOME": str(app.config.home), "CORETRACK_DATABASE_URL": app.config.database_url,
                   "CORETRACK_SMTP_URL": "smtp+starttls://mailer:env-pass@mail.example.test:587"}
    settings = SettingsService(db, Config.from_env(environment))
    assert settings.smtp_server().password == "env-pass"
    settings.update({"smtp_host": "mail.elsewhere.test"}, "admin")
    assert settings.smtp_server().password == ""
    assert [(c.key, c.old_value, c.new_value) for c in audit(db)] == [
        ("smtp_host", "mail.example.test", "mail.elsewhere.test"), ("smtp_password", MASK, "")]

    # A server saved in the editor before the environment got a password for another one.
    db.query(Setting).delete()
    db.commit()
    SettingsService(db, app.config).update({"smtp_host": "saved.example.test", "smtp_port": "587",
                                            "smtp_security": "starttls"}, "admin")
    assert settings.smtp_server() == SmtpServer("saved.example.test", 587, "starttls", "mailer", "")
