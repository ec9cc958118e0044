"""Composing tracked email and delivering it: one message per recipient, resumable, never twice.

``prepare`` validates everything and resolves the recipients, saving nothing;
``compose`` writes the prepared email, one recipient per address (each with its
own token) and the attachments in one transaction.
``deliver`` sends pending recipients in batches over one or more SMTP
connections; each batch is claimed by one atomic ``UPDATE ... WHERE status =
'pending'`` and its outcomes are recorded in one transaction, so two workers
never send the same message.  A recipient left in ``sending`` by a crash is
marked failed ("delivery unknown") instead of being sent again: a duplicate is
worse than a message someone has to retry by hand.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Table, and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from . import erasure, limits, mergefields, records, suppression
from .bounces import verp_address
from .config import Config
from .db import MAX_ID, changed_rows
from .mailer import AttachmentData, MessageError, MessageTemplate, add_signature
from .models import (
    RECIPIENT_KINDS,
    Account,
    Attachment,
    Contact,
    Email,
    EmailLink,
    Lead,
    Recipient,
    Record,
    StoredFile,
    User,
    utcnow,
)
from .sanitize import clean_html
from .settings import SettingsService
from .smtp import DeliveryError, SmtpPool, SmtpSender
from .tracking import clicks, tokens
from .validation import ValidationError, check_text, clean_address, clean_mail_text, mail_problem

log = logging.getLogger(__name__)

OPTED_OUT = "opted out of email"
ERASED = "erased on request: not sent"
INTERRUPTED = ("delivery unknown: the send was interrupted while this message was being handed to the mail "
               "server; it was not resent automatically to avoid a duplicate (retry to send it again)")
# A claim older than this belongs to a process that died mid-send.
STALE_AFTER = timedelta(minutes=5)
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")



# -- composing ------------------------------------------------------------------------------


@dataclass
class PlannedRecipient:
    address: str
    name: str
    kind: str
    record: Record | None = None
    skip_reason: str = ""
    do_not_track: bool = False  # a record with the address asks not to be tracked


@dataclass(frozen=True)
class LeftOut:
    """A record of a mass send that gets no message and no recipient row: the preview lists it."""

    record: Record
    reason: str


NO_ADDRESS = "no email address"


@dataclass
class Draft:
    """A validated email, not yet saved: what the preview shows and what ``compose`` writes."""

    subject: str
    html: str
    text: str
    reply_to: str
    recipients: list[PlannedRecipient]
    attachments: list[AttachmentData]
    send_at: datetime | None = None  # UTC; None: now
    track: bool = True  # False: "Don't track this email" (no recipient's message is tracked)
    left_out: list[LeftOut] = field(default_factory=list)  # an audience's records without an own message
    audience_size: int = 0  # records the audience named

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


def _resolve(session: Session, entry: str, kind: str) -> PlannedRecipient:
    """An address or a ``contact:<id>``-style reference, as a recipient; ValueError with a message."""
    if "\r" in entry or "\n" in entry:
        raise ValueError("line breaks are not allowed in an address")
    try:
        reference = records.parse_reference(entry)
        found = records.recipient_for(session, *reference) if reference else None
    except ValidationError as exc:
        raise ValueError("; ".join(exc.errors.values())) from None
    record: Record | None
    if found is not None:
        address = clean_address(found.address)
        record, name = found.record, found.display_name
        do_not_track = _do_not_track(found.record)
    else:
        address = clean_address(entry)
        # A typed address that belongs to a record is linked to it.
        matches = records.records_with_address(session, address)
        record = matches[0] if matches else None
        name = record.display_name if record else ""
        do_not_track = any(_do_not_track(each) for each in matches)
    name = _one_line(name)
    problem = mail_problem(name)
    if problem and record is not None:  # only a record gives a name
        raise ValueError(f"{entry}: the name {name!r} of {record.record_type} {record.id} cannot be put in an "
                         f"email ({problem}); correct the record")
    return PlannedRecipient(address, name, kind, record, do_not_track=do_not_track)


def _plan_audience(records_found: Sequence[Record],
                   seen: dict[str, str]) -> tuple[list[PlannedRecipient], list[LeftOut]]:
    """An audience's records as To recipients, without a query per record: one each that has a
    usable address not already among the recipients (``seen``: lower-case address -> who has it,
    updated); the others left out with the reason."""
    planned, left_out = [], []
    for record in records_found:
        if not record.email.strip():
            left_out.append(LeftOut(record, NO_ADDRESS))
            continue
        try:
            address = clean_address(record.email)
        except ValueError as exc:
            left_out.append(LeftOut(record, f"address {record.email!r}: {exc}"))
            continue
        if (first := seen.get(address.lower())) is not None:
            left_out.append(LeftOut(record, f"duplicate: {address} already gets this email ({first})"))
            continue
        name = _one_line(record.display_name)
        if problem := mail_problem(name):
            left_out.append(LeftOut(record, f"the name cannot be put in an email ({problem}); correct the record"))
            continue
        seen[address.lower()] = f"{record.record_type} {name}"
        planned.append(PlannedRecipient(address, name, "to", record, do_not_track=_do_not_track(record)))
    return planned, left_out


def _do_not_track(record: Record) -> bool:
    return isinstance(record, Contact | Lead) and record.do_not_track  # accounts have no such flag


def is_tracked(email: Email, planned: PlannedRecipient) -> bool:
    """Whether this recipient's message carries the tracking image (and, where links are rewritten,
    rewritten links): the one decision, made when the email is composed and kept as Recipient.tracked.
    Tracking on for the install and this email, and no record with the address asking not to be."""
    return email.tracking and not planned.do_not_track


def clean_filename(name: str) -> str:
    """The base name of an uploaded file, without path parts or control characters."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(char for char in name if char.isprintable()).strip().lstrip(".")
    return name[:200] or "attachment"


