"""Templates with merge fields: saved subject, bodies and attachments to start an email from;
$module-field$ codes filled in for each recipient from their record and the sender's account, in a
sandbox that reaches nothing but the fields offered."""

from __future__ import annotations

import pytest
import webtest
from sqlalchemy import select

from coretrack.auth import Htpasswd, UserService
from coretrack.models import Account, Contact, EmailTemplate, Lead, User
from coretrack.sending import merge_fields

# -- rendering --------------------------------------------------------------------------------


def values(**fields: str) -> dict[str, str]:
    record = Contact(first_name=fields.get("first", "Ada"), last_name="Lovelace", email="ada@example.test",
                     phone="", account=Account(name=fields.get("account", "Acme"), email="", phone="", website=""))
    return merge_fields.values_for(record, merge_fields.sender_values(
        User(name="sam", first_name="Sam", last_name="Smith", email="sam@example.test")))


def test_each_offered_field_renders_its_value_and_html_gets_it_escaped():
    rendered = merge_fields.render(
        "Hello $contacts-firstname$ of $contacts-accountname$",
        "<p>Dear $contacts-firstname$ $contacts-lastname$, from $users-first_name$ $users-last_name$"
        " &lt;$users-email1$&gt; ($users-user_name$) at $accounts-accountname$</p>",
        "Dear $contacts-firstname$", values(first="Ada <b>& co</b>"))
    assert rendered.subject == "Hello Ada <b>& co</b> of Acme"
    assert rendered.html == ("<p>Dear Ada &lt;b&gt;&amp; co&lt;/b&gt; Lovelace, from Sam Smith &lt;sam@example.test&gt;"
                             " (sam) at Acme</p>")
    assert rendered.text == "Dear Ada <b>& co</b>"
    assert rendered.unknown == rendered.empty == []


def test_fields_of_another_kind_of_record_or_none_render_empty_and_are_reported():
    rendered = merge_fields.render("$leads-company$", "<p>$contacts-phone$ $leads-firstname$</p>", "", values())
    assert (rendered.subject, rendered.html) == ("", "<p> </p>")
    assert rendered.empty == ["$contacts-phone$", "$leads-company$", "$leads-firstname$"]
    typed_address = merge_fields.values_for(None, merge_fields.sender_values(None))
    assert merge_fields.render("Hi $contacts-firstname$", "", "", typed_address).empty == ["$contacts-firstname$"]
    lead = merge_fields.values_for(Lead(first_name="Grace", last_name="Hopper", company="Navy", email="", phone=""), {})
    assert merge_fields.render("$leads-company$ $accounts-accountname$", "", "", lead).subject == "Navy"


def test_a_value_goes_into_the_subject_on_one_line():
    assert merge_fields.render("Hi $contacts-firstname$!", "", "", values(first="Ada\r\nBcc: x@evil")).subject == \
        "Hi Ada Bcc: x@evil!"


@pytest.mark.parametrize("attempt", [
    "$contacts-__class__$", "$contacts-__init__$", "$users-password$", "$users-signature_html$",
    "$users-role$", "$contacts-first_name$", "$contacts-account$", "$contacts-_sa_instance_state$",
    "$settings-smtp_password$", "$config-secret_key$", "$contacts-firstname.__class__$",
])
def test_nothing_but_an_offered_field_is_reached(attempt):
    rendered = merge_fields.render(attempt, f"<p>{attempt}</p>", attempt, values())
    # Not a field (or not an offered one): it renders empty, or stays as the text it is.
    for part in (rendered.subject, rendered.html, rendered.text):
        assert "Contact" not in part and "sam" not in part and "function" not in part and "state" not in part
        assert part.replace("<p>", "").replace("</p>", "") in ("", attempt)


@pytest.mark.parametrize("code", ["{{ config }}", "{{ ''.__class__.__mro__ }}", "{% import os %}{{ os.environ }}",
                                  "${7*7}", "#{7*7}", "<%= 7*7 %>", "{7*7}"])
def test_other_template_languages_are_plain_text(code):
    rendered = merge_fields.render(code, code, code, values())
    assert rendered.subject == code and rendered.text == code and "49" not in rendered.html


def test_a_value_is_never_rendered_again_as_a_template():
    rendered = merge_fields.render("$contacts-firstname$", "$contacts-firstname$", "$contacts-firstname$",
                                   values(first="$users-email1$ {{ config }}"))
    assert rendered.subject == rendered.html == rendered.text == "$users-email1$ {{ config }}"


