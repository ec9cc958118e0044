"""Sending over TLS with a login to a real SMTP server: STARTTLS and implicit TLS, the server's
certificate verified, the password never shown."""


from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from support.ports import free_port
from support.smtp_sink import SmtpSink

from coretrack.settings import SettingsService

USER, PASSWORD = "crm-bot", "s3cret-smtp-pw"
# aiosmtpd's warning for implicit TLS, where its auth_require_tls (STARTTLS only) must be off.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@dataclass
class LoginSink(SmtpSink):
    """Accepts only USER/PASSWORD, and remembers whether each message came over TLS."""

    logins: list[str] = field(default_factory=list)
    over_tls: list[bool] = field(default_factory=list)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                USER.encode(), PASSWORD.encode()):
            self.logins.append(USER)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope):
        # STARTTLS marks the session; implicit TLS shows on the transport.
        self.over_tls.append(session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=["starttls", "tls"])
def tls_server(request, certificates):
    """A real SMTP server that requires TLS (STARTTLS or implicit) and a login: (sink, port, security)."""
    _, cert, key = certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = LoginSink()
    if request.param == "starttls":
        tls = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    else:
        # Implicit TLS: encrypted from the first byte (aiosmtpd's auth_require_tls knows only STARTTLS).
        tls = {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), authenticator=sink.authenticate,
                            auth_required=True, **tls)
    controller.start()
    try:
        yield sink, controller.port, request.param
    finally:
        controller.stop()


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ["ann@example.test"], "subject": "Over TLS", "html": "<p>Hi</p>"}


def use_server(app, db, tls_server, password: str) -> None:
    """The app's outgoing mail goes to ``tls_server``, logging in with ``password``."""
    _, port, security = tls_server
    settings = SettingsService(db, app.config)
    settings.update({"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": security,
                     "smtp_username": USER, "smtp_password": password, "from_address": "crm@example.test"},
                    user_name="test-setup")


def test_mail_goes_out_over_verified_tls_with_a_login(app, db, users, tls_server, certificates, monkeypatch, send):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))  # the install trusts our test CA
    sink, _, _ = tls_server
    use_server(app, db, tls_server, PASSWORD)
    recipient = send().email.recipients[0]
    assert recipient.status == "sent", recipient.reply
    assert sink.logins == [USER]
    assert sink.over_tls == [True]
    assert [mail.rcpt_tos for mail in sink.received] == [["ann@example.test"]]


def test_a_wrong_password_fails_the_recipient_with_the_servers_reply_and_never_shows_the_password(
        app, db, users, tls_server, certificates, monkeypatch, caplog, send):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))
    caplog.set_level(logging.DEBUG)
    use_server(app, db, tls_server, "not-the-password")
    recipient = send().email.recipients[0]
    assert recipient.status == "failed"
    assert "535" in recipient.reply
    assert "not-the-password" not in recipient.reply + caplog.text
    assert tls_server[0].received == []


def test_a_certificate_the_install_does_not_trust_is_refused(app, db, users, tls_server, tmp_path, monkeypatch, send):
    empty_bundle = tmp_path / "no-ca.pem"
    empty_bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty_bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    use_server(app, db, tls_server, PASSWORD)
    recipient = send().email.recipients[0]
    assert recipient.status == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in recipient.reply or "certificate verify failed" in recipient.reply
    assert tls_server[0].received == [] and tls_server[0].logins == []
