"""Shared fixtures, and only fixtures: a migrated database per test (SQLite and PostgreSQL), the app,
users, a real SMTP server.  What they are built on, and what tests import, lives in tests/support/.

Every test that uses ``config`` runs twice: on SQLite and on the PostgreSQL server that
scripts/test starts (``CORETRACK_TEST_POSTGRES_URL``; without it the PostgreSQL runs are skipped).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import webtest
from aiosmtpd.controller import Controller
from support.constants import ADMIN_PASSWORD, PUBLIC_URL, STAFF_PASSWORD
from support.dns import DnsServer
from support.mariadb import INSTALL, SERVER, running_mariadb
from support.ports import free_port
from support.postgres import DATABASES, POSTGRES_URL, PostgresServer, PostgresTestDatabase
from support.sending import Sender
from support.smtp_sink import SmtpSink
from support.tls import write_certificates

from coretrack.app import URL_MAP, CoreTrack, create_standalone_app
from coretrack.auth import Htpasswd, UserService
from coretrack.config import Config
from coretrack.models import Account, Address, Contact, Email, Lead, WebhookDelivery, WebhookEvent, utcnow
from coretrack.people.consent import CONSENT_PATH, WITHDRAWAL_PATH
from coretrack.people.unsubscribe import UNSUBSCRIBE_PATH
from coretrack.records import segments
from coretrack.schema import upgrade
from coretrack.sending import drafts, templates
from coretrack.sending.compose import compose, prepare
from coretrack.settings import SettingsService
from coretrack.tracking.clicks import CLICK_PATH
from coretrack.views.public import TRACK_ACCESS_PATH
from coretrack.webhooks import endpoints as webhook_endpoints
from coretrack.webhooks.events import DELIVERED


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """One database migrated to head; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "coretrack.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_test_database():
    database = PostgresTestDatabase(POSTGRES_URL)
    yield database
    database.engine.dispose()


@pytest.fixture(params=DATABASES)
def database(request) -> str:
    """The database kind of this run of the test: "sqlite" or "postgresql"."""
    return request.param


@pytest.fixture
def config(tmp_path, database, request, monkeypatch) -> Config:
    home = tmp_path / "home"
    home.mkdir()
    environ = {"CORETRACK_HOME": str(home), "CORETRACK_PUBLIC_URL": PUBLIC_URL}
    if database == "postgresql":
        postgres = request.getfixturevalue("postgres_test_database")
        postgres.empty()
        environ["CORETRACK_DATABASE_URL"] = postgres.url
        # Also for what the test reads from the environment (the CLI), as on an install using PostgreSQL.
        monkeypatch.setenv("CORETRACK_DATABASE_URL", postgres.url)
    else:
        shutil.copy(request.getfixturevalue("migrated_sqlite"), home / "coretrack.db")
    config = Config.from_env(environ)
    config.prepare_home()
    return config


@pytest.fixture
def app(config) -> CoreTrack:
    application = CoreTrack(config)
    yield application
    application.close()


@pytest.fixture
def db(app):
    with app.Session() as session:
        yield session


@pytest.fixture
def users(app, db):
    service = UserService(db, Htpasswd(app.config.htpasswd_path))
    return {
        "admin": service.add("admin", ADMIN_PASSWORD, role="admin"),
        "sam": service.add("sam", STAFF_PASSWORD, role="staff"),
    }


@pytest.fixture
def anon(app) -> webtest.TestApp:
    return webtest.TestApp(app)


@pytest.fixture
def admin(app, users) -> webtest.TestApp:
    """The app as Apache would call it for user 'admin' (REMOTE_USER set)."""
    return webtest.TestApp(app, extra_environ={"REMOTE_USER": "admin"})


@pytest.fixture
def staff(app, users) -> webtest.TestApp:
    return webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam"})


@pytest.fixture
def standalone(config, users) -> webtest.TestApp:
    """The app behind the standalone Basic-auth middleware, as 'coretrack serve' runs it."""
    wsgi, application = create_standalone_app(config)
    yield webtest.TestApp(wsgi)
    application.close()


@pytest.fixture
def email_fields() -> dict:
    """The email ``send`` sends where a test names no field of its own (a test file may override it
    with the message its tests are about)."""
    return {"to": ["ann@example.test"], "subject": "Hello", "html": "<p>Hi</p>"}


@pytest.fixture
def send(app, db, users, email_fields) -> Sender:
    """Sends as 'sam' through the product's prepare, compose and deliver: ``send(to=[...], ...)``
    delivers at once, ``send.compose(...)`` only saves the email (queued); both return the
    ComposeResult, with ``db`` seeing what was delivered."""
    return Sender(app, db, users["sam"], email_fields)


@pytest.fixture
def smtp_sink():
    """The handler of smtp_server (a test file may override it with one that misbehaves)."""
    return SmtpSink()