def attachment_data(filename: str, content_type: str, data: bytes) -> AttachmentData:
    """An uploaded file as it is kept and sent: a safe file name, and a plain content type (else
    application/octet-stream)."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not _CONTENT_TYPE.match(content_type):
        content_type = "application/octet-stream"
    return AttachmentData(clean_filename(filename), content_type, bytes(data))


def check_message(subject: str, html: str, text: str, errors: dict[str, str]) -> str:
    """An email's subject as it is kept (one line for the header), the problems of the subject and
    bodies added to ``errors`` by field: what a sent email and a template both need, the size
    limits (coretrack.limits) included."""
    try:
        subject = clean_mail_text(subject, field="subject", max_length=998)
    except ValueError as exc:
        errors["subject"] = str(exc)
    for body, label, value in (("html", "HTML body", html), ("text", "text body", text)):
        try:
            check_text(value, field=label)
        except ValueError as exc:
            errors[body] = str(exc)
    if "html" not in errors and not (html or "").strip():
        errors["html"] = "an HTML body is required"
    limits.check_bodies(html, text, errors)
    return subject


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
    signature_html: str = "",
    send_at: datetime | None = None,
    track: bool = True,
    audience: records.Audience | None = None,
) -> Draft:
    """Validate and resolve an email without saving anything; ValidationError lists every problem.
    A signature (the sender's, already sanitised) goes at the end of both bodies; ``send_at`` (UTC)
    schedules it, up to MAX_SCHEDULE ahead."""
    errors: dict[str, str] = {}
    recipients: list[PlannedRecipient] = []
    seen: dict[str, str] = {}  # lower-case address -> who has it
    for kind, entries in zip(RECIPIENT_KINDS, (to, cc, bcc), strict=True):
        problems = []
        for entry in entries:
            try:
                planned = _resolve(session, entry, kind)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if planned.address.lower() not in seen:  # the first field an address appears in wins
                seen[planned.address.lower()] = f"{kind}: {entry}"
                recipients.append(planned)
        if problems:
            errors[kind] = "; ".join(problems)
    left_out: list[LeftOut] = []
    audience_size = 0
    if audience is not None:
        found = audience.records(session)
        audience_size = len(found)
        planned_records, left_out = _plan_audience(found, seen)
        recipients.extend(planned_records)
        if not found:
            errors["audience"] = "no records match: nobody to send to"
    # Whoever holds an opted-out address, and however it was given: skipped (one query a chunk).
    stopped = suppression.suppressed(session, [planned.address for planned in recipients])
    for planned in recipients:
        if suppression.key(planned.address) in stopped:
            planned.skip_reason = OPTED_OUT
    if not recipients and not errors:
        errors["to"] = ("none of these records has an address to send to" if audience is not None
                        else "add at least one recipient")
    subject = check_message(subject, html, text, errors)
    reply_to = (reply_to or "").strip()
    if reply_to:
        try:
            reply_to = clean_address(reply_to)
        except ValueError as exc:
            errors["reply_to"] = str(exc)
    files = [attachment_data(*upload) for upload in attachments]
    if send_at is not None:
        now = utcnow()
        if send_at < now - SCHEDULE_SLACK:
            errors["send_at"] = "that time has passed: choose a later one, or leave it empty to send now"
        elif send_at > now + MAX_SCHEDULE:
            errors["send_at"] = f"an email can be scheduled at most {MAX_SCHEDULE.days} days ahead"
    if errors:
        raise ValidationError(errors)
    text = text or ""
    # Whatever the editor, the source view or the API sent: nothing that runs reaches a message.
    html = clean_html(html)
    if signature_html.strip():
        html, text = add_signature(html, text, signature_html)
    return Draft(subject, html, text, reply_to, recipients, files, send_at, track, left_out, audience_size)


def _check_buildable(draft: Draft, email: Email, public_url: str | None, links: list[str],
                     settings: SettingsService) -> None:
    """Build the message with the sender's own code, so that nothing is saved that the worker
    could not send; ValidationError naming the field for whatever the checks above let through."""
    try:
        template = MessageTemplate(
            from_address=email.from_address, from_name=email.from_name, reply_to=draft.reply_to,
            subject=draft.subject, html=draft.html, text=draft.text, attachments=draft.attachments,
            public_url=public_url, links=links, unsubscribe_url=settings.get("public_url"),
            unsubscribe_footer=settings.get("unsubscribe_footer"),
        )
    except MessageError as exc:
        if exc.field.startswith("from_"):  # not on the form: the settings hold them
            raise ValidationError({"from": f"{exc} (an administrator can correct it in the settings)"}) from None
        raise ValidationError({exc.field: str(exc)}) from None
    for planned in draft.recipients:
        try:
            template.to_header(planned.address, planned.name)
        except MessageError as exc:
            raise ValidationError({planned.kind: f"{planned.address}: {exc}"}) from None


def compose(session: Session, config: Config, sender: User, draft: Draft) -> ComposeResult:
    """Save a prepared email, its recipients and attachments in one transaction (status queued),
    once the sender's own code has shown that the worker can build it."""
    settings = SettingsService(session, config)
    secret = config.secret_key()
    email = Email(
        subject=draft.subject, html_body=draft.html, text_body=draft.text, sender_id=sender.id,
        from_address=settings.get("from_address"), from_name=settings.get("from_name"), reply_to=draft.reply_to,
        status="queued", tracking=settings.tracking_enabled and draft.track, send_at=draft.send_at,
    )
    public_url = settings.get("public_url") if email.tracking else None
    # The links a click is recorded for (and redirected to), kept as they were written.
    links = clicks.trackable_links(draft.html, public_url) if public_url else []
    _check_buildable(draft, email, public_url, links, settings)
    email.links = [EmailLink(position=position, url=url) for position, url in enumerate(links)]
    gone = erasure.erased(session, secret, [planned.address for planned in draft.recipients])
    # Plain rows, inserted in one executemany below: ORM objects would be one INSERT each, and a
    # mass send has thousands.
    rows = []
    for planned in draft.recipients:
        if planned.address in gone and not planned.skip_reason:
            planned = replace(planned, skip_reason=ERASED)
        rows.append({
            "address": planned.address, "name": planned.name, "kind": planned.kind, "token": tokens.new_token(secret),
            "contact_id": planned.record.id if isinstance(planned.record, Contact) else None,
            "account_id": planned.record.id if isinstance(planned.record, Account) else None,
            "lead_id": planned.record.id if isinstance(planned.record, Lead) else None,
            "status": "skipped" if planned.skip_reason else "pending", "reply": planned.skip_reason,
            "tracked": is_tracked(email, planned),
        })
    pending = sum(row["status"] == "pending" for row in rows)
    with files_or_nothing(session) as written:
        for attachment in draft.attachments:
            storage_name = store_file(config, attachment.data, written)
            email.attachments.append(
                Attachment(filename=attachment.filename, content_type=attachment.content_type,
                           size=len(attachment.data), storage_name=storage_name)
            )
        if not pending:
            email.status = "sent"  # everyone opted out: nothing to deliver
        session.add(email)
        session.flush()  # the email's id, for its recipients
        session.execute(insert(Recipient), [{**row, "email_id": email.id} for row in rows])
        session.commit()
    skipped = list(session.scalars(select(Recipient).where(Recipient.email_id == email.id,
                                                           Recipient.status == "skipped").order_by(Recipient.id)))
    return ComposeResult(email, pending, skipped)


@contextmanager
def files_or_nothing(session: Session) -> Iterator[list[Path]]:
    """A transaction that writes attachment files (store_file, into the list yielded): if it fails
    it is rolled back and the files are removed, so no file is left without its row."""
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        session.rollback()
        for path in written:
            path.unlink(missing_ok=True)
        raise


def store_file(config: Config, data: bytes, written: list[Path]) -> str:
    """Write an attachment's bytes into the attachments folder under a new random name (never the
    uploaded one), appended to ``written`` for the caller to remove if its transaction fails."""
    config.attachments_dir.mkdir(parents=True, exist_ok=True)
    storage_name = secrets.token_hex(16)
    path = config.attachments_dir / storage_name
    with open(path, "xb") as handle:
        written.append(path)
        handle.write(data)
    return storage_name


def attachment_path(config: Config, attachment: StoredFile) -> Path:
    return config.attachments_dir / attachment.storage_name


# -- delivery -------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0

    @property
    def processed(self) -> int:
        return self.sent + self.failed


def message_parts(session: Session, config: Config, email: Email, tracked: bool = True) -> dict[str, Any]:
    """What MessageTemplate builds the email's MIME from, for its tracked recipients (or, ``tracked``
    False, the others); MessageError naming what cannot be put into a message."""
    settings = SettingsService(session, config)
    public_url = settings.get("public_url") if email.tracking and tracked else None
    files = []
    for attachment in email.attachments:
        try:
            data = attachment_path(config, attachment).read_bytes()
        except OSError as exc:
            trouble = "is missing from" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror}) in"
            raise MessageError("attachments", f"the file of the attachment {attachment.filename!r} {trouble} "
                                              "the attachments folder") from None
        files.append(AttachmentData(attachment.filename, attachment.content_type, data))
    return dict(
        from_address=email.from_address, from_name=email.from_name, reply_to=email.reply_to,
        subject=email.subject, html=email.html_body, text=email.text_body, attachments=files, public_url=public_url,
        sendgrid_tag=settings.get("smtp_preset") == "sendgrid", secret=config.secret_key(),
        links=session.scalars(select(EmailLink.url).where(EmailLink.email_id == email.id)
                              .order_by(EmailLink.position)).all() if public_url else (),
        unsubscribe_url=settings.get("public_url"), unsubscribe_footer=settings.get("unsubscribe_footer"),
    )