# -- the Templates section --------------------------------------------------------------------


def create_template(client, status=303, **fields):
    form = client.get("/templates/new").forms["template-form"]
    form["name"] = fields.get("name", "Welcome")
    form["subject"] = fields.get("subject", "Welcome, $contacts-firstname$")
    form["html"] = fields.get("html", "<p>Dear $contacts-firstname$ of $accounts-accountname$,</p>"
                                      "<p>$users-first_name$</p><script>steal()</script>")
    form["text"] = fields.get("text", "")
    if "attachments" in fields:
        form["attachments"] = fields["attachments"]
    return form.submit(status=status)


def test_staff_save_a_template_cleaned_of_script_with_an_attachment(staff, db):
    page = create_template(staff, attachments=[("terms.txt", b"Our terms", "text/plain")]).follow()
    assert "Saved the template “Welcome”." in page.text
    template = db.scalars(select(EmailTemplate)).one()
    assert "<script" not in template.html_body and "steal" not in template.html_body
    assert "$contacts-firstname$" in template.html_body
    assert [(a.filename, a.size) for a in template.attachments] == [("terms.txt", 9)]
    listed = staff.get("/templates")
    assert "Welcome" in listed.text and "terms.txt" in listed.text


def test_a_template_needs_a_unique_name_a_subject_and_a_body(staff, db):
    create_template(staff)
    page = create_template(staff, status=400, name="welcome", subject="", html=" ")
    assert "exists already" in page.html.select_one("#e-name").text
    assert page.html.select_one("#e-subject") and page.html.select_one("#e-html")
    assert page.forms["template-form"]["name"].value == "welcome"  # nothing typed is lost
    assert db.scalar(select(EmailTemplate.name)) == "Welcome"


def test_only_its_owner_and_admins_change_or_delete_a_template(app, staff, admin, db, users):
    create_template(staff)
    template_id = db.scalar(select(EmailTemplate.id))
    UserService(db, Htpasswd(app.config.htpasswd_path)).add("kim", "kim-password-1", role="staff")
    kim = webtest.TestApp(app, extra_environ={"REMOTE_USER": "kim"})
    page = kim.get(f"/templates/{template_id}")
    assert page.html.select_one("#template-form fieldset[disabled]") and not page.html.select_one("#delete-template")
    token = page.forms["template-form"]["csrf_token"].value  # kim's own: the refusal is the role check's
    kim.post(f"/templates/{template_id}", {"csrf_token": token, "name": "Mine", "subject": "x", "html": "<p>x</p>"},
             status=403)
    kim.post(f"/templates/{template_id}/delete", {"csrf_token": token, "confirm": "yes"}, status=403)
    edit = admin.get(f"/templates/{template_id}").forms["template-form"]
    edit["subject"] = "Changed by an admin"
    edit.submit(status=303)
    delete = admin.get(f"/templates/{template_id}").forms["delete-template"]
    assert "Nothing was deleted" in delete.submit(status=400).text  # not without the box ticked
    delete["confirm"] = True
    assert "Deleted the template “Welcome”." in delete.submit(status=303).follow().text
    db.expire_all()
    assert db.scalar(select(EmailTemplate)) is None


def test_removing_an_attachment_and_deleting_a_template_remove_their_files(staff, db, config):
    create_template(staff, attachments=[("a.txt", b"A", "text/plain")])
    template = db.scalars(select(EmailTemplate)).one()
    path = config.attachments_dir / template.attachments[0].storage_name
    assert path.read_bytes() == b"A"
    form = staff.get(f"/templates/{template.id}").forms["template-form"]
    form.get("remove", index=0).checked = True
    form.submit(status=303)
    assert not path.exists()
    db.expire_all()
    assert db.get(EmailTemplate, template.id).attachments == []


# -- composing from a template ------------------------------------------------------------------


@pytest.fixture
def people(db):
    acme = Account(name="Acme & Sons", email="office@acme.test")
    ada = Contact(first_name="Ada", last_name="Lovelace", email="ada@acme.test", account=acme)
    alan = Contact(first_name="Alan", last_name="Turing", email="alan@example.test")
    grace = Lead(first_name="Grace", last_name="Hopper", company="Navy", email="grace@navy.test")
    db.add_all([acme, ada, alan, grace])
    db.commit()
    return {"acme": acme, "ada": ada, "alan": alan, "grace": grace}


