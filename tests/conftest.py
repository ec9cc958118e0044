"""Shared fixtures: a migrated database per test (SQLite and PostgreSQL), the app, users, a real SMTP server.

Every test that uses ``config`` runs twice: on SQLite and on the PostgreSQL server that
scripts/test starts (``CORETRACK_TEST_POSTGRES_URL``; without it the PostgreSQL runs are skipped).
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import webtest
from aiosmtpd.controller import Controller
from apache_server import free_port  # noqa: F401  (tests import it from here)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from coretrack.app import URL_MAP, CoreTrack, create_standalone_app
from coretrack.auth import Htpasswd, UserService
from coretrack.config import Config
from coretrack.db import make_engine
from coretrack.models import Account, Contact, Lead
from coretrack.people.consent import CONSENT_PATH, WITHDRAWAL_PATH
from coretrack.people.unsubscribe import UNSUBSCRIBE_PATH
from coretrack.schema import upgrade
from coretrack.sending import drafts, templates
from coretrack.sending.compose import compose, prepare
from coretrack.settings import SettingsService
from coretrack.tracking.clicks import CLICK_PATH
from coretrack.views.public import TRACK_ACCESS_PATH

ADMIN_PASSWORD = "admin-password-1"
STAFF_PASSWORD = "staff-password-1"
PUBLIC_URL = "http://track.example.test/crm"
POSTGRES_URL = os.environ.get("CORETRACK_TEST_POSTGRES_URL", "")
needs_postgresql = pytest.mark.skipif(
    not POSTGRES_URL, reason="no PostgreSQL: scripts/test starts one (or set CORETRACK_TEST_POSTGRES_URL)"
)
DATABASES = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=needs_postgresql)]



@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """One database migrated to head; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "coretrack.db"
    upgrade(f"sqlite:///{path}")
    return path


@dataclass
class PostgresTestDatabase:
    """The PostgreSQL test database, migrated once; emptied before each test (measured: TRUNCATE
    ~30 ms, a database copied from a template ~100 ms)."""

    url: str

    def __post_init__(self):
        upgrade(self.url)
        self.engine = make_engine(self.url)
        with self.engine.connect() as connection:
            tables = connection.scalars(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )).all()
        self._truncate = text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    def empty(self) -> None:
        with self.engine.begin() as connection:
            # A connection a test left inside a transaction would block TRUNCATE: end them all
            # (ours only: autovacuum workers run as the superuser and must be left alone).  A backend
            # may end between the listing and the signal and its pid go to another role's process:
            # that one is not ours to stop, and is skipped.
            connection.execute(text(
                "DO $$ DECLARE backend int; BEGIN "
                "FOR backend IN SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND usename = current_user AND backend_type = 'client backend' LOOP "
                "BEGIN PERFORM pg_terminate_backend(backend); "
                "EXCEPTION WHEN insufficient_privilege THEN NULL; END; "
                "END LOOP; END $$"
            ))
            connection.execute(self._truncate)


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


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class SmtpSink:
    """Handler for aiosmtpd: keeps every message; can refuse chosen recipients."""

    received: list[ReceivedMail] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


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


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A private CA and a certificate it signed for 127.0.0.1 and localhost: (ca, cert, key) paths."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("coretrack test CA")).issuer_name(_name("coretrack test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


class PostgresServer:
    """The PostgreSQL server scripts/test started, for tests that need their own database or must
    stop the server (outages).  Stopping needs its data directory (CORETRACK_TEST_POSTGRES_DATA)."""

    url = POSTGRES_URL
    data = os.environ.get("CORETRACK_TEST_POSTGRES_DATA", "")
    bin = os.environ.get("CORETRACK_TEST_POSTGRES_BIN", "")

    @classmethod
    @contextmanager
    def new_database(cls):
        """A fresh, empty database on the server; yields its URL, drops it afterwards."""
        name = f"coretrack_{uuid.uuid4().hex[:12]}"
        admin = make_engine(cls.url).execution_options(isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {name}"))
            yield cls.url.rsplit("/", 1)[0] + "/" + name
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        finally:
            admin.dispose()

    @classmethod
    def pg_ctl(cls, *arguments: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", f"{cls.bin}/pg_ctl", "-D", cls.data, *arguments],
                       check=True, capture_output=True, timeout=60)

    @classmethod
    def stop(cls) -> None:
        cls.pg_ctl("-m", "fast", "-w", "stop")

    @classmethod
    def start(cls) -> None:
        cls.pg_ctl("-l", str(Path(cls.data).parent / "server.log"), "-w", "start")


can_stop_postgresql = pytest.mark.skipif(
    not (POSTGRES_URL and PostgresServer.data), reason="needs the PostgreSQL server that scripts/test starts"
)


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
               "accounts": Account(name="Acme"), "leads": Lead(last_name="Hopper")}
    db.add_all(records.values())
    db.commit()
    prepared = prepare(db, to=["ada@example.test"], subject="Hi", html="<p>Hi <b>there</b></p>",
                       attachments=[("notes.txt", "text/plain", b"notes")])
    email = compose(db, app.config, users["sam"], prepared).email
    template = templates.save(db, app.config, users["sam"], {"name": "Welcome", "subject": "Hi",
                                                             "html": "<p>Hi $contacts-firstname$</p>"})
    own_draft = drafts.save(db, users["sam"], {"to": "ada@example.test", "subject": "Unfinished"})
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
                           "template_id": template.id, "draft_id": own_draft.id})
            if "record_id" in rule.arguments:
                values["record_id"] = records[section].id
            path = URL_MAP.bind("localhost").build(rule.endpoint, {k: v for k, v in values.items()
                                                                   if k in rule.arguments})
            if rule.rule in (UNSUBSCRIBE_PATH, CONSENT_PATH, WITHDRAWAL_PATH):
                path += f"?t={email.recipients[0].token}"  # a page of its own only with a recipient's token
            routes += [(method, path) for method in sorted(rule.methods & {"GET", "POST"})]
    return routes


@pytest.fixture
def every_page(every_route):
    """Every GET route of the URL map, its arguments filled with records that exist."""
    return [path for method, path in every_route if method == "GET"]


def assert_no_script(response) -> None:
    """No script on an HTML page but our own files: no inline <script>, no on* handler attribute."""
    if response.content_type != "text/html":
        return
    for script in response.html.find_all("script"):
        assert script.get("src"), (response.request.path, str(script)[:200])
    for tag in response.html.find_all(True):
        handlers = [name for name in tag.attrs if name.lower().startswith("on")]
        assert not handlers, (response.request.path, str(tag)[:200])
