"""Shared fixtures: a migrated database per test, the app, users, a real SMTP server."""

from __future__ import annotations

import shutil
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
import webtest
from aiosmtpd.controller import Controller

from coretrack.app import CoreTrack, create_standalone_app
from coretrack.auth import Htpasswd, UserService
from coretrack.config import Config
from coretrack.db import upgrade

ADMIN_PASSWORD = "admin-password-1"
STAFF_PASSWORD = "staff-password-1"
PUBLIC_URL = "http://track.example.test/crm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """One database migrated to head; each test gets a copy (migrating per test is slow)."""
    path = tmp_path_factory.mktemp("template") / "coretrack.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def config(tmp_path, migrated_sqlite) -> Config:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_sqlite, home / "coretrack.db")
    config = Config.from_env(
        {
            "CORETRACK_HOME": str(home),
            "CORETRACK_PUBLIC_URL": PUBLIC_URL,
        }
    )
    config.prepare_home()
    return config


@pytest.fixture
def app(config) -> CoreTrack:
    application = CoreTrack(config)
    yield application
    application.engine.dispose()


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
    application.engine.dispose()


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
def smtp_server():
    """A real SMTP server on loopback; yields (sink, port)."""
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield sink, controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(db, config, smtp_server):
    """Points the app's outgoing mail at the test SMTP server."""
    from coretrack.settings import SettingsService

    _, port = smtp_server
    SettingsService(db, config).update(
        {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
         "from_address": "crm@example.test", "from_name": "Example CRM"},
        user_name="test-setup",
    )
    return smtp_server