@pytest.fixture
def smtp_server(smtp_sink):
    """A real SMTP server on loopback; yields (sink, port)."""
    sink = smtp_sink
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(db, config, smtp_server):
    """Points the app's outgoing mail at the test SMTP server."""
    _, port = smtp_server
    SettingsService(db, config).update(
        {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
         "from_address": "crm@example.test", "from_name": "Example CRM"},
        user_name="test-setup",
    )
    return smtp_server


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A private CA and a certificate it signed for 127.0.0.1 and localhost: (ca, cert, key) paths."""
    return write_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def root():
    """(scripts/run, Apache) A folder Apache's workers (www-data) can enter, for a data directory."""
    path = Path(tempfile.mkdtemp(prefix="coretrack-run-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=DATABASES)
def empty_database_url(request):
    """None for SQLite (the data directory's default) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with PostgresServer.new_database() as url:
        yield url


@pytest.fixture
def every_route(app, db, users):
    """Every route of the URL map as (method, path), its arguments filled with records that exist."""
    records = {"contacts": Contact(last_name="Lovelace", email="ada@example.test"),
               "accounts": Account(name="Acme", email="billing@acme.example"),
               "leads": Lead(last_name="Hopper", email="grace@example.test")}
    db.add_all(records.values())
    db.commit()
    prepared = prepare(db, to=["ada@example.test"], subject="Hi", html="<p>Hi <b>there</b></p>",
                       attachments=[("notes.txt", "text/plain", b"notes")])
    email = compose(db, app.config, users["sam"], prepared).email
    template = templates.save(db, app.config, users["sam"], {"name": "Welcome", "subject": "Hi",
                                                             "html": "<p>Hi $contacts-firstname$</p>"})
    own_draft = drafts.save(db, users["sam"], {"to": "ada@example.test", "subject": "Unfinished"})
    segment = segments.save(db, users["sam"], None, "contact", "Lovelaces",
                            [{"field": "last_name", "op": "is", "value": "Lovelace"}], shared=True)
    address = Address(address="kept@example.test")  # the suppression list's page of one address
    db.add(address)
    endpoint = webhook_endpoints.create(db, app.secret, "https://hooks.example.test/in", [DELIVERED], "admin")
    event = WebhookEvent(event_id="evt_1", type=DELIVERED, at=email.created_at, data="{}", fanned_out=True)
    db.add(event)
    db.flush()
    delivery = WebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, status="dead", attempts=1)
    db.add(delivery)
    # Compare takes two to four sent emails (fewer is a 400): two of them for its routes.
    compared = [Email(subject=f"Compared {number}", html_body="<p>x</p>", sender=users["sam"],
                      from_address="crm@example.test", status="sent", sent_at=utcnow()) for number in (1, 2)]
    db.add_all(compared)
    db.commit()
    singular = {"contacts": "contact", "accounts": "account", "leads": "lead"}
    routes = []
    for rule in URL_MAP.iter_rules():
        # The image and the click redirect are no pages (a click needs a stored link: tests/test_clicks.py).
        if rule.rule in (TRACK_ACCESS_PATH, CLICK_PATH) or rule.build_only:
            continue
        choices = {name: sorted(getattr(converter, "items", ())) for name, converter in rule._converters.items()}
        names = [name for name, items in choices.items() if items]
        for combination in itertools.product(*(choices[name] for name in names)):
            values = dict(zip(names, combination, strict=True))
            section = values.get("section") or {v: k for k, v in singular.items()}.get(values.get("record_type"))
            values.update({"email_id": email.id, "attachment_id": email.attachments[0].id, "name": "sam",
                           "template_id": template.id, "draft_id": own_draft.id, "endpoint_id": endpoint.id,
                           "delivery_id": delivery.id, "recipient_id": email.recipients[0].id,
                           "segment_id": segment.id, "address_id": address.id})
            if "record_id" in rule.arguments:
                values["record_id"] = records[section].id
            path = URL_MAP.bind("localhost").build(rule.endpoint, {k: v for k, v in values.items()
                                                                   if k in rule.arguments})
            if rule.rule in (UNSUBSCRIBE_PATH, CONSENT_PATH, WITHDRAWAL_PATH):
                path += f"?t={email.recipients[0].token}"  # a page of its own only with a recipient's token
            elif rule.endpoint.endswith("_compare"):
                path += "?" + "&".join(f"email={chosen.id}" for chosen in compared)
            elif rule.rule == "/api/consent":
                path += "?address=ada@example.test"  # an address's consent: its GET needs one
            routes += [(method, path) for method in sorted(rule.methods & {"GET", "POST"})]
    return routes


@pytest.fixture
def every_page(every_route):
    """Every GET route of the URL map, its arguments filled with records that exist."""
    return [path for method, path in every_route if method == "GET"]


@pytest.fixture
def dns_server():
    """A real DNS server (dnsmasq, which scripts/test installs) on a free loopback port, serving only the
    records the test gives it; stopped and removed after the test."""
    server = DnsServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A private MariaDB server (Debian's mariadb-server, which scripts/test installs) on a free loopback
    port with its own data directory; stopped and removed after the session."""
    if not (SERVER and INSTALL):
        pytest.skip("no mariadb-server: scripts/test installs it")
    with running_mariadb(tmp_path_factory.mktemp("mariadb")) as database:
        yield database
