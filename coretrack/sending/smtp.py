"""The SMTP transport: connections reused across batches, each message's outcome as the server said it.
Every message coretrack sends goes through ``SmtpSender.send``, which signs it (DKIM) when a signer is set."""

from __future__ import annotations

import smtplib
import ssl

from ..config import SmtpServer
from .dkim_signing import Signer, SigningError


class DeliveryError(Exception):
    """A message the server refused or could not take; the text is what the recipient row shows."""


def reply_text(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        message = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {message}"
    return str(exc) or exc.__class__.__name__


class SmtpSender:
    """One connection reused from message to message, reopened when the server dropped it between them."""

    timeout = 30.0  # seconds to wait for each reply of the server

    def __init__(self, server: SmtpServer, signer: Signer | None = None):
        self.server = server
        self.signer = signer  # None: messages go unsigned
        self.connection: smtplib.SMTP | None = None
        self.unreachable = ""  # once connecting failed, the rest of the batch fails at once

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def _connect(self) -> smtplib.SMTP:
        if self.connection is not None:
            return self.connection
        if self.unreachable:
            raise DeliveryError(self.unreachable)
        server = self.server
        connection: smtplib.SMTP | None = None
        try:
            if server.security == "tls":
                connection = smtplib.SMTP_SSL(server.host, server.port, timeout=self.timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
            connection.ehlo()
            if server.security == "starttls":
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if server.username:
                connection.login(server.username, server.password)
        except (smtplib.SMTPException, OSError) as exc:
            if connection is not None:
                connection.close()
            self.unreachable = f"could not use the mail server {server.host}:{server.port}: {reply_text(exc)}"
            raise DeliveryError(self.unreachable) from None
        self.connection = connection
        return connection

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Hand one message over (signed, with a signer); the server's reply, or DeliveryError with it."""
        if self.signer is not None:
            try:
                message = self.signer.sign(message)
            except SigningError as exc:
                raise DeliveryError(f"not sent: no DKIM signature could be made ({exc})") from None
        for attempt in (1, 2):
            connection = self._connect()
            try:
                code, reply = connection.mail(sender)
                if code == 421:  # "closing the connection" (idle too long, too many messages)
                    raise smtplib.SMTPServerDisconnected(f"{code} {reply.decode('utf-8', 'replace')}")
                break
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                # Dropped while idle: nothing of this message was sent yet, so reconnecting is safe.
                connection.close()
                self.connection = None
                if attempt == 2:
                    raise DeliveryError("the mail server closed the connection") from None
        try:
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            code, reply = connection.data(message)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            refused_code, refused_reply = exc.recipients[recipient]
            raise DeliveryError(f"{refused_code} {refused_reply.decode('utf-8', 'replace')}") from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if isinstance(exc, smtplib.SMTPResponseException):
                self._reset()
                raise DeliveryError(reply_text(exc)) from None
            self.connection = None
            raise DeliveryError(f"the connection to the mail server was lost; delivery unknown ({reply_text(exc)})") \
                from None
        return f"{code} {reply.decode('utf-8', 'replace')}"

    def _reset(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.rset()
        except (smtplib.SMTPException, OSError):
            self.connection = None


class SmtpPool:
    """The worker's connections to one server, kept open across batches and emails while it is busy
    (opening one costs round trips, and TLS and a login on real servers)."""

    def __init__(self) -> None:
        self.server: SmtpServer | None = None
        self.senders: list[SmtpSender] = []

    def __enter__(self) -> SmtpPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def senders_for(self, server: SmtpServer, count: int, signer: Signer | None = None) -> list[SmtpSender]:
        """``count`` senders to ``server``, signing with ``signer``; the open connections are kept when
        neither the server nor the count changed."""
        if server != self.server or count != len(self.senders):
            self.close()
            self.server, self.senders = server, [SmtpSender(server) for _ in range(count)]
        for sender in self.senders:
            sender.unreachable = ""  # each delivery tries the server again
            sender.signer = signer
        return self.senders

    def close(self) -> None:
        for sender in self.senders:
            sender.close()
        self.server, self.senders = None, []
