"""Composing tracked email and delivering it: one message per recipient, resumable, never twice.

``compose`` validates everything, then writes the email, one recipient per
address (each with its own token) and the attachments in one transaction.
``deliver`` sends pending recipients over one SMTP connection; each recipient
is claimed by an atomic ``UPDATE ... WHERE status = 'pending'`` first, so two
workers never send the same message.  A recipient left in ``sending`` by a
crash is marked failed ("delivery unknown") instead of being sent again: a
duplicate is worse than a message someone has to retry by hand.
"""

from __future__ import annotations

import logging
import re
import secrets
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from . import records, tokens
from .config import Config, SmtpServer
from .db import MAX_ID
from .mailer import AttachmentData, MessageTemplate
from .models import (
    RECIPIENT_KINDS, AccessEvent, Account, Attachment, Contact, Email, Lead, Recipient, User, utcnow,
)
from .settings import SettingsService
from .validation import ValidationError, clean_address, clean_header_text

log = logging.getLogger(__name__)

REFERENCE = re.compile(r"^(contact|account|lead):(\d+)$")
OPTED_OUT = "opted out of email"
INTERRUPTED = ("delivery unknown: the send was interrupted while this message was being handed to the mail "
               "server; it was not resent automatically to avoid a duplicate (retry to send it again)")
# A claim older than this belongs to a process that died mid-send.
STALE_AFTER = timedelta(minutes=5)
EMAIL_STATUSES = ("queued", "sending", "sent", "partial", "failed")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")

Record = Contact | Account | Lead


# -- composing ------------------------------------------------------------------------------


@dataclass
class PlannedRecipient:
    address: str
    name: str
    kind: str
    record: Record | None = None
    skip_reason: str = ""


@dataclass
class Draft:
    """A validated email, not yet saved: what the preview shows and what ``compose`` writes."""

    subject: str
    html: str
    text: str
    reply_to: str
    recipients: list[PlannedRecipient]
    attachments: list[AttachmentData]

    @property
    def skipped(self) -> list[PlannedRecipient]:
        return [planned for planned in self.recipients if planned.skip_reason]


@dataclass
class ComposeResult:
    email: Email
    pending: int
    skipped: list[Recipient]


def split_addresses(text: str | None) -> list[str]:
    """The entries of a To/Cc/Bcc field: separated by commas, semicolons or line breaks."""
    return [part.strip() for part in re.split(r"[,;\r\n]+", text or "") if part.strip()]


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _records_with_address(session: Session, address: str) -> list[Record]:
    found: list[Record] = []
    for model in (Contact, Lead, Account):
        found.extend(session.scalars(select(model).where(func.lower(model.email) == address.lower()).order_by(model.id)))
    return found


def _resolve(session: Session, entry: str, kind: str) -> PlannedRecipient:
    """An address or a ``contact:<id>``-style reference, as a recipient; ValueError with a message."""
    if "\r" in entry or "\n" in entry:
        raise ValueError("line breaks are not allowed in an address")
    match = REFERENCE.match(entry.strip())
    if match:
        try:
            found = records.recipient_for(session, match[1], int(match[2]))
        except ValidationError as exc:
            raise ValueError("; ".join(exc.errors.values())) from None
        address = clean_address(found.address)
        record, name, opted_out = found.record, found.display_name, found.record.email_opt_out
    else:
        address = clean_address(entry)
        # A typed address that belongs to a record is linked to it, and respects its opt-out.
        matches = _records_with_address(session, address)
        record = matches[0] if matches else None
        name = record.display_name if record else ""
        opted_out = any(each.email_opt_out for each in matches)
    if not address.isascii():
        raise ValueError(f"{address!r}: addresses with non-ASCII characters are not supported")
    return PlannedRecipient(address, _one_line(name), kind, record, OPTED_OUT if opted_out else "")


