"""Sending an email: the one use case behind the compose form (views/emails.py), the JSON API
(views/api.py) and ``coretrack send`` (cli.py), which only parse their input into a ``NewEmail`` and
show the ``SendOutcome``.  It is prepared (checked, recipients resolved), composed (saved), then
sent now or queued for the worker."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from ..config import Config
from ..models import Email, EmailDraft, EmailTemplate, Recipient, User
from ..records.search import Audience
from ..settings import SettingsService
from ..validation import ValidationError
from . import drafts
from .compose import ComposeResult, PreparedEmail, compose, prepare
from .delivery import DeliveryReport, deliver, is_due, send_or_queue
from .senders import sender_of
from .templates import attachments_of


@dataclass(frozen=True)
class NewEmail:
    """What any caller may ask to send; the addresses are entries of the To, Cc and Bcc fields
    (an address or a record reference such as ``contact:12``)."""

    subject: str
    html: str
    text: str = ""
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: str = ""
    attachments: Sequence[tuple[str, str, bytes]] = ()  # (file name, content type, data) as uploaded
    template: EmailTemplate | None = None  # written from this template: its attachments go first
    audience: Audience | None = None  # a mass send: one message to each of its records
    send_at: datetime | None = None  # UTC; None: now
    track: bool = True  # False: "Don't track this email"
    # "Ask for tracking consent": each message carries its recipient's consent link and none is
    # tracked (also when written from a template that asks for it).
    asks_consent: bool = False
    signature: bool = False  # the sender's signature at the end of both bodies
    draft: EmailDraft | None = None  # the saved draft it was written in: deleted once the email is saved
    from_me: bool = False  # "Send as me": from the sender's own name and address (senders.py)


# How a caller that waits for the whole delivery shows it (the command line's progress bar): given
# the saved email, a context around its delivery that yields what to call after each message.
Progress = Callable[[ComposeResult], AbstractContextManager[Callable[[int], None]]]


@dataclass
class SendOutcome:
    email: Email
    pending: int  # recipients with a message to deliver
    skipped: list[Recipient]  # opted out or erased: no message
    sent_now: bool  # delivered within the call (else queued for the worker, or nothing to send)
    report: DeliveryReport | None = None  # what that delivery did


def prepare_new(session: Session, config: Config, sender: User, new: NewEmail,
                problems: Mapping[str, str] | None = None) -> PreparedEmail:
    """The email checked and its recipients resolved, nothing saved (what the form's preview shows);
    ValidationError lists every problem, ``problems`` (the caller's, from parsing its input) among them."""
    errors = dict(problems or {})
    try:
        sent_from = sender_of(SettingsService(session, config), sender, new.from_me)
    except ValueError as exc:
        errors["from_me"] = str(exc)
        sent_from = None
    attachments = list(new.attachments)
    if new.template is not None:
        try:
            attachments = attachments_of(config, new.template) + attachments
        except ValidationError as exc:
            errors.update(exc.errors)
    try:
        prepared = prepare(
            session, to=new.to, cc=new.cc, bcc=new.bcc, subject=new.subject, html=new.html, text=new.text,
            # Send as me: replies go to the sender unless another Reply-To is given.
            reply_to=new.reply_to or (sent_from.address if sent_from and sent_from.own else ""),
            attachments=attachments,
            signature_html=sender.signature_html if new.signature else "", send_at=new.send_at, track=new.track,
            audience=new.audience,
            asks_consent=new.asks_consent or (new.template is not None and new.template.asks_consent),
        )
    except ValidationError as exc:
        raise ValidationError({**exc.errors, **errors}) from None
    if errors or sent_from is None:
        raise ValidationError(errors)
    return replace(prepared, from_address=sent_from.address, from_name=sent_from.name)


def send(session: Session, session_factory: Callable[[], Session], config: Config, sender: User, new: NewEmail, *,
         problems: Mapping[str, str] | None = None, deliver_all: bool = False,
         progress: Progress | None = None) -> SendOutcome:
    """Prepare, compose and send the email; ValidationError (nothing saved) lists every problem.

    A due email goes out within the call when it is small (config.inline_send_limit) or when the
    caller waits for all of it (``deliver_all``: the command line, which shows it with ``progress``);
    a larger or scheduled one stays queued for the worker."""
    result = compose(session, config, sender, prepare_new(session, config, sender, new, problems))
    if new.draft is not None:
        drafts.delete(session, new.draft)  # sent: no longer a draft
    email_id, report = result.email.id, None
    if deliver_all:
        sent_now = result.pending > 0 and is_due(result.email.send_at)
        if sent_now:
            with (progress(result) if progress else nullcontext(None)) as on_progress:
                report = deliver(session_factory, config, email_id, on_progress=on_progress)
    else:
        sent_now = send_or_queue(session_factory, config, email_id, result.pending, result.email.send_at)
    session.expire_all()  # delivered, maybe, by another session
    return SendOutcome(result.email, result.pending, result.skipped, sent_now, report)