def test_an_email_from_a_template_starts_with_its_subject_and_bodies(staff, db):
    create_template(staff)
    template = db.scalars(select(EmailTemplate)).one()
    form = staff.get(f"/emails/new?template={template.id}&to=ada@acme.test").forms["compose"]
    assert form["subject"].value == "Welcome, $contacts-firstname$"
    assert form["html"].value == template.html_body
    assert form["template"].value == str(template.id) and form["to"].value == "ada@acme.test"
    assert staff.get("/emails/new?template=999999", status=400).html.select_one("#e-template")


def test_the_preview_shows_the_message_as_the_chosen_recipient_gets_it_and_warns(staff, db, people):
    form = staff.get("/emails/new").forms["compose"]
    form["to"] = f"typed@example.test, contact:{people['alan'].id}, contact:{people['ada'].id}"
    form["subject"] = "Hi $contacts-firstname$"
    form["html"] = "<p>$contacts-firstname$ at $accounts-accountname$ $contacts-nickname$</p>"
    preview = form.submit("action", value="preview")
    # The first recipient with a record, by default.
    assert "As alan@example.test" in preview.html.select_one("#preview-as").text
    assert "Hi Alan" in preview.text
    warnings = preview.html.select_one("#merge-warnings").text
    assert "$contacts-nickname$" in warnings and "$accounts-accountname$" in warnings
    again = preview.forms["compose"]
    again["preview_as"] = "ADA@acme.test"
    chosen = again.submit("action", value="preview")
    assert "As ada@acme.test" in chosen.html.select_one("#preview-as").text
    assert "<p>Ada at Acme &amp; Sons </p>" in chosen.html.select_one("iframe.message")["srcdoc"]
    assert "accountname" not in chosen.html.select_one("#merge-warnings").text


def test_each_recipient_gets_their_own_fields_and_the_template_attachments(staff, db, people, smtp_settings, users):
    sink, _ = smtp_settings
    sam = db.scalar(select(User).where(User.name == "sam"))
    sam.first_name, sam.last_name = "Sam", "Smith"
    db.commit()
    create_template(staff, subject="For $contacts-firstname$$leads-firstname$",
                    html="<p>Dear $contacts-firstname$$leads-firstname$ ($leads-company$$accounts-accountname$),"
                         "</p><p>$users-first_name$ $users-last_name$</p>",
                    text="Dear $contacts-firstname$$leads-firstname$",
                    attachments=[("terms.txt", b"Our terms", "text/plain")])
    template = db.scalars(select(EmailTemplate)).one()
    form = staff.get(f"/emails/new?template={template.id}").forms["compose"]
    form["to"] = (f"contact:{people['ada'].id}, contact:{people['alan'].id}, lead:{people['grace'].id}, "
                  "typed@example.test")
    form.submit("action", value="send", status=303)
    received = {mail.rcpt_tos[0]: mail.message for mail in sink.received}
    expected = {"ada@acme.test": ("Ada", "Ada (Acme &amp; Sons)"), "alan@example.test": ("Alan", "Alan ()"),
                "grace@navy.test": ("Grace", "Grace (Navy)"), "typed@example.test": ("", " ()")}
    assert set(received) == set(expected)
    for address, (name, greeting) in expected.items():
        message = received[address]
        assert message["Subject"] == f"For {name}".strip()
        html = message.get_body(("html",)).get_content()
        assert f"<p>Dear {greeting},</p><p>Sam Smith</p>" in html
        assert message.get_body(("plain",)).get_content().startswith(f"Dear {name}")
        assert [(part.get_filename(), part.get_content()) for part in message.iter_attachments()] == \
            [("terms.txt", "Our terms")]


def test_the_sender_fields_come_from_the_account_page(staff, db):
    form = staff.get("/account").forms["account-form"]
    form["first_name"], form["last_name"], form["email"] = "Sam", "Smith", "sam@example.test"
    form.submit(status=303)
    sam = db.scalar(select(User).where(User.name == "sam"))
    db.refresh(sam)
    assert (sam.first_name, sam.last_name, sam.email) == ("Sam", "Smith", "sam@example.test")
    form = staff.get("/account").forms["account-form"]
    form["first_name"], form["email"] = "S" * 101, "not an address"
    page = form.submit(status=400)
    assert page.html.select_one("#e-first_name") and page.html.select_one("#e-email")