def clean_filename(name: str) -> str:
    """The base name of an uploaded file, without path parts or control characters."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(char for char in name if char.isprintable()).strip().lstrip(".")
    return name[:200] or "attachment"


def prepare(
    session: Session,
    *,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str,
    html: str,
    text: str = "",
    reply_to: str = "",
    attachments: Iterable[tuple[str, str, bytes]] = (),
) -> Draft:
    """Validate and resolve an email without saving anything; ValidationError lists every problem."""
    errors: dict[str, str] = {}
    recipients: list[PlannedRecipient] = []
    seen: set[str] = set()
    for kind, entries in zip(RECIPIENT_KINDS, (to, cc, bcc)):
        problems = []
        for entry in entries:
            try:
                planned = _resolve(session, entry, kind)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if planned.address.lower() not in seen:  # the first field an address appears in wins
                seen.add(planned.address.lower())
                recipients.append(planned)
        if problems:
            errors[kind] = "; ".join(problems)
    if not recipients and not errors:
        errors["to"] = "add at least one recipient"
    try:
        subject = clean_header_text(subject, field="subject", max_length=998)
    except ValueError as exc:
        errors["subject"] = str(exc)
    if not (html or "").strip():
        errors["html"] = "an HTML body is required"
    reply_to = (reply_to or "").strip()
    if reply_to:
        try:
            reply_to = clean_address(reply_to)
        except ValueError as exc:
            errors["reply_to"] = str(exc)
    files = []
    for filename, content_type, data in attachments:
        content_type = (content_type or "").split(";")[0].strip().lower()
        if not _CONTENT_TYPE.match(content_type):
            content_type = "application/octet-stream"
        files.append(AttachmentData(clean_filename(filename), content_type, bytes(data)))
    if errors:
        raise ValidationError(errors)
    return Draft(subject, html, text or "", reply_to, recipients, files)


def compose(
    session: Session, app_config: Config, sender: User, *, secret: bytes, settings: SettingsService, **message
) -> ComposeResult:
    """Validate (``message`` is prepare()'s keywords), then save the email, its recipients and
    attachments in one transaction (status queued)."""
    draft = prepare(session, **message)
    email = Email(
        subject=draft.subject, html_body=draft.html, text_body=draft.text, sender_id=sender.id,
        from_address=settings.get("from_address"), from_name=settings.get("from_name"), reply_to=draft.reply_to,
        status="queued", tracking=settings.tracking_enabled,
    )
    for planned in draft.recipients:
        email.recipients.append(
            Recipient(
                address=planned.address, name=planned.name, kind=planned.kind, token=tokens.new_token(secret),
                contact_id=planned.record.id if isinstance(planned.record, Contact) else None,
                account_id=planned.record.id if isinstance(planned.record, Account) else None,
                lead_id=planned.record.id if isinstance(planned.record, Lead) else None,
                status="skipped" if planned.skip_reason else "pending", reply=planned.skip_reason,
            )
        )
    written: list[Path] = []
    try:
        app_config.attachments_dir.mkdir(parents=True, exist_ok=True)
        for attachment in draft.attachments:
            storage_name = secrets.token_hex(16)  # never the uploaded name
            path = app_config.attachments_dir / storage_name
            with open(path, "xb") as handle:
                written.append(path)
                handle.write(attachment.data)
            email.attachments.append(
                Attachment(filename=attachment.filename, content_type=attachment.content_type,
                           size=len(attachment.data), storage_name=storage_name)
            )
        session.add(email)
        if not any(recipient.status == "pending" for recipient in email.recipients):
            email.status = "sent"  # everyone opted out: nothing to deliver
        session.commit()
    except BaseException:
        session.rollback()
        for path in written:
            path.unlink(missing_ok=True)
        raise
    skipped = [recipient for recipient in email.recipients if recipient.status == "skipped"]
    return ComposeResult(email, len(email.recipients) - len(skipped), skipped)


def attachment_path(config: Config, attachment: Attachment) -> Path:
    return config.attachments_dir / attachment.storage_name


# -- SMTP -----------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A message the server refused or could not take; the text is what the recipient row shows."""


def _reply(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {message}"
    return str(exc) or exc.__class__.__name__


class SmtpSender:
    """One connection reused for a batch, reopened when the server dropped it between messages."""

    timeout = 30.0  # seconds to wait for each reply of the server

    def __init__(self, server: SmtpServer):
        self.server = server
        self.connection: smtplib.SMTP | None = None
        self.unreachable = ""  # once connecting failed, the rest of the batch fails at once

    def __enter__(self) -> "SmtpSender":
        return self

    def __exit__(self, *exc_info) -> None:
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
        connection = None
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
            self.unreachable = f"could not use the mail server {server.host}:{server.port}: {_reply(exc)}"
            raise DeliveryError(self.unreachable) from None
        self.connection = connection
        return connection

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Hand one message over; returns the server's reply, or raises DeliveryError with it."""
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
                raise DeliveryError(_reply(exc)) from None
            self.connection = None
            raise DeliveryError(f"the connection to the mail server was lost; delivery unknown ({_reply(exc)})") \
                from None
        return f"{code} {reply.decode('utf-8', 'replace')}"

    def _reset(self) -> None:
        try:
            self.connection.rset()
        except (smtplib.SMTPException, OSError):
            self.connection = None


# -- delivery -------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0

    @property
    def processed(self) -> int:
        return self.sent + self.failed


def message_template(session: Session, config: Config, email: Email) -> MessageTemplate:
    public_url = SettingsService(session, config).get("public_url") if email.tracking else None
    files = [
        AttachmentData(a.filename, a.content_type, attachment_path(config, a).read_bytes()) for a in email.attachments
    ]
    return MessageTemplate(
        from_address=email.from_address, from_name=email.from_name, reply_to=email.reply_to,
        subject=email.subject, html=email.html_body, text=email.text_body, attachments=files, public_url=public_url,
    )


def fail_interrupted(session: Session, email_id: int | None = None) -> int:
    """Recipients claimed long ago and never finished: failed with "delivery unknown", not resent."""
    statement = update(Recipient).where(
        Recipient.status == "sending", Recipient.claimed_at < utcnow() - STALE_AFTER
    ).values(status="failed", reply=INTERRUPTED, attempts=Recipient.attempts + 1)
    if email_id is not None:
        statement = statement.where(Recipient.email_id == email_id)
    count = session.execute(statement, execution_options={"synchronize_session": False}).rowcount
    session.commit()
    return count


def refresh_status(session: Session, email_id: int) -> None:
    """The email's status from its recipients', in one statement so concurrent workers agree."""

    def count(*statuses: str):
        return (
            select(func.count()).select_from(Recipient)
            .where(Recipient.email_id == email_id, Recipient.status.in_(statuses)).scalar_subquery()
        )

    status = case(
        (count("pending", "sending") > 0, case((count("sent", "failed", "sending") > 0, "sending"), else_="queued")),
        (and_(count("failed") > 0, count("sent") > 0), "partial"),
        (count("failed") > 0, "failed"),
        else_="sent",
    )
    session.execute(update(Email).where(Email.id == email_id).values(status=status),
                    execution_options={"synchronize_session": False})
    session.commit()


def deliver(
    session_factory: Callable[[], Session],
    config: Config,
    email_id: int,
    *,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Send the email's pending recipients (up to ``limit``) over one SMTP connection."""
    report = DeliveryReport()
    with session_factory() as session:
        fail_interrupted(session, email_id)
        email = session.get(Email, email_id)
        if email is None:
            return report
        pending = session.execute(
            select(Recipient.id, Recipient.address, Recipient.name, Recipient.token)
            .where(Recipient.email_id == email_id, Recipient.status == "pending")
            .order_by(Recipient.id).limit(limit)
        ).all()
        if pending:
            template = message_template(session, config, email)
            with SmtpSender(SettingsService(session, config).smtp_server()) as smtp:
                for recipient_id, address, name, token in pending:
                    claimed = session.execute(
                        update(Recipient)
                        .where(Recipient.id == recipient_id, Recipient.status == "pending")
                        .values(status="sending", claimed_at=utcnow()),
                        execution_options={"synchronize_session": False},
                    ).rowcount
                    if claimed:
                        session.execute(update(Email).where(Email.id == email_id, Email.status == "queued")
                                        .values(status="sending"), execution_options={"synchronize_session": False})
                    session.commit()
                    if not claimed:
                        continue  # another worker has it
                    _send_one(session, smtp, template, email, recipient_id, address, name, token, report)
                    if on_progress:
                        on_progress(1)
        refresh_status(session, email_id)
    return report


def _send_one(session, smtp, template, email, recipient_id, address, name, token, report) -> None:
    try:
        reply = smtp.send(email.from_address, address, template.render(address, name, token))
    except DeliveryError as exc:
        values = {"status": "failed", "reply": str(exc)}
        report.failed += 1
    except Exception as exc:  # a bug must not leave the recipient claimed forever
        log.exception("sending to recipient %s failed", recipient_id)
        values = {"status": "failed", "reply": f"internal error: {exc.__class__.__name__}"}
        report.failed += 1
    else:
        now = utcnow()
        values = {"status": "sent", "reply": reply, "sent_at": now}
        report.sent += 1
        session.execute(update(Email).where(Email.id == email.id, Email.sent_at.is_(None)).values(sent_at=now),
                        execution_options={"synchronize_session": False})
    session.execute(
        update(Recipient).where(Recipient.id == recipient_id).values(attempts=Recipient.attempts + 1, **values),
        execution_options={"synchronize_session": False},
    )
    session.commit()


def send_or_queue(session_factory: Callable[[], Session], config: Config, email_id: int, pending: int) -> bool:
    """Small sends go out within the request; larger ones stay queued for the worker.  True if sent now."""
    if pending == 0 or pending > config.inline_send_limit:
        return False
    deliver(session_factory, config, email_id)
    return True


def retry(session: Session, email_id: int, recipient_id: int | None = None) -> int:
    """Failed recipients (all, or one) back to pending; returns how many."""
    if recipient_id is not None and recipient_id > MAX_ID:
        return 0  # no such recipient (and too large for the database's integer)
    statement = update(Recipient).where(Recipient.email_id == email_id, Recipient.status == "failed")
    if recipient_id is not None:
        statement = statement.where(Recipient.id == recipient_id)
    count = session.execute(
        statement.values(status="pending", reply="", claimed_at=None), execution_options={"synchronize_session": False}
    ).rowcount
    session.commit()
    refresh_status(session, email_id)
    session.expire_all()
    return count


# -- the worker -----------------------------------------------------------------------------


def emails_to_deliver(session: Session) -> list[int]:
    """Emails with pending or interrupted recipients, or a status that no longer matches them."""
    stale = and_(Recipient.status == "sending", Recipient.claimed_at < utcnow() - STALE_AFTER)
    with_work = select(Recipient.email_id).where(or_(Recipient.status == "pending", stale))
    unfinished = select(Email.id).where(Email.status.in_(("queued", "sending")))
    return sorted(set(session.scalars(with_work.distinct())) | set(session.scalars(unfinished)))


def run_worker(target, *, once: bool = False, interval: float = 5.0, stop: threading.Event | None = None,
               batch: int = 500, on_progress: Callable[[int], None] | None = None) -> int:
    """Deliver queued email until nothing is pending (``once``) or forever; returns messages processed.

    ``target`` is the application (its sessions are used) or a Config (an engine is made for the worker).
    """
    engine = None
    if isinstance(target, Config):
        from .db import make_engine, make_session_factory

        config, engine = target, make_engine(target.database_url)
        session_factory = make_session_factory(engine)
    else:
        config, session_factory = target.config, target.Session
    stop = stop or threading.Event()
    processed = 0
    try:
        while not stop.is_set():
            done = 0
            try:
                with session_factory() as session:
                    email_ids = emails_to_deliver(session)
                for email_id in email_ids:
                    done += deliver(session_factory, config, email_id, limit=batch, on_progress=on_progress).processed
            except Exception:
                if once:
                    raise
                log.exception("worker pass failed; trying again in %s seconds", interval)
            processed += done
            if done:
                continue  # more may be waiting: no pause between batches
            if once or stop.wait(interval):
                break
    finally:
        if engine is not None:
            engine.dispose()
    return processed


def start_worker_thread(app, interval: float = 5.0) -> threading.Thread:
    """The worker in a daemon thread of this process (``coretrack serve``)."""
    thread = threading.Thread(target=run_worker, args=(app,), kwargs={"interval": interval},
                              name="coretrack-worker", daemon=True)
    thread.start()
    return thread


# -- what the pages show --------------------------------------------------------------------


@dataclass
class EmailFilters:
    date_from: date | None = None
    date_to: date | None = None
    sender: str = ""
    status: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def parse_filters(args) -> EmailFilters:
    filters = EmailFilters(sender=(args.get("sender") or "").strip(), status=(args.get("status") or "").strip())
    for key, attribute in (("from", "date_from"), ("to", "date_to")):
        raw = (args.get(key) or "").strip()
        if raw:
            try:
                setattr(filters, attribute, date.fromisoformat(raw))
            except ValueError:
                filters.errors[key] = "enter a date as YYYY-MM-DD"
    if filters.status and filters.status not in EMAIL_STATUSES:
        filters.errors["status"] = "choose a status from the list"
        filters.status = ""
    return filters


def emails_statement(filters: EmailFilters):
    statement = select(Email).join(Email.sender).order_by(Email.created_at.desc(), Email.id.desc())
    if filters.date_from:
        statement = statement.where(Email.created_at >= datetime.combine(filters.date_from, datetime.min.time()))
    if filters.date_to:
        statement = statement.where(
            Email.created_at < datetime.combine(filters.date_to + timedelta(days=1), datetime.min.time())
        )
    if filters.sender:
        statement = statement.where(User.name == filters.sender)
    if filters.status:
        statement = statement.where(Email.status == filters.status)
    return statement


@dataclass
class EmailCounts:
    recipients: int = 0
    opened: int = 0
    accesses: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped


def email_counts(session: Session, email_ids: Iterable[int]) -> dict[int, EmailCounts]:
    """Recipients, recipients who opened, total accesses and delivery counts, per email, in one query."""
    ids = list(email_ids)
    counts = {email_id: EmailCounts() for email_id in ids}
    if not ids:
        return counts

    def number(condition):
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    rows = session.execute(
        select(
            Recipient.email_id, func.count(), number(Recipient.access_count > 0),
            func.coalesce(func.sum(Recipient.access_count), 0), number(Recipient.status == "sent"),
            number(Recipient.status == "failed"), number(Recipient.status == "skipped"),
        ).where(Recipient.email_id.in_(ids)).group_by(Recipient.email_id)
    )
    for email_id, *values in rows:
        counts[email_id] = EmailCounts(*(int(value) for value in values))
    return counts


def access_events(session: Session, email_id: int, limit: int = 200) -> list[tuple[AccessEvent, Recipient]]:
    return list(
        session.execute(
            select(AccessEvent, Recipient).join(Recipient, AccessEvent.recipient_id == Recipient.id)
            .where(Recipient.email_id == email_id)
            .order_by(AccessEvent.at.desc(), AccessEvent.id.desc()).limit(limit)
        )
    )


def sender_names(session: Session) -> list[str]:
    return list(session.scalars(select(User.name).where(User.id.in_(select(Email.sender_id))).order_by(User.name)))
