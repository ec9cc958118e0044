"""Identity: who a request is comes only from REMOTE_USER (Apache) or the standalone Basic-auth middleware."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import uuid

import pytest
import webtest
from support.constants import ADMIN_PASSWORD, STAFF_PASSWORD
from werkzeug.routing.converters import AnyConverter, FloatConverter, NumberConverter, UUIDConverter

from coretrack.app import HANDLERS
from coretrack.auth import Htpasswd, UserError, UserService
from coretrack.tracking.image import GIF
from coretrack.views.public import TRACK_ACCESS_PATH


def example_value(converter):
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    if isinstance(converter, FloatConverter):
        return 1.5
    if isinstance(converter, NumberConverter):
        return 1
    if isinstance(converter, UUIDConverter):
        return uuid.UUID(int=1)
    return "x1"


def private_urls(app) -> list[tuple[object, str]]:
    """(rule, url) for every non-public rule of the URL map, filled in with example values."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.build_only and not getattr(HANDLERS[rule.endpoint], "public", False):
            _, url = rule.build({name: example_value(c) for name, c in rule._converters.items()})
            urls.append((rule, url))
    return urls


def test_every_private_route_of_the_bare_app_challenges_a_request_without_identity(anon, app):
    urls = private_urls(app)
    assert {"/settings", "/users", "/users/x1/disable"} <= {url for _, url in urls}
    for _, url in urls:
        # Both methods, whatever the rule allows: a wrong method must not reveal that the route exists.
        for method in ("GET", "POST"):
            response = anon.request(url, method=method, expect_errors=True)
            assert response.status_int == 401, (method, url, response.status)
            assert response.headers["WWW-Authenticate"].lower().startswith("basic"), (method, url)


def test_unknown_paths_are_challenged_too(anon):
    response = anon.get("/no/such/page", status=401)
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")


def test_the_tracking_image_needs_no_identity(anon):
    assert anon.get(TRACK_ACCESS_PATH, status=200).body == GIF


def test_a_name_apache_accepted_but_unknown_to_the_database_is_forbidden(app, users):
    stranger = webtest.TestApp(app, extra_environ={"REMOTE_USER": "mallory"})
    for url in ("/settings", "/users"):
        response = stranger.get(url, status=403)
        assert "no coretrack account" in response.text
    stranger.post("/users", {"name": "mallory2"}, status=403)


def test_a_disabled_user_is_forbidden_even_with_the_admin_role(app, db, users):
    service = UserService(db, app.htpasswd)
    service.add("ada", "ada-password-1", role="admin")
    ada = webtest.TestApp(app, extra_environ={"REMOTE_USER": "ada"})
    ada.get("/settings", status=200)
    service.set_active("ada", False)
    response = ada.get("/settings", status=403)
    assert "disabled" in response.text


def test_a_client_cannot_claim_an_identity_through_headers_or_the_query(anon, users):
    anon.get("/settings", headers={"Remote-User": "admin"}, status=401)
    anon.get("/settings", headers={"X-Remote-User": "admin"}, status=401)
    anon.get("/settings?REMOTE_USER=admin", status=401)


# -- standalone mode: the Basic-auth middleware in front of the same app ------------------------


def test_standalone_without_credentials_is_challenged(standalone):
    response = standalone.get("/settings", status=401)
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")


@pytest.mark.parametrize(
    ("name", "password"),
    [("admin", "wrong-password"), ("admin", ""), ("nobody", ADMIN_PASSWORD), ("", "")],
)
def test_standalone_refuses_bad_credentials(standalone, name, password):
    standalone.authorization = ("Basic", (name, password))
    standalone.get("/settings", status=401)


def test_standalone_accepts_the_htpasswd_password(standalone):
    standalone.authorization = ("Basic", ("admin", ADMIN_PASSWORD))
    assert standalone.get("/settings", status=200).html.find(class_="whoami").get_text(" ", strip=True) == \
        "admin (admin; times in UTC)"
    # Authenticated, then authorised by role: staff is identified, and forbidden here.
    standalone.authorization = ("Basic", ("sam", STAFF_PASSWORD))
    standalone.get("/settings", status=403)


def test_standalone_ignores_identity_smuggled_by_the_client(standalone):
    standalone.get("/settings", headers={"Remote-User": "admin"}, status=401)
    standalone.get("/settings?REMOTE_USER=admin", status=401)
    standalone.get("/settings", extra_environ={"REMOTE_USER": "admin"}, status=401)
    # Wrong password plus a claimed name: still nobody.
    standalone.authorization = ("Basic", ("sam", "wrong-password"))
    standalone.get("/settings", extra_environ={"REMOTE_USER": "admin"}, status=401)