def message_template(session: Session, config: Config, email: Email, tracked: bool = True) -> MessageTemplate:
    """The email's MIME (see message_parts), serialised once for all its recipients."""
    return MessageTemplate(**message_parts(session, config, email, tracked))


# A batch's message for each of its recipients: by recipient id and Recipient.tracked.
MessageOf = Callable[[int, bool], MessageTemplate]


class Messages(Protocol):
    """How the worker gets each recipient's message."""

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        """The batch's messages (the callable raises MessageError for a recipient whose message cannot be made)."""
        ...


class SharedMessages:
    """The messages of an email without merge fields: one for all tracked recipients, one for the
    others (without the image), each serialised once."""

    def __init__(self, session: Session, config: Config, email: Email, untracked_too: bool):
        self.templates = {True: message_template(session, config, email)}
        self.templates[False] = (message_template(session, config, email, tracked=False) if untracked_too
                                 else self.templates[True])

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        return lambda recipient_id, tracked: self.templates[tracked]


class Personaliser:
    """The messages of an email with merge fields: each recipient's own subject and bodies
    (mergefields.render) from their record, as it is when the message goes, and the sender's account.
    Recipients whose fields come out the same share one serialised message."""

    CACHED = 64  # messages kept for recipients whose fields come out the same

    def __init__(self, session: Session, config: Config, email: Email, untracked_too: bool):
        self.parts = {True: message_parts(session, config, email)}
        self.parts[False] = (message_parts(session, config, email, tracked=False) if untracked_too
                             else self.parts[True])
        self.sender = mergefields.sender_values(session.get(User, email.sender_id) if email.sender_id else None)
        self.cache: dict[tuple[bool, str, str, str], MessageTemplate] = {}
        self.lock = threading.Lock()  # one cache for the connections' threads

    def values(self, session: Session, recipient_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """Each recipient's field values, read in one query per kind of record."""
        links = session.execute(select(Recipient.id, Recipient.contact_id, Recipient.account_id, Recipient.lead_id)
                                .where(Recipient.id.in_(recipient_ids))).all()
        def ids(column: int) -> set[int]:
            return {value for row in links if (value := row[column]) is not None}

        contacts = {contact.id: contact for contact in session.scalars(
            select(Contact).options(selectinload(Contact.account)).where(Contact.id.in_(ids(1))))}
        accounts = {account.id: account for account in session.scalars(select(Account).where(Account.id.in_(ids(2))))}
        leads = {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_(ids(3))))}
        values = {}
        for recipient_id, contact_id, account_id, lead_id in links:
            record: Record | None = (contacts.get(contact_id) if contact_id else None) or (
                accounts.get(account_id) if account_id else None) or (leads.get(lead_id) if lead_id else None)
            values[recipient_id] = mergefields.values_for(record, self.sender)
        return values

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        values = self.values(session, recipient_ids)
        return lambda recipient_id, tracked: self.template(tracked, values[recipient_id])

    def template(self, tracked: bool, values: dict[str, str]) -> MessageTemplate:
        """This recipient's message; MessageError when their values cannot go into one."""
        parts = self.parts[tracked]
        rendered = mergefields.render(parts["subject"], parts["html"], parts["text"], values)
        for field_name, label, body in (("html", "HTML body", rendered.html), ("text", "text body", rendered.text)):
            if problem := limits.body_problem(body, f"{label} filled with this recipient's merge fields"):
                raise MessageError(field_name, problem)
        key = (tracked, rendered.subject, rendered.html, rendered.text)
        with self.lock:
            template = self.cache.get(key)
        if template is None:
            template = MessageTemplate(**{**parts, "subject": rendered.subject, "html": rendered.html,
                                          "text": rendered.text})
            with self.lock:
                if len(self.cache) >= self.CACHED:
                    self.cache.clear()
                self.cache[key] = template
        return template


