"""Bounces without a provider: a signed return path per recipient (VERP), and the bounce mailbox
read over IMAP (``coretrack bounces``, the settings page's "Check now", and the worker every few
minutes and soon after the mailbox's settings change).

Every message's envelope sender is ``<local>+<token>@<domain>`` of the bounce address, the token
being the recipient's own signed one, so a bounce names its recipient, and nobody without a
recipient's token (that is, anyone but the recipient) can forge a bounce that opts them out.
A bounce whose VERP address was lost (forwarded, rewritten) is matched by a token in the message
it returns: its X-SMTPAPI tag or its tracking image URL, signed the same way.

Delivery status notifications are read as RFC 3464 (multipart/report, the per-recipient Action,
Status and Diagnostic-Code) or, from the servers that send plain text (qmail, older Exim and
Postfix setups), by the status code in the text.  Each bounce read is moved to PROCESSED_FOLDER
once its recipient is updated; mail that is no bounce (an auto-reply) is left where it is, unread.
The same folder's ARF complaints (complaints.py) are read and moved alike; what a bounce or a
complaint does to its recipient and address (its class, the evidence kept, the suppression) is
mail_reports.py's.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any, cast

from sqlalchemy.orm import Session

from ..config import Config, SmtpServer
from ..models import Recipient
from ..settings import SettingsService
from . import classes, complaints, mail_reports, returned

log = logging.getLogger(__name__)

PROCESSED_FOLDER = "coretrack-processed"
# How often the worker reads the bounce mailbox, when one is configured; and how often it looks
# whether the mailbox's settings were saved changed (then it reads at once: a new mailbox is
# checked within seconds, not minutes).
WATCH_INTERVAL = 300.0
SETTINGS_CHECK_INTERVAL = 5.0
# A read asked for on the settings page ("Check now") happens within the request: each step with
# the mailbox server may take this long.
CHECK_TIMEOUT = 10.0
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_REPLY = re.compile(r"(?<!\d)([45])\d\d(?=[ -])")
_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer)@", re.IGNORECASE)
_BOUNCE_SUBJECTS = re.compile(
    r"undeliver|delivery (status notification|failure|has failed|problem)|failure notice|returned mail|"
    r"mail delivery failed|could not be delivered|delivery delayed", re.IGNORECASE)
_DELAYED_WORDS = re.compile(r"delayed|will (continue|keep) trying|not yet been delivered|will retry", re.IGNORECASE)
_PERMANENT_WORDS = re.compile(r"permanent|I've given up|could not be delivered|undeliverable|failed",
                              re.IGNORECASE)
_DETAIL_LENGTH = 400


class BounceError(Exception):
    """The bounce mailbox cannot be read (not configured, unreachable, login refused)."""


def verp_address(bounce_address: str, token: str) -> str:
    """The return path of one recipient's message."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


@dataclass(frozen=True)
class Bounce:
    action: str  # "failed" or "delayed"
    status: str  # the enhanced status code: 5.1.1
    detail: str  # the server's words
    tokens: tuple[str, ...]  # signed tokens it names, VERP first
    at: datetime

    @property
    def hard(self) -> bool:
        return classes.classify(self.action, self.status) == classes.HARD


def parse(raw: bytes, bounce_address: str, secret: bytes) -> Bounce | None:
    """The bounce a message reports, or None when it is no delivery status notification."""
    message = message_from_bytes(raw, policy=policy.default)
    if message.get_content_type() == "multipart/report":
        report = _report_fields(message)
    else:
        report = _from_text(_text_of(message)) if _looks_like_bounce(message) else None
    if report is None:
        return None  # no failure or delay reported: an auto-reply, a success notice
    action, status, detail = report
    detail = " ".join(detail.split())[:_DETAIL_LENGTH]
    return Bounce(action, status, detail, returned.tokens_in(message, raw, bounce_address, secret),
                  returned.date_of(message))


def _report_fields(message: EmailMessage) -> tuple[str, str, str] | None:
    """Action, Status and Diagnostic-Code of the first recipient an RFC 3464 report gives up on
    (or, failing that, is delayed for)."""
    found: list[tuple[str, str, str]] = []
    for part in message.walk():
        blocks = part.get_payload()
        if part.get_content_type() != "message/delivery-status" or not isinstance(blocks, list):
            continue
        for block in blocks:
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            if action in ("failed", "delayed"):
                status = _ENHANCED_STATUS.search(str(block.get("Status", "")))
                code = ".".join(status.groups()) if status else ("5.0.0" if action == "failed" else "4.0.0")
                diagnostic = str(block.get("Diagnostic-Code", "")).partition(";")[2].strip()
                found.append((action, code, f"{code} {diagnostic}".strip()))
    if not found:
        return None
    return next((fields for fields in found if fields[0] == "failed"), found[0])


