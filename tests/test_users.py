"""User management: the page and the CLI change the users table and the htpasswd file together."""

from __future__ import annotations

import pytest
import webtest
from click.testing import CliRunner
from sqlalchemy import func, select
from support.constants import ADMIN_PASSWORD, STAFF_PASSWORD
from test_auth import private_urls

from coretrack import csrf
from coretrack.auth import Htpasswd, UserError, UserService
from coretrack.cli import main
from coretrack.models import User

ADA_PASSWORD = "ada-password-1"


def htpasswd_entries(app) -> dict[str, str]:
    return dict(Htpasswd(app.config.htpasswd_path).entries())


def account(db, name: str) -> User | None:
    db.expire_all()
    return db.scalar(select(User).where(User.name == name))


def error_next_to(response, field_id: str) -> str:
    control = response.html.find(id=f"f-{field_id}")
    assert f"e-{field_id}" in control["aria-describedby"].split()
    return response.html.find(id=f"e-{field_id}").get_text(strip=True)


@pytest.fixture
def ada(app, db, users):
    """A second admin, so that disabling or demoting one admin is allowed."""
    UserService(db, app.htpasswd).add("ada", ADA_PASSWORD, role="admin")
    return webtest.TestApp(app, extra_environ={"REMOTE_USER": "ada"})


def test_the_page_lists_users_with_role_state_and_creation_time(admin):
    rows = {row["id"]: row for row in admin.get("/users").html.select("tbody tr")}
    assert set(rows) == {"user-admin", "user-sam"}
    sam = rows["user-sam"]
    assert sam.find("th").get_text(strip=True) == "sam"
    assert sam.find("option", selected=True)["value"] == "staff"
    assert sam.find(class_="status").get_text(strip=True) == "active"
    assert sam.find("time")["datetime"]


def test_admin_adds_a_user_to_the_database_and_the_htpasswd_file(admin, app, db):
    form = admin.get("/users").forms["add-user"]
    form["name"] = "carol"
    form["role"] = "staff"
    form["password"] = "carol-password-1"
    form["confirm"] = "carol-password-1"
    page = form.submit(status=303).follow()

    assert "Added staff user carol" in page.html.find(class_="notice").get_text()
    carol = account(db, "carol")
    assert (carol.role, carol.active) == ("staff", True)
    hashed = htpasswd_entries(app)["carol"]
    assert hashed.startswith("$2y$")
    assert Htpasswd.check_hash("carol-password-1", hashed)
    assert f"carol:{hashed}\n" in app.config.htpasswd_path.read_text()
    assert "user-carol" in {row["id"] for row in page.html.select("tbody tr")}


@pytest.mark.parametrize(
    ("name", "password", "confirm", "field", "message"),
    [
        ("sam", "new-password-1", "new-password-1", "name", "already exists"),
        ("carol", "short", "short", "password", "at least 8 characters"),
        ("carol", "carol-password-1", "carol-password-2", "confirm", "not the same"),
        ("carol smith", "carol-password-1", "carol-password-1", "name", "letters, digits"),
    ],
)
def test_adding_a_user_with_bad_input_is_refused_next_to_the_field(admin, app, db, name, password, confirm,
                                                                     field, message):
    before = app.config.htpasswd_path.read_bytes()
    form = admin.get("/users").forms["add-user"]
    form["name"], form["role"], form["password"], form["confirm"] = name, "admin", password, confirm
    response = form.submit(status=400)

    assert message in error_next_to(response, field)
    again = response.forms["add-user"]
    assert (again["name"].value, again["role"].value) == (name, "admin")  # kept to correct
    assert again["password"].value == again["confirm"].value == ""  # never sent back
    assert app.config.htpasswd_path.read_bytes() == before
    assert db.scalar(select(func.count()).select_from(User)) == 2
    assert account(db, "sam").role == "staff"


def test_disabling_asks_for_confirmation_then_refuses_the_user_everywhere(admin, app, db):
    confirmation = admin.get("/users").click(href="/users/sam/disable")
    assert "refused on every page" in confirmation.text
    assert account(db, "sam").active  # looking is harmless
    page = confirmation.forms["disable-sam"].submit(status=303).follow()

    assert "sam is disabled" in page.html.find(class_="notice").get_text()
    assert page.html.find(id="user-sam").find(class_="status").get_text(strip=True) == "disabled"
    assert not account(db, "sam").active
    assert "sam" in htpasswd_entries(app)  # Apache still knows the password: the app says 403, not 401
    sam = webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam"})
    for rule, url in private_urls(app):
        for method in [method for method in ("GET", "POST") if method in rule.methods]:
            response = sam.request(url, method=method, expect_errors=True)
            assert response.status_int == 403, (method, url, response.status)


def test_a_disabled_user_can_be_enabled_again(admin, ada, app, db):
    admin.get("/users/ada/disable").forms["disable-ada"].submit(status=303)
    ada.get("/users", status=403)

    page = admin.get("/users").forms["enable-ada"].submit(status=303).follow()

    assert "ada is enabled again" in page.text
    assert account(db, "ada").active
    ada.get("/users", status=200)


def test_an_admin_cannot_disable_themself(admin, db):
    page = admin.get("/users")
    assert "/users/admin/disable" not in page.text  # not offered
    response = admin.get("/users/admin/disable").forms["disable-admin"].submit(status=400)
    assert "cannot disable your own account" in response.html.find(class_="alert").get_text()
    assert account(db, "admin").active