def fail_interrupted(session: Session, email_id: int | None = None) -> int:
    """Recipients claimed long ago and never finished: failed with "delivery unknown", not resent."""
    statement = update(Recipient).where(
        Recipient.status == "sending", Recipient.claimed_at < utcnow() - STALE_AFTER
    ).values(status="failed", reply=INTERRUPTED, attempts=Recipient.attempts + 1)
    if email_id is not None:
        statement = statement.where(Recipient.email_id == email_id)
    count = changed_rows(session, statement)
    session.commit()
    return count


def refresh_status(session: Session, email_id: int) -> None:
    """The email's status from its recipients', in one statement so concurrent workers agree."""

    def count(*statuses: str) -> ScalarSelect[int]:
        return (
            select(func.count()).select_from(Recipient)
            .where(Recipient.email_id == email_id, Recipient.status.in_(statuses)).scalar_subquery()
        )

    status = case(
        (count("pending", "sending") > 0, case((count("sent", "failed", "sending") > 0, "sending"), else_="queued")),
        (count("cancelled") > 0, "cancelled"),
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
    pool: SmtpPool | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Send the email's pending recipients (up to ``limit``) in batches, over as many connections as
    the settings say (``pool`` keeps them open for the next call; without one they close at the end).
    ``stop`` ends the delivery after the message in hand, giving the rest of the batch back.

    A call with a ``limit`` is one turn of the worker, which goes round the emails due: the turn
    also ends after TURN_SECONDS (building the message included; one message at least), so an email
    that is slow to build or send holds up the ones queued after it by one turn, not by all of it."""
    report = DeliveryReport()
    turn_ends = time.monotonic() + TURN_SECONDS if limit is not None else None
    with session_factory() as session:
        fail_interrupted(session, email_id)
        email = session.get(Email, email_id)
        if email is None or not is_due(email.send_at):
            return report
        pending = select(Recipient.id).where(Recipient.email_id == email_id, Recipient.status == "pending")
        messages: Messages | None = None
        if session.scalar(pending.limit(1)) is not None:
            # Recipients who asked not to be tracked: the same message without the image.
            untracked_too = email.tracking and session.scalar(pending.where(~Recipient.tracked).limit(1)) is not None
            try:
                messages = (Personaliser if mergefields.has_fields(email.subject, email.html_body, email.text_body)
                            else SharedMessages)(session, config, email, untracked_too)
            except MessageError as exc:
                # Saved before validation refused such values: this email fails, the others go on.
                report.failed += _end_pending(session, email_id, status="failed", reply=f"not sent: {exc}",
                                              attempts=Recipient.attempts + 1)
        settings = SettingsService(session, config)
        server, connections = settings.smtp_server(), settings.get("smtp_connections")
        from_address, bounce_address = email.from_address, settings.get("bounce_address")
    if messages is not None:
        with ExitStack() as closing:
            if pool is None:
                pool = closing.enter_context(SmtpPool())
            senders = pool.senders_for(server, connections)
            delivery = _Delivery(session_factory, email_id, from_address, bounce_address, messages, limit,
                                 on_progress, stop or threading.Event(), turn_ends)
            for part in delivery.run(senders):
                report.sent += part.sent
                report.failed += part.failed
    with session_factory() as session:
        refresh_status(session, email_id)
    return report


# Recipients claimed in one transaction and recorded in one: a worker that dies mid-batch leaves at
# most this many per connection in "sending", later failed as "delivery unknown", never resent.
BATCH_SIZE = 100
# One email's turn of the worker (see deliver): long enough that the SMTP round trips, not the
# turns, set a large send's pace; short enough that an email queued behind it goes within seconds.
TURN_SECONDS = 10.0
# A batch still going after this long (a slow server) gives its unsent recipients back, so that a
# live worker's claim never gets near STALE_AFTER.
HOLD_CLAIM_SECONDS = 60.0
_RECIPIENTS = cast(Table, Recipient.__table__)
_STATUS_OF = f"SELECT status FROM {_RECIPIENTS.name} WHERE id = ?"
_RECORD = update(_RECIPIENTS).where(_RECIPIENTS.c.id == bindparam("rid")).values(
    status=bindparam("new_status"), reply=bindparam("new_reply"), attempts=_RECIPIENTS.c.attempts + 1)
_RECORD_SENT = _RECORD.values(sent_at=bindparam("new_sent_at"))

Claimed = tuple[int, str, str, str, bool]  # a claimed recipient: id, address, name, token, tracked


def _claim_statement() -> ReturningUpdate[tuple[int, str, str, str, bool]]:
    # Materialized: PostgreSQL may otherwise run a LIMIT subquery once per row it updates, and
    # claim more than the batch.
    pending = _RECIPIENTS.alias("pending")
    candidates = (select(pending.c.id).where(pending.c.email_id == bindparam("eid"), pending.c.status == "pending")
                  .limit(bindparam("size")).with_for_update(skip_locked=True)
                  .cte("candidates").prefix_with("MATERIALIZED"))
    return (update(_RECIPIENTS).where(_RECIPIENTS.c.id.in_(select(candidates.c.id)), _RECIPIENTS.c.status == "pending")
            .values(status="sending", claimed_at=bindparam("now"))
            .returning(_RECIPIENTS.c.id, _RECIPIENTS.c.address, _RECIPIENTS.c.name, _RECIPIENTS.c.token,
                       _RECIPIENTS.c.tracked))


# Built once: the worker runs them for every batch.
_CLAIM = _claim_statement()
_EMAIL_SENDING = (update(Email).where(Email.id == bindparam("eid"), Email.status == "queued")
                  .values(status="sending"))


def claim_batch(session: Session, email_id: int, size: int) -> list[Claimed]:
    """Up to ``size`` of the email's pending recipients, now ``sending``, in one transaction.

    One conditional UPDATE, so any number of workers on any number of hosts never claim the same
    recipient: a row counts only while it is still pending (PostgreSQL re-checks a row another
    transaction changed meanwhile; SQLite has one writer at a time), and SKIP LOCKED lets
    concurrent workers take the next rows instead of waiting for each other's."""
    connection = session.connection()
    while claimed := connection.execute(_CLAIM, {"eid": email_id, "size": size, "now": utcnow()}).all():
        # Opted out since the email was written (a scheduled or queued send): skipped, not sent.
        stopped = suppression.suppressed(session, [row.address for row in claimed])
        if stopped:
            connection.execute(update(_RECIPIENTS).where(_RECIPIENTS.c.id.in_(
                [row.id for row in claimed if suppression.key(row.address) in stopped]))
                .values(status="skipped", reply=OPTED_OUT, claimed_at=None))
            claimed = [row for row in claimed if suppression.key(row.address) not in stopped]
        if claimed:
            connection.execute(_EMAIL_SENDING, {"eid": email_id})
            break
    session.commit()
    return sorted((row.id, row.address, row.name, row.token, row.tracked) for row in claimed)


@dataclass
class _Delivery:
    """One email's delivery over one or more connections, each claiming and recording its own batches."""

    session_factory: Callable[[], Session]
    email_id: int
    from_address: str
    bounce_address: str  # "": bounces go to the From address
    messages: Messages
    limit: int | None  # recipients still to claim (None: all)
    on_progress: Callable[[int], None] | None
    stop: threading.Event
    turn_ends: float | None  # time.monotonic() when this turn is over (None: when all are sent)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def run(self, senders: Sequence[SmtpSender]) -> list[DeliveryReport]:
        if len(senders) == 1:
            return [self.over(senders[0])]
        reports: list[DeliveryReport] = []
        errors: list[BaseException] = []

        def connection(sender: SmtpSender) -> None:
            try:
                report = self.over(sender)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)
            else:
                reports.append(report)

        threads = [threading.Thread(target=connection, args=(sender,), name=f"coretrack-smtp-{number}")
                   for number, sender in enumerate(senders, start=1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return reports

    def _take(self, most: int) -> int:
        with self.lock:
            if self.limit is None:
                return most
            taken = min(most, self.limit)
            self.limit -= taken
            return taken

    def _give_back(self, count: int) -> None:
        with self.lock:
            if self.limit is not None:
                self.limit += count

    def _turn_over(self) -> bool:
        return self.turn_ends is not None and time.monotonic() >= self.turn_ends

    def _progress(self) -> None:
        if self.on_progress is not None:
            with self.lock:  # a progress bar is not made for several threads
                self.on_progress(1)

    def over(self, sender: SmtpSender) -> DeliveryReport:
        """Claim, send and record batches over this connection until none is left."""
        report = DeliveryReport()
        with self.session_factory() as session:
            # The check before each message reads outside any transaction: while the mail server
            # takes its time, none of ours stays open to hold up a schema change (which waits for
            # every open transaction on its table, and makes all other queries wait behind it) or
            # VACUUM.  The session opens one only to claim a batch and to record it.
            with session.get_bind().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as checks:
                while not self.stop.is_set():
                    size = self._take(BATCH_SIZE)
                    batch = claim_batch(session, self.email_id, size) if size else []
                    self._give_back(size - len(batch))
                    if not batch:
                        break
                    self._send_batch(session, checks, sender, batch, report)
                    if self._turn_over():  # (after one batch at least: a turn always sends something)
                        break
        return report

    def _send_batch(self, session: Session, checks: Connection, sender: SmtpSender, batch: list[Claimed],
                    report: DeliveryReport) -> None:
        outcomes: list[dict[str, object]] = []
        handled: set[int] = set()
        started = time.monotonic()
        message_of = self.messages.for_batch(session, [claimed[0] for claimed in batch])
        session.commit()  # what was read is in hand
        # The driver's own cursor: this check runs before every message, and SQLAlchemy's layers
        # would cost it several times what the database does.
        cursor = checks.connection.cursor()
        status_of = _STATUS_OF.replace("?", "%s") if checks.dialect.paramstyle != "qmark" else _STATUS_OF
        try:
            for recipient_id, address, name, token, tracked in batch:
                # (One message at least per batch, so a slow server still gets them all in the end.)
                if self.stop.is_set() or handled and (time.monotonic() - started > HOLD_CLAIM_SECONDS
                                                      or self._turn_over()):
                    break
                handled.add(recipient_id)
                # Cancelled since the claim (or declared interrupted): no longer this worker's to send.
                cursor.execute(status_of, (recipient_id,))
                if cursor.fetchone() != ("sending",):
                    continue
                # The envelope sender: each recipient's own signed return path when bounces are read.
                return_path = verp_address(self.bounce_address, token) if self.bounce_address else self.from_address
                try:
                    template = message_of(recipient_id, tracked)
                except MessageError as exc:  # this recipient's own fields cannot go into a message
                    outcome = {"rid": recipient_id, "new_status": "failed", "new_reply": f"not sent: {exc}"}
                else:
                    outcome = _send_one(sender, template, return_path, recipient_id, address, name, token)
                outcomes.append(outcome)
                if outcome["new_status"] == "sent":
                    report.sent += 1
                else:
                    report.failed += 1
                self._progress()
        finally:
            cursor.close()
            unsent = [claimed[0] for claimed in batch if claimed[0] not in handled]
            skipped = list(handled.difference(outcome["rid"] for outcome in outcomes))
            _record(session, self.email_id, outcomes, unsent, skipped)


def _send_one(sender: SmtpSender, template: MessageTemplate, from_address: str, recipient_id: int, address: str,
              name: str, token: str) -> dict[str, object]:
    """Hand one message over; its outcome as the parameters of _RECORD."""
    try:
        reply = sender.send(from_address, address, template.render(address, name, token))
    except DeliveryError as exc:
        return {"rid": recipient_id, "new_status": "failed", "new_reply": str(exc)}
    except MessageError as exc:
        return {"rid": recipient_id, "new_status": "failed", "new_reply": f"not sent: {exc}"}
    except Exception as exc:  # a bug must not leave the recipient claimed forever
        log.exception("sending to recipient %s failed", recipient_id)
        return {"rid": recipient_id, "new_status": "failed", "new_reply": f"internal error: {exc.__class__.__name__}"}
    return {"rid": recipient_id, "new_status": "sent", "new_reply": reply, "new_sent_at": utcnow()}


def _record(session: Session, email_id: int, outcomes: list[dict[str, object]], unsent: list[int],
            skipped: list[int]) -> None:
    """A batch's outcomes, its unsent recipients back to pending and the claims of those cancelled
    meanwhile released (see delete_email), in one transaction.

    Outcomes are written whatever the row says now: a message the server took is sent even if a
    cancel came while it was being handed over.  A failed write is tried again (PostgreSQL may pick
    this transaction as a deadlock victim against a cancel; SQLite's busy wait may run out)."""
    sent = [outcome for outcome in outcomes if outcome["new_status"] == "sent"]
    failed = [outcome for outcome in outcomes if outcome["new_status"] != "sent"]
    rows = sorted({*(cast(int, outcome["rid"]) for outcome in outcomes), *unsent, *skipped})
    for attempt in (1, 2, 3):
        try:
            connection = session.connection()
            _lock_in_order(session, Recipient.id.in_(rows))
            if sent:
                connection.execute(_RECORD_SENT, sent)
                connection.execute(update(Email).where(Email.id == email_id, Email.sent_at.is_(None))
                                   .values(sent_at=sent[0]["new_sent_at"]))
            if failed:
                connection.execute(_RECORD, failed)
            if unsent:
                connection.execute(update(Recipient).where(Recipient.id.in_(unsent), Recipient.status == "sending")
                                   .values(status="pending", claimed_at=None))
            if skipped:
                connection.execute(update(Recipient).where(Recipient.id.in_(skipped), Recipient.status == "cancelled")
                                   .values(claimed_at=None))
            session.commit()
            return
        except DBAPIError:
            session.rollback()
            if attempt == 3:
                raise
            log.warning("recording the outcome of %s messages failed; trying again", len(outcomes), exc_info=True)
            time.sleep(attempt)


def _lock_in_order(session: Session, rows: ColumnElement[bool]) -> None:
    """Lock these recipient rows in id order (PostgreSQL; SQLite has one writer at a time).  A
    worker recording its batch and a cancel both write claimed rows: taking them in one order,
    neither can hold a row the other waits for while waiting for one the other holds."""
    session.execute(select(Recipient.id).where(rows).order_by(Recipient.id).with_for_update()).all()


def _end_pending(session: Session, email_id: int, *, claimed: bool = False, **values: object) -> int:
    """Every recipient of the email not yet claimed by a worker gets ``values``; returns how many.
    ``claimed``: also those a live worker has claimed but not yet handed over (it checks each
    recipient just before handing it over, and leaves one that changed).

    A worker claims recipients with ``UPDATE ... WHERE status = 'pending'``, so one that had
    already listed them finds nothing left to claim."""
    selected = Recipient.status == "pending"
    if claimed:
        selected = or_(selected, and_(Recipient.status == "sending", Recipient.claimed_at >= utcnow() - STALE_AFTER))
        _lock_in_order(session, and_(Recipient.email_id == email_id, selected))
    count = changed_rows(session, update(Recipient).where(Recipient.email_id == email_id, selected).values(**values))
    session.commit()
    return count


# Scheduling: a time a minute gone is "now" (the form took that long); a year ahead at most.
SCHEDULE_SLACK = timedelta(minutes=1)
MAX_SCHEDULE = timedelta(days=366)


def is_due(send_at: datetime | None) -> bool:
    return send_at is None or send_at <= utcnow()


def send_or_queue(session_factory: Callable[[], Session], config: Config, email_id: int, pending: int,
                  send_at: datetime | None = None) -> bool:
    """Small sends go out within the request; larger and scheduled ones stay queued for the worker.
    True if sent now."""
    if pending == 0 or pending > config.inline_send_limit or not is_due(send_at):
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
    count = changed_rows(session, statement.values(status="pending", reply="", claimed_at=None))
    session.commit()
    refresh_status(session, email_id)
    session.expire_all()
    return count


# -- cancel and delete ---------------------------------------------------------------------


class InFlight(Exception):
    """The email still has messages to hand to the mail server, or one being handed over."""


def cancel(session: Session, email_id: int, user_name: str) -> int:
    """The recipients not yet handed to the mail server become cancelled, also those a worker has
    claimed; returns how many.  A message being handed over right now still goes out (it cannot be
    called back) and is recorded as sent."""
    count = _end_pending(session, email_id, claimed=True, status="cancelled",
                         reply=f"cancelled by {user_name} before it was sent")
    refresh_status(session, email_id)
    session.expire_all()
    return count


def delete_email(session: Session, config: Config, email_id: int) -> None:
    """Delete an email with its recipients, their access events and its attachments (rows and files);
    InFlight, and nothing deleted, while a recipient is pending or being sent."""
    storage_names = list(session.scalars(select(Attachment.storage_name).where(Attachment.email_id == email_id)))
    # Recipients first, except those a worker may claim or is sending: a row that turns pending
    # meanwhile (a retry) is re-checked by PostgreSQL and kept, and then the whole delete is refused.
    # A recipient cancelled after a worker claimed it stays in flight until that worker has recorded
    # its batch (and cleared the claim): it may be the message being handed over.
    cancelled_in_flight = and_(Recipient.status == "cancelled", Recipient.claimed_at >= utcnow() - STALE_AFTER)
    session.execute(
        delete(Recipient).where(Recipient.email_id == email_id, Recipient.status.not_in(("pending", "sending")),
                                or_(Recipient.claimed_at.is_(None), ~cancelled_in_flight)),
        execution_options={"synchronize_session": False},
    )
    if session.scalar(select(func.count()).select_from(Recipient).where(Recipient.email_id == email_id)):
        session.rollback()
        raise InFlight("it is still being sent: cancel it first")
    session.execute(delete(Email).where(Email.id == email_id), execution_options={"synchronize_session": False})
    session.commit()  # access events and attachment rows go with their recipient or email (ON DELETE CASCADE)
    session.expire_all()
    for name in storage_names:
        (config.attachments_dir / name).unlink(missing_ok=True)


# -- the worker -----------------------------------------------------------------------------


def emails_to_deliver(session: Session) -> list[int]:
    """Emails with pending or interrupted recipients, or a status that no longer matches them."""
    now = utcnow()
    stale = and_(Recipient.status == "sending", Recipient.claimed_at < now - STALE_AFTER)
    due = or_(Email.send_at.is_(None), Email.send_at <= now)
    with_work = (select(Recipient.email_id).join(Email, Email.id == Recipient.email_id)
                 .where(or_(Recipient.status == "pending", stale), due))
    unfinished = select(Email.id).where(Email.status.in_(("queued", "sending")), due)
    return sorted(set(session.scalars(with_work.distinct())) | set(session.scalars(unfinished)))