def test_standalone_serves_the_public_image_without_credentials(standalone):
    assert standalone.get(TRACK_ACCESS_PATH, status=200).body == GIF


def test_a_malformed_authorization_header_is_just_no_identity(standalone):
    for header in ("Basic", "Basic !!!not-base64!!!", "Basic YWRtaW4=", "Bearer abc"):
        standalone.get("/settings", headers={"Authorization": header}, status=401)


# -- the htpasswd file ---------------------------------------------------------------------------


def test_passwords_are_hashed_with_bcrypt_as_2y_and_verify():
    hashed = Htpasswd.hash_password("correct horse")
    assert hashed.startswith("$2y$10$")
    assert Htpasswd.check_hash("correct horse", hashed)
    assert not Htpasswd.check_hash("wrong horse", hashed)


@pytest.mark.parametrize("hashed", ["{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "$apr1$abc$def", "plaintext", ""])
def test_only_bcrypt_entries_are_accepted(hashed):
    assert not Htpasswd.check_hash("test", hashed)


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="Apache's htpasswd tool is not installed")
def test_apache_htpasswd_and_coretrack_read_each_others_hashes(tmp_path):
    ours = Htpasswd(tmp_path / "htpasswd")
    ours.set_password("ann", "ann-password-1")
    verify = subprocess.run(["htpasswd", "-vb", str(ours.path), "ann", "ann-password-1"], capture_output=True)
    assert verify.returncode == 0, verify.stderr
    line = subprocess.run(["htpasswd", "-nbB", "bob", "bob-password-1"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert Htpasswd.check_hash("bob-password-1", line.partition(":")[2])


def test_the_htpasswd_file_is_replaced_atomically_and_keeps_its_mode(tmp_path):
    htpasswd = Htpasswd(tmp_path / "htpasswd")
    htpasswd.set_password("ann", "ann-password-1")
    os.chmod(htpasswd.path, 0o604)
    before = htpasswd.path.stat()

    htpasswd.set_password("bob", "bob-password-1")

    after = htpasswd.path.stat()
    assert stat.S_IMODE(after.st_mode) == 0o604
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # a new file renamed over the old one, never rewritten in place
    assert sorted(htpasswd.entries()) == ["ann", "bob"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["htpasswd", "htpasswd.lock"]  # no temp files left


def test_a_new_htpasswd_file_is_not_world_readable(tmp_path):
    htpasswd = Htpasswd(tmp_path / "htpasswd")
    htpasswd.set_password("ann", "ann-password-1")
    assert stat.S_IMODE(htpasswd.path.stat().st_mode) == 0o640


def test_concurrent_writers_lose_no_entry(tmp_path):
    path = tmp_path / "htpasswd"
    threads = [threading.Thread(target=Htpasswd(path).set_password, args=(f"user{n}", "password-123"))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(Htpasswd(path).entries()) == sorted(f"user{n}" for n in range(8))


def test_a_rewrite_is_seen_by_another_reader_at_once(tmp_path):
    reader, writer = Htpasswd(tmp_path / "htpasswd"), Htpasswd(tmp_path / "htpasswd")
    writer.set_password("ann", "first-password")
    first = reader.entries()["ann"]
    writer.set_password("ann", "second-password")  # same size, possibly the same mtime tick
    assert reader.entries()["ann"] != first
    assert Htpasswd.check_hash("second-password", reader.entries()["ann"])


@pytest.mark.parametrize(
    ("name", "password", "field"),
    [
        ("eve\n", "eve-password-1", "name"),  # a newline would add a line to the htpasswd file
        ("eve:x", "eve-password-1", "name"),
        ("", "eve-password-1", "name"),
        ("eve", "short", "password"),
        ("eve", "x" * 73, "password"),  # bcrypt reads 72 bytes: the rest would be ignored
        ("eve", "line one\nline two", "password"),
    ],
)
def test_user_names_and_passwords_that_cannot_be_stored_safely_are_refused(app, db, name, password, field):
    before = app.htpasswd.path.read_bytes()
    with pytest.raises(UserError) as refused:
        UserService(db, app.htpasswd).add(name, password)
    assert refused.value.field == field
    assert app.htpasswd.path.read_bytes() == before


def test_non_ascii_csrf_tokens_and_notice_signatures_are_refused_not_errors(staff, db):
    from coretrack.models import Contact

    staff.post("/contacts/new", {"csrf_token": "1.\u00e9\u00e9", "first_name": "A", "last_name": "B"}, status=403)
    assert db.query(Contact).count() == 0
    page = staff.get("/emails", {"notice": "<b>forged</b>", "ns": "\u0080"}, status=200)
    assert "forged" not in page.text
