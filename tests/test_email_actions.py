"""Who may act on an email once it is composed: cancel it, retry its failed recipients, delete it —
from its page and from the API, and which buttons its page offers.  One rule for all of them: an
admin, or the staff member who sent it; a colleague is refused (403), changes nothing and sees no
button."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import webtest
from sqlalchemy import func, select

from coretrack import csrf
from coretrack.auth import Htpasswd, UserService
from coretrack.models import Email, Recipient
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver

FAILING = "gone@example.test"


@pytest.fixture
def clients(app, db, users):
    """sam sent the emails; kim is another staff member; admin is an administrator."""
    UserService(db, Htpasswd(app.config.htpasswd_path)).add("kim", "kim-password-1", role="staff")
    return {name: webtest.TestApp(app, extra_environ={"REMOTE_USER": name}) for name in ("sam", "kim", "admin")}


def queued(app, db, users) -> int:
    """An email of sam's still waiting for the worker: something to cancel."""
    prepared = prepare(db, to=["ann@example.test", "bob@example.test"], subject="Queued", html="<p>Hi</p>")
    return compose(db, app.config, users["sam"], prepared).email.id


def failed(app, db, users, sink) -> int:
    """An email of sam's whose one recipient failed: something to retry, or to delete."""
    sink.refuse[FAILING] = "550 5.1.1 No such user"
    prepared = prepare(db, to=[FAILING], subject="Failed", html="<p>Hi</p>")
    email_id = compose(db, app.config, users["sam"], prepared).email.id
    deliver(app.Session, app.config, email_id)
    del sink.refuse[FAILING]  # a retry now goes through
    return email_id


def statuses(db, email_id: int) -> dict[str, int]:
    db.expire_all()
    rows = db.execute(select(Recipient.status, func.count()).where(Recipient.email_id == email_id)
                      .group_by(Recipient.status))
    return dict(rows.all())


def form_post(action: str) -> Callable[..., webtest.TestResponse]:
    def post(client, app, user: str, email_id: int, status: int) -> webtest.TestResponse:
        fields = {"csrf_token": csrf.make_token(app.secret, user), "confirm": "yes"}
        return client.post(f"/emails/{email_id}/{action}", fields, status=status)
    return post


def api_cancel(client, app, user, email_id, status):
    return client.post_json(f"/api/emails/{email_id}/cancel", {}, status=status)


def api_delete(client, app, user, email_id, status):
    return client.delete(f"/api/emails/{email_id}", headers={"Content-Type": "application/json"}, status=status)


@dataclass
class Action:
    request: Callable[..., webtest.TestResponse]
    email: str  # "queued" or "failed": the state the action applies to
    allowed: int  # the status of a permitted request
    before: dict[str, int] | None  # the recipients' statuses when nothing was done (None: email deleted)
    after: dict[str, int] | None


ACTIONS = {
    "cancel (form)": Action(form_post("cancel"), "queued", 303, {"pending": 2}, {"cancelled": 2}),
    "cancel (API)": Action(api_cancel, "queued", 200, {"pending": 2}, {"cancelled": 2}),
    "retry (form)": Action(form_post("retry"), "failed", 303, {"failed": 1}, {"sent": 1}),
    "delete (form)": Action(form_post("delete"), "failed", 303, {"failed": 1}, None),
    "delete (API)": Action(api_delete, "failed", 200, {"failed": 1}, None),
}


def outcome(db, email_id: int) -> dict[str, int] | None:
    db.expire_all()
    return statuses(db, email_id) if db.get(Email, email_id) else None


@pytest.mark.parametrize("name", ACTIONS)
def test_a_colleague_is_refused_and_nothing_changes(app, db, users, smtp_settings, clients, name):
    action = ACTIONS[name]
    email_id = queued(app, db, users) if action.email == "queued" else failed(app, db, users, smtp_settings[0])

    refused = action.request(clients["kim"], app, "kim", email_id, 403)
    assert "sender may cancel, retry or delete it" in refused.text
    assert outcome(db, email_id) == action.before


@pytest.mark.parametrize("user", ["sam", "admin"])
@pytest.mark.parametrize("name", ACTIONS)
def test_the_sender_and_an_admin_may(app, db, users, smtp_settings, clients, name, user):
    action = ACTIONS[name]
    email_id = queued(app, db, users) if action.email == "queued" else failed(app, db, users, smtp_settings[0])

    action.request(clients[user], app, user, email_id, action.allowed)
    assert outcome(db, email_id) == action.after


@pytest.mark.parametrize(("user", "shown"), [("kim", False), ("sam", True), ("admin", True)])
def test_the_buttons_show_only_to_who_may_act(app, db, users, smtp_settings, clients, user, shown):
    client = clients[user]
    to_cancel = queued(app, db, users)
    page = client.get(f"/emails/{to_cancel}")
    assert ("Cancel sending…" in page.text) is shown
    assert ("cancel" in client.get(f"/emails/{to_cancel}?confirm=cancel").forms) is shown

    page = client.get(f"/emails/{failed(app, db, users, smtp_settings[0])}")
    assert {"retry", "delete"} & set(page.forms) == ({"retry", "delete"} if shown else set())