def test_the_last_active_admin_cannot_be_disabled_or_demoted(app, db, users):
    service = UserService(db, app.htpasswd)
    with pytest.raises(UserError, match="last active admin"):
        service.set_active("admin", False)
    with pytest.raises(UserError, match="last active admin"):
        service.set_role("admin", "staff")
    assert account(db, "admin").active and account(db, "admin").is_admin


def test_admin_changes_a_role(admin, app, db):
    staff_page = webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam"})
    staff_page.get("/settings", status=403)
    form = admin.get("/users").forms["role-sam"]
    form["role"] = "admin"
    page = form.submit(status=303).follow()

    assert "sam now has the admin role" in page.text
    assert account(db, "sam").role == "admin"
    staff_page.get("/settings", status=200)


def test_an_admin_cannot_take_away_their_own_admin_role(admin, ada, db):
    form = admin.get("/users").forms["role-admin"]
    form["role"] = "staff"
    response = form.submit(status=400)
    assert "your own admin role" in error_next_to(response, "role-admin")
    assert account(db, "admin").role == "admin"


def test_a_role_not_in_the_list_is_refused(admin, db):
    form = admin.get("/users").forms["role-sam"]
    form["role"].force_value("root")
    response = form.submit(status=400)
    assert "role must be one of" in error_next_to(response, "role-sam")
    assert account(db, "sam").role == "staff"


def test_a_changed_password_is_accepted_and_the_old_one_refused(admin, ada, standalone):
    form = admin.get("/users").forms["password-ada"]
    form["password"] = form["confirm"] = "ada-new-password"
    page = form.submit(status=303).follow()
    assert "password of ada is changed" in page.text

    standalone.authorization = ("Basic", ("ada", "ada-new-password"))
    standalone.get("/users", status=200)
    standalone.authorization = ("Basic", ("ada", ADA_PASSWORD))
    standalone.get("/users", status=401)


@pytest.mark.parametrize(
    ("password", "confirm", "field", "message"),
    [("short", "short", "password", "at least 8"), ("sam-password-9", "sam-password-8", "confirm", "not the same")],
)
def test_a_bad_new_password_is_refused_and_the_old_one_stays(admin, app, standalone, password, confirm, field,
                                                             message):
    before = htpasswd_entries(app)["sam"]
    form = admin.get("/users").forms["password-sam"]
    form["password"], form["confirm"] = password, confirm
    response = form.submit(status=400)

    assert message in error_next_to(response, f"{field}-sam")
    assert response.html.find(id="user-sam").find("details").has_attr("open")
    assert htpasswd_entries(app)["sam"] == before
    standalone.authorization = ("Basic", ("sam", STAFF_PASSWORD))
    standalone.get("/users", status=403)  # identified (not 401), and still staff


def test_unknown_users_are_not_found(admin):
    admin.get("/users/nobody/disable", status=404)
    token = admin.get("/users").forms["add-user"]["csrf_token"].value
    admin.post("/users/nobody/role", {"csrf_token": token, "role": "admin"}, status=404)


def test_staff_cannot_manage_users(staff, app, db):
    token = csrf.make_token(app.secret, "sam")
    staff.get("/users", status=403)
    staff.get("/users/admin/disable", status=403)
    staff.post("/users", {"csrf_token": token, "name": "mole", "role": "admin", "password": "mole-password-1",
                          "confirm": "mole-password-1"}, status=403)
    staff.post("/users/admin/disable", {"csrf_token": token}, status=403)
    staff.post("/users/sam/role", {"csrf_token": token, "role": "admin"}, status=403)
    staff.post("/users/admin/password", {"csrf_token": token, "password": "taken-over-1",
                                         "confirm": "taken-over-1"}, status=403)
    assert account(db, "mole") is None
    assert account(db, "admin").active and account(db, "sam").role == "staff"
    assert Htpasswd.check_hash(ADMIN_PASSWORD, htpasswd_entries(app)["admin"])


def test_user_actions_need_the_csrf_token(admin, db):
    admin.post("/users/sam/disable", status=403)
    admin.post("/users/sam/role", {"role": "admin"}, status=403)
    assert account(db, "sam").active and account(db, "sam").role == "staff"


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli(config):
    runner = CliRunner()
    env = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
           "CORETRACK_CONFIG": None, "CORETRACK_SMTP_URL": None}

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input, env=env)

    return run


def test_the_cli_adds_lists_and_disables_users(cli, app, db, users):
    added = cli("user", "add", "carol", "--password-stdin", input="carol-password-1\n")
    assert added.exit_code == 0, added.output
    assert Htpasswd.check_hash("carol-password-1", htpasswd_entries(app)["carol"])
    assert account(db, "carol").role == "staff"

    listed = cli("user", "list")
    assert listed.exit_code == 0
    assert "carol\tstaff\tactive" in listed.output.splitlines()

    disabled = cli("user", "disable", "carol")
    assert disabled.exit_code == 0, disabled.output
    assert "carol\tstaff\tdisabled" in cli("user", "list").output.splitlines()
    assert not account(db, "carol").active
    assert "carol" in htpasswd_entries(app)
    webtest.TestApp(app, extra_environ={"REMOTE_USER": "carol"}).get("/settings", status=403)


def test_the_cli_refuses_bad_input_with_a_message(cli, app, users):
    short = cli("user", "add", "carol", "--password-stdin", input="short\n")
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    duplicate = cli("user", "add", "sam", "--password-stdin", input="sam-password-9\n")
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    last_admin = cli("user", "disable", "admin")
    assert last_admin.exit_code != 0 and "last active admin" in last_admin.output
    assert sorted(htpasswd_entries(app)) == ["admin", "sam"]
