"""Composing tracked email: ``prepare`` validates everything and resolves the recipients, saving
nothing (a ``PreparedEmail``); ``compose`` writes the prepared email, one recipient per address (each
with its own token) and the attachments in one transaction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..attachments import AttachmentData, attachment_data, files_or_nothing, store_file
from ..config import Config
from ..models import (
    RECIPIENT_KINDS,
    Account,
    Attachment,
    Contact,
    Email,
    EmailLink,
    Lead,
    Recipient,
    Record,
    User,
    utcnow,
)
from ..people import consent, erasure, suppression
from ..records.addresses import recipient_for, records_with_address
from ..records.search import Audience, parse_reference
from ..sanitize import clean_html
from ..settings import SettingsService
from ..tracking import clicks, tokens
from ..validation import ValidationError, check_text, clean_address, clean_mail_text, mail_problem
from . import limits
from .bodies import add_signature
from .mime import MessageError, MessageTemplate

OPTED_OUT = "opted out of email"
ERASED = "erased on request: not sent"
# Scheduling: a time a minute gone is "now" (the form took that long); a year ahead at most.
SCHEDULE_SLACK = timedelta(minutes=1)
MAX_SCHEDULE = timedelta(days=366)


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
class PreparedEmail:
    """A validated email, not yet saved: what the preview shows and what ``compose`` writes."""

    subject: str
    html: str
    text: str
    reply_to: str
    recipients: list[PlannedRecipient]
    attachments: list[AttachmentData]
    send_at: datetime | None = None  # UTC; None: now
    track: bool = True  # False: "Don't track this email" (no recipient's message is tracked)
    asks_consent: bool = False  # "Ask for tracking consent": each message carries its consent link, none tracked
    left_out: list[LeftOut] = field(default_factory=list)  # an audience's records without an own message
    audience_size: int = 0  # records the audience named
    from_address: str = ""  # empty: the install's (the settings'); else senders.sender_of's
    from_name: str = ""

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
        reference = parse_reference(entry)
        found = recipient_for(session, *reference) if reference else None
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
        matches = records_with_address(session, address)
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


def is_tracked(email: Email, planned: PlannedRecipient, policy: str, consents: dict[str, str]) -> bool:
    """Whether this recipient's message would be tracked if it went now, kept as Recipient.tracked
    until it goes: the decision itself is made then (measuring.py), with the consents and records as
    they are then.  Tracking on for the install and this email, no consent asked, no record with the
    address asking not to be tracked, and the policy measuring the address's consent (``consents``:
    consent.states)."""
    return (email.tracking and not email.asks_consent and not planned.do_not_track
            and consent.measured(policy, consents.get(suppression.key(planned.address), "")))


def check_message(subject: str, html: str, text: str, errors: dict[str, str]) -> str:
    """An email's subject as it is kept (one line for the header), the problems of the subject and
    bodies added to ``errors`` by field: what a sent email and a template both need, the size
    limits (limits.py) included."""
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
    audience: Audience | None = None,
    asks_consent: bool = False,
) -> PreparedEmail:
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
    return PreparedEmail(subject, html, text, reply_to, recipients, files, send_at, track, asks_consent, left_out,
                         audience_size)


def _check_buildable(prepared: PreparedEmail, email: Email, public_url: str | None, links: list[str],
                     settings: SettingsService) -> None:
    """Build the message with the sender's own code, so that nothing is saved that the worker
    could not send; ValidationError naming the field for whatever the checks above let through."""
    try:
        template = MessageTemplate(
            from_address=email.from_address, from_name=email.from_name, reply_to=prepared.reply_to,
            subject=prepared.subject, html=prepared.html, text=prepared.text, attachments=prepared.attachments,
            public_url=public_url, links=links, unsubscribe_url=settings.get("public_url"),
            unsubscribe_footer=settings.get("unsubscribe_footer"), consent_request=prepared.asks_consent,
        )
    except MessageError as exc:
        if exc.field.startswith("from_"):  # not on the form: the settings hold them
            raise ValidationError({"from": f"{exc} (an administrator can correct it in the settings)"}) from None
        raise ValidationError({exc.field: str(exc)}) from None
    for planned in prepared.recipients:
        try:
            template.to_header(planned.address, planned.name)
        except MessageError as exc:
            raise ValidationError({planned.kind: f"{planned.address}: {exc}"}) from None


def compose(session: Session, config: Config, sender: User, prepared: PreparedEmail) -> ComposeResult:
    """Save a prepared email, its recipients and attachments in one transaction (status queued),
    once the sender's own code has shown that the worker can build it."""
    settings = SettingsService(session, config)
    secret = config.secret_key()
    email = Email(
        subject=prepared.subject, html_body=prepared.html, text_body=prepared.text, sender_id=sender.id,
        from_address=prepared.from_address or settings.get("from_address"),
        from_name=prepared.from_name if prepared.from_address else settings.get("from_name"),
        reply_to=prepared.reply_to,
        status="queued", send_at=prepared.send_at, asks_consent=prepared.asks_consent,
        mass_send=prepared.audience_size > 0,
        # A consent request measures nobody's reading: not even the email's anonymous image.
        tracking=settings.tracking_enabled and prepared.track and not prepared.asks_consent,
    )
    public_url = settings.get("public_url") if email.tracking else None
    # The links a click is recorded for (and redirected to), kept as they were written.
    links = clicks.trackable_links(prepared.html, public_url) if public_url else []
    _check_buildable(prepared, email, public_url, links, settings)
    email.links = [EmailLink(position=position, url=url) for position, url in enumerate(links)]
    addresses = [planned.address for planned in prepared.recipients]
    gone = erasure.erased(session, secret, addresses)
    policy, consents = settings.get("tracking_policy"), consent.states(session, addresses) if email.tracking else {}
    # Plain rows, inserted in one executemany below: ORM objects would be one INSERT each, and a
    # mass send has thousands.
    rows = []
    for planned in prepared.recipients:
        if planned.address in gone and not planned.skip_reason:
            planned = replace(planned, skip_reason=ERASED)
        rows.append({
            "address": planned.address, "name": planned.name, "kind": planned.kind, "token": tokens.new_token(secret),
            "contact_id": planned.record.id if isinstance(planned.record, Contact) else None,
            "account_id": planned.record.id if isinstance(planned.record, Account) else None,
            "lead_id": planned.record.id if isinstance(planned.record, Lead) else None,
            "status": "skipped" if planned.skip_reason else "pending", "reply": planned.skip_reason,
            "tracked": is_tracked(email, planned, policy, consents),
        })
    pending = sum(row["status"] == "pending" for row in rows)
    with files_or_nothing(session) as written:
        for attachment in prepared.attachments:
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
