"""Every address a page points at comes from the URL map: each href, src and form action on every page
is a route of the map for the method it is used with (or one of our static files), and carries the
prefix the application is mounted under (Apache's /crm) — so no page can hold a hand-built URL."""


from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
import webtest
from sqlalchemy import update
from werkzeug.exceptions import HTTPException

from coretrack.app import STATIC_DIR, URL_MAP
from coretrack.auth import Htpasswd, UserService
from coretrack.models import Account, Contact, Email, Lead, Recipient, utcnow
from coretrack.sending.compose import compose, prepare
from coretrack.settings import SettingsService

URL_ATTRIBUTES = ("href", "src", "action", "formaction")


@pytest.fixture
def busy_install(app, db, users):
    """What every_page's records alone do not show: lists longer than a page, sent emails with failed
    recipients, recipients linked to each kind of record, a disabled user."""
    settings = SettingsService(db, app.config)
    settings.update({"page_size": "5"}, user_name="test-setup")
    account = Account(name="Initech", email="office@initech.test")
    lead = Lead(last_name="Lumbergh", email="bill@initech.test")
    contacts = [Contact(last_name=f"Contact {n}", email=f"c{n}@example.test", account=account) for n in range(6)]
    db.add_all([account, lead, *contacts])
    db.commit()
    for n, contact in enumerate(contacts):
        prepared = prepare(db, subject=f"News {n}", html="<p>News</p>",
                           to=[f"contact:{contact.id}", f"account:{account.id}", f"lead:{lead.id}"])
        compose(db, app.config, users["sam"], prepared)
    now = utcnow()
    db.execute(update(Email).values(status="partial", sent_at=now))
    db.execute(update(Recipient).values(status="sent", sent_at=now))
    db.execute(update(Recipient).where(Recipient.lead_id.is_not(None)).values(status="failed", reply="550 unknown"))
    db.commit()
    UserService(db, Htpasswd(app.config.htpasswd_path)).set_active("sam", False, by="admin")
    db.commit()
    return [
        "/emails?page=2", "/emails?status=queued&page=2", "/emails/new?find=initech",
        f"/emails/new?contact={contacts[0].id}", f"/accounts/{account.id}", "/contacts?q=contact&page=2",
        "/reports/recipients?sort=address&order=asc&page=2", "/reports/records?record_type=contact",
        "/reports/emails?sender=sam", "/reports/activity?by=hour", "/emails/999999", "/no/such/page",
    ]


def addresses(response) -> list[tuple[str, str, str | None]]:
    """(method, where, URL) of each address in a response: its redirect, its tags' links and forms
    (None: a form without an action, which posts to wherever the page happens to be)."""
    found = []
    if "Location" in response.headers:
        found.append(("GET", "Location", response.headers["Location"]))
    if response.content_type == "text/html":
        for tag in response.html.find_all(True):
            if tag.name == "form" and not tag.has_attr("action"):
                found.append(("POST", "form action", None))
            method = tag.get("method", "get").upper() if tag.name == "form" else "GET"
            found += [(method, f"{tag.name} {name}", tag[name]) for name in URL_ATTRIBUTES if tag.has_attr(name)]
    return found


def problem(method: str, address: str | None, prefix: str) -> str:
    """Why the address is not a route of the map under prefix; "" when it is."""
    if address is None:
        return "missing"
    url = urlsplit(address)
    if url.scheme or url.netloc or not url.path.startswith(prefix + "/"):
        return f"does not start with {prefix}/"
    path = unquote(url.path.removeprefix(prefix))
    if path.startswith("/static/"):
        return "" if (STATIC_DIR / path.removeprefix("/static/")).is_file() else "no such static file"
    try:
        URL_MAP.bind("localhost").match(path, method=method)
    except HTTPException as error:
        return f"no {method} route ({error.code})"
    return ""


def wrong_addresses(response, prefix: str) -> list[str]:
    return [f"{response.request.path_qs}: {where}={address!r} {why}"
            for method, where, address in addresses(response)
            if not (address or "").startswith("#")  # a place on the same page
            and (why := problem(method, address, prefix))]


@pytest.mark.parametrize("prefix", ["", "/crm"])
def test_every_address_on_every_page_is_a_route_of_the_map_under_the_prefix(app, every_page, busy_install, prefix):
    browser = webtest.TestApp(app, extra_environ={"REMOTE_USER": "admin", "SCRIPT_NAME": prefix})
    wrong, pages = [], 0
    for path in [*every_page, *busy_install]:
        response = browser.get(prefix + path, status="*")
        assert response.status_int < 500, (path, response.text[:500])
        pages += response.content_type == "text/html"
        wrong += wrong_addresses(response, prefix)
    assert pages > 20
    assert not wrong, "\n".join(wrong)


def test_a_form_posts_where_its_action_says_and_lands_under_the_prefix(app, users):
    browser = webtest.TestApp(app, extra_environ={"REMOTE_USER": "admin", "SCRIPT_NAME": "/crm"})
    form = browser.get("/crm/contacts/new").forms["record-form"]
    form["first_name"], form["last_name"] = "Ada", "Lovelace"
    created = form.submit(status=303)
    assert urlsplit(created.headers["Location"]).path.startswith("/crm/contacts/")
    assert wrong_addresses(created, "/crm") == []
    assert wrong_addresses(created.follow(), "/crm") == []