def _looks_like_bounce(message: EmailMessage) -> bool:
    sender = str(message.get("From", ""))
    address = sender[sender.find("<") + 1 : sender.rfind(">")] if "<" in sender else sender.split(" ")[0]
    subject = str(message.get("Subject", ""))
    return bool(_BOUNCE_SENDERS.match(address.strip())) or bool(_BOUNCE_SUBJECTS.search(subject))


def _text_of(message: EmailMessage) -> str:
    """The human-readable report: the first text/plain part outside any returned message."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        return str(cast(EmailMessage, part).get_content())
    except (LookupError, ValueError):
        return part.get_payload(decode=True).decode("utf-8", "replace")  # type: ignore[union-attr]


def _from_text(text: str) -> tuple[str, str, str] | None:
    """Action, status and detail of a plain-text bounce (qmail's "(#5.1.1)", Exim's and Postfix's
    "said: 550 5.1.1 ..."): the copy of the message that follows is not read."""
    text = text.replace("\r\n", "\n")
    text = re.split(r"^-{2,}.*(copy of the message|original message|undelivered message).*$", text,
                    maxsplit=1, flags=re.IGNORECASE | re.MULTILINE)[0]
    action = "delayed" if _DELAYED_WORDS.search(text) and not re.search(r"given up|permanent", text, re.I) \
        else "failed"
    enhanced = _ENHANCED_STATUS.search(text)
    reply = _SMTP_REPLY.search(text)
    if enhanced:
        status, at = ".".join(enhanced.groups()), enhanced.start()
    elif reply:
        status, at = f"{reply.group(1)}.0.0", reply.start()
    else:
        permanent = action == "failed" and _PERMANENT_WORDS.search(text)
        status, at = ("5.0.0" if permanent else "4.0.0"), -1
    if status.startswith("2"):
        return None  # a success
    line = ""
    if at >= 0:
        start = text.rfind("\n\n", 0, at) + 1
        end = text.find("\n\n", at)
        line = text[start : end if end >= 0 else None]
    detail = line.strip() or status
    return action, status, detail if detail.startswith(status) else f"{status} {detail}"


def apply(session: Session, bounce: Bounce, raw: bytes = b"",
          rule: mail_reports.SoftBounceRule | None = None) -> Recipient | None:
    """Marks the recipient the bounce names (bounced, or deferred for a delay) with its status code and
    class, keeps the report (``raw``) as evidence and suppresses the address as its class says
    (mail_reports.py); in the caller's transaction.  None: it names no recipient."""
    recipient = mail_reports.recipient_named(session, bounce.tokens)
    if recipient is not None:
        mail_reports.record_bounce(session, recipient, bounce.action, bounce.status, bounce.detail, bounce.at, raw,
                                   rule or mail_reports.SoftBounceRule())
    return recipient


@dataclass
class MailboxReport:
    bounces: int = 0  # read and moved to PROCESSED_FOLDER
    hard: int = 0  # of which permanent failures (their recipients opted out)
    unknown: int = 0  # of which naming no recipient of this install
    left: int = 0  # messages that are no bounce, left in the folder
    complaints: int = 0  # ARF complaints read (their addresses suppressed) and moved

    def __str__(self) -> str:
        return (f"{self.bounces} bounce(s) read and moved to {PROCESSED_FOLDER} ({self.hard} hard: opted out; "
                f"{self.unknown} for no known recipient); {self.complaints} complaint(s) read and moved; "
                f"{self.left} other message(s) left in place")


def _connect(server: SmtpServer, timeout: float) -> imaplib.IMAP4:
    if server.security == "none" and not _is_loopback(server.host):
        # The password would cross the network in clear.
        raise BounceError(f"the bounce mailbox {server.host} needs TLS or STARTTLS (no security is allowed "
                          "only on this machine's loopback address)")
    connection: imaplib.IMAP4 | None = None
    try:
        if server.security == "tls":
            connection = imaplib.IMAP4_SSL(server.host, server.port, timeout=timeout,
                                           ssl_context=ssl.create_default_context())
        else:
            connection = imaplib.IMAP4(server.host, server.port, timeout=timeout)
            if server.security == "starttls":
                connection.starttls(ssl.create_default_context())
        connection.login(server.username, server.password)
    except (imaplib.IMAP4.error, OSError) as exc:
        if connection is not None:
            connection.shutdown()
        raise BounceError(f"could not open the bounce mailbox {server.host}:{server.port}: "
                          f"{exc or exc.__class__.__name__}") from None
    return connection


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check(reply: tuple[str, list[Any]], doing: str) -> list[Any]:
    status, data = reply
    if status != "OK":
        raise BounceError(f"the bounce mailbox refused to {doing}: {data}")
    return data


