"""The stored SMTP password is sent only to the server it was typed for: two real SMTP servers that
require a login, and an admin who points coretrack from one to the other without typing a password."""


from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from support.ports import free_port
from support.smtp_sink import SmtpSink

USER, PASSWORD = "crm-bot", "first-servers-pw"
# Plain connections on loopback: the point is where the password goes, not how it is protected.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@dataclass
class RecordingLoginSink(SmtpSink):
    """Requires a login; keeps every password anyone tried, and accepts only ``password``."""

    password: str = ""
    tried: list[str] = field(default_factory=list)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.tried.append(auth_data.password.decode("utf-8", "replace"))
        return AuthResult(success=auth_data.login == USER.encode() and auth_data.password == self.password.encode(),
                          handled=False)


@pytest.fixture
def two_servers():
    """Server A on 127.0.0.1, server B on another loopback address, same port: (sink, host) each."""
    port = free_port()
    servers, controllers = [], []
    for host, password in (("127.0.0.1", PASSWORD), ("127.0.0.2", "second-servers-pw")):
        sink = RecordingLoginSink(password=password)
        controller = Controller(sink, hostname=host, port=port, authenticator=sink.authenticate,
                                auth_required=True, auth_require_tls=False)
        controller.start()
        servers.append((sink, host))
        controllers.append(controller)
    try:
        yield servers, port
    finally:
        for controller in controllers:
            controller.stop()


def test_after_the_host_changes_the_stored_password_never_reaches_the_new_server(admin, app, db, two_servers, send):
    [(first, first_host), (second, second_host)], port = two_servers
    form = admin.get("/settings").forms["settings-form"]
    form["smtp_host"], form["smtp_port"], form["smtp_security"] = first_host, str(port), "none"
    form["smtp_username"], form["smtp_password"] = USER, PASSWORD
    form["from_address"] = "crm@example.test"
    form.submit(status=303)
    assert send().email.recipients[0].status == "sent"
    assert first.tried == [PASSWORD] and len(first.received) == 1

    # The host changes, the password field is left empty.
    form = admin.get("/settings").forms["settings-form"]
    form["smtp_host"] = second_host
    form.submit(status=303)
    recipient = send().email.recipients[0]

    assert PASSWORD not in second.tried
    assert recipient.status == "failed" and second.received == []
    assert first.tried == [PASSWORD] and len(first.received) == 1

    # Typed again for the new server, it works there.
    form = admin.get("/settings").forms["settings-form"]
    form["smtp_password"] = "second-servers-pw"
    form.submit(status=303)
    assert send().email.recipients[0].status == "sent"
    assert second.tried[-1] == "second-servers-pw" and len(second.received) == 1
    assert PASSWORD not in second.tried