def _messages(connection: imaplib.IMAP4) -> Iterator[tuple[str, bytes]]:
    """(uid, raw message) of every message in the selected folder, read without marking it seen."""
    uids = _check(connection.uid("SEARCH", "ALL"), "list its messages")
    for uid in (uids[0] or b"").decode("ascii").split():
        data = _check(connection.uid("FETCH", uid, "(BODY.PEEK[])"), "fetch a message")
        raw = next((item[1] for item in data if isinstance(item, tuple)), None)
        if isinstance(raw, bytes):
            yield uid, raw


def _move(connection: imaplib.IMAP4, uid: str) -> None:
    if "MOVE" in connection.capabilities:
        _check(connection.uid("MOVE", uid, PROCESSED_FOLDER), "move a bounce")
        return
    _check(connection.uid("COPY", uid, PROCESSED_FOLDER), "copy a bounce")
    _check(connection.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"), "delete a bounce")
    _check(connection.expunge(), "expunge")


def read_mailbox(session_factory: Callable[[], Session], config: Config, *, timeout: float = 30.0) -> MailboxReport:
    """Reads every message of the bounce folder once: each bounce updates its recipient (committed
    first), then moves to PROCESSED_FOLDER, so a failure in between at worst reads it again, which
    changes nothing.  BounceError when the mailbox is not configured or cannot be used."""
    with session_factory() as session:
        settings = SettingsService(session, config)
        server = settings.bounce_mailbox()
        bounce_address, folder = settings.get("bounce_address"), settings.get("bounce_imap_folder") or "INBOX"
        rule = settings.soft_bounce_rule()
    if server is None:
        raise BounceError("no bounce mailbox is configured (settings: Bounces)")
    secret = config.secret_key()
    report = MailboxReport()
    connection = _connect(server, timeout)
    try:
        connection.create(PROCESSED_FOLDER)  # NO when it exists already: fine
        _check(connection.select(_quoted(folder)), f"open the folder {folder!r}")
        for uid, raw in _messages(connection):
            try:
                found: Bounce | complaints.Complaint | None = complaints.parse(raw, bounce_address, secret) \
                    or parse(raw, bounce_address, secret)
            except (ValueError, LookupError, TypeError, AttributeError):
                # A message the mail library cannot take apart: left for a person, the others go on.
                log.warning("bounce mailbox: message %s could not be read as a bounce; left in place", uid,
                            exc_info=True)
                found = None
            if found is None:
                report.left += 1
                continue
            with session_factory() as session:
                _apply_read(session, found, raw, rule, report)
                session.commit()
            _move(connection, uid)
    except (imaplib.IMAP4.error, OSError) as exc:
        raise BounceError(f"reading the bounce mailbox failed: {exc or exc.__class__.__name__}") from None
    finally:
        try:
            connection.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return report


def _apply_read(session: Session, found: Bounce | complaints.Complaint, raw: bytes, rule: mail_reports.SoftBounceRule,
                report: MailboxReport) -> None:
    if isinstance(found, complaints.Complaint):
        recipient = mail_reports.recipient_named(session, found.tokens)
        if recipient is not None:
            mail_reports.record_complaint(session, recipient, found.feedback_type, found.detail, found.at, raw)
        report.complaints += 1
    else:
        recipient = apply(session, found, raw, rule)
        report.bounces += 1
        report.hard += recipient is not None and found.hard
    report.unknown += recipient is None


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mailbox_settings(session_factory: Callable[[], Session], config: Config) -> tuple[object, ...] | None:
    """What decides which mailbox is read (server, login, folder), or None when none is configured."""
    with session_factory() as session:
        settings = SettingsService(session, config)
        server = settings.bounce_mailbox()
        return None if server is None else (server, settings.get("bounce_imap_folder"))


def watch_mailbox(session_factory: Callable[[], Session], config: Config, stop: threading.Event,
                  interval: float = WATCH_INTERVAL, settings_check: float = SETTINGS_CHECK_INTERVAL) -> None:
    """Reads the bounce mailbox every ``interval`` seconds while one is configured, and within
    ``settings_check`` seconds of its settings being saved changed, until ``stop`` (a background job:
    jobs.py)."""
    last_read: tuple[object, ...] | None = None  # the settings the mailbox was last read with
    next_read = 0.0
    while not stop.is_set():
        wait = min(interval, settings_check)
        try:
            current = _mailbox_settings(session_factory, config)
            if current is not None and (current != last_read or time.monotonic() >= next_read):
                last_read, next_read = current, time.monotonic() + interval  # a failed read waits too
                report = read_mailbox(session_factory, config)
                if report.bounces or report.complaints or report.left:
                    log.info("bounce mailbox: %s", report)
        except BounceError as exc:
            log.warning("%s", exc)
        except Exception:
            wait = min(interval, 60.0)  # the database is away: not a stack trace every few seconds
            log.exception("reading the bounce mailbox failed; trying again in %s seconds", wait)
        stop.wait(wait)
