"""The messages of a stored email, as the worker builds them: the parts read once from the email
(``MessageParts``), then one serialised MIME shared by all recipients (``SharedMessages``) or, with
merge fields, each recipient's own (``Personaliser``).

Each in two variants, as measuring.py decides per recipient when the message goes: tracked (the
personal image, rewritten links, the withdrawal link) and unmeasured (the links as written, and the
email's anonymous image or no image at all); a consent request's messages are all unmeasured and
carry the consent link."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from ..attachments import AttachmentData, attachment_path
from ..config import Config
from ..models import Account, Contact, Email, EmailLink, Lead, Recipient, Record, User
from ..settings import SettingsService
from ..tracking import anonymous
from ..tracking.image import TRACK_ACCESS_PATH
from . import limits, merge_fields
from .mime import MessageError, MessageTemplate, mass_list_id


@dataclass(frozen=True)
class MessageParts:
    """What MessageTemplate builds an email's MIME from."""

    from_address: str
    from_name: str
    reply_to: str
    subject: str
    html: str
    text: str
    attachments: list[AttachmentData]
    public_url: str | None  # None: not tracked (no image, no link rewritten)
    sendgrid_tag: bool
    secret: bytes
    links: Sequence[str]
    unsubscribe_url: str | None
    unsubscribe_footer: str
    consent_request: bool = False  # each message carries its recipient's consent link
    anonymous_image: str = ""  # the email's anonymous image, for the unmeasured variant (else none)
    image_url: str = ""  # that image's URL, whichever variant this is
    list_id: str = ""  # a mass send's List-Id

    def template(self) -> MessageTemplate:
        return MessageTemplate(
            from_address=self.from_address, from_name=self.from_name, reply_to=self.reply_to, subject=self.subject,
            html=self.html, text=self.text, attachments=self.attachments, public_url=self.public_url,
            sendgrid_tag=self.sendgrid_tag, secret=self.secret, links=self.links,
            unsubscribe_url=self.unsubscribe_url, unsubscribe_footer=self.unsubscribe_footer,
            consent_request=self.consent_request, anonymous_image=self.anonymous_image, list_id=self.list_id,
        )

    def unmeasured(self) -> MessageParts:
        """The parts of the email's unmeasured messages: no personal image, no link rewritten, and
        the anonymous image if the email carries one."""
        return replace(self, public_url=None, links=(), anonymous_image=self.image_url)


def message_parts(session: Session, config: Config, email: Email, tracked: bool = True,
                  anonymous_image: bool = False) -> MessageParts:
    """What MessageTemplate builds the email's MIME from, for its tracked recipients (or, ``tracked``
    False, the others; ``anonymous_image``: theirs carry the email's anonymous image); MessageError
    naming what cannot be put into a message."""
    settings = SettingsService(session, config)
    install_url = settings.get("public_url")
    public_url = install_url if email.tracking and not email.asks_consent else None
    image_url = (f"{install_url.rstrip('/')}{TRACK_ACCESS_PATH}?t={anonymous.token(config.secret_key(), email.id)}"
                 if anonymous_image and public_url is not None else "")
    files = []
    for attachment in email.attachments:
        try:
            data = attachment_path(config, attachment).read_bytes()
        except OSError as exc:
            trouble = "is missing from" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror}) in"
            raise MessageError("attachments", f"the file of the attachment {attachment.filename!r} {trouble} "
                                              "the attachments folder") from None
        files.append(AttachmentData(attachment.filename, attachment.content_type, data))
    parts = MessageParts(
        from_address=email.from_address, from_name=email.from_name, reply_to=email.reply_to,
        subject=email.subject, html=email.html_body, text=email.text_body, attachments=files, public_url=public_url,
        sendgrid_tag=settings.get("smtp_preset") == "sendgrid", secret=config.secret_key(),
        links=session.scalars(select(EmailLink.url).where(EmailLink.email_id == email.id)
                              .order_by(EmailLink.position)).all() if public_url else (),
        unsubscribe_url=install_url, unsubscribe_footer=settings.get("unsubscribe_footer"),
        consent_request=email.asks_consent, image_url=image_url,
        list_id=mass_list_id(email.from_address) if email.mass_send else "",
    )
    return parts if tracked else parts.unmeasured()


def message_template(session: Session, config: Config, email: Email, tracked: bool = True,
                     anonymous_image: bool = False) -> MessageTemplate:
    """The email's MIME (see message_parts), serialised once for all its recipients."""
    return message_parts(session, config, email, tracked, anonymous_image).template()


# A batch's message for each of its recipients: by recipient id and Recipient.tracked.
MessageOf = Callable[[int, bool], MessageTemplate]


class Messages(Protocol):
    """How the worker gets each recipient's message."""

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        """The batch's messages (the callable raises MessageError for a recipient whose message cannot be made)."""
        ...


class SharedMessages:
    """The messages of an email without merge fields: one for all tracked recipients, one for the
    unmeasured, each serialised once."""

    def __init__(self, session: Session, config: Config, email: Email, anonymous_image: bool):
        parts = message_parts(session, config, email, anonymous_image=anonymous_image)
        self.templates = {False: parts.unmeasured().template()}
        self.templates[True] = parts.template() if parts.public_url is not None else self.templates[False]

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        return lambda recipient_id, tracked: self.templates[tracked]


class Personaliser:
    """The messages of an email with merge fields: each recipient's own subject and bodies
    (merge_fields.render) from their record, as it is when the message goes, and the sender's account.
    Recipients whose fields come out the same share one serialised message."""

    CACHED = 64  # messages kept for recipients whose fields come out the same

    def __init__(self, session: Session, config: Config, email: Email, anonymous_image: bool):
        parts = message_parts(session, config, email, anonymous_image=anonymous_image)
        self.parts = {True: parts, False: parts.unmeasured()}
        self.sender = merge_fields.sender_values(session.get(User, email.sender_id) if email.sender_id else None)
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
            values[recipient_id] = merge_fields.values_for(record, self.sender)
        return values

    def for_batch(self, session: Session, recipient_ids: Sequence[int]) -> MessageOf:
        values = self.values(session, recipient_ids)
        return lambda recipient_id, tracked: self.template(tracked, values[recipient_id])

    def template(self, tracked: bool, values: dict[str, str]) -> MessageTemplate:
        """This recipient's message; MessageError when their values cannot go into one."""
        parts = self.parts[tracked]
        rendered = merge_fields.render(parts.subject, parts.html, parts.text, values)
        for field_name, label, body in (("html", "HTML body", rendered.html), ("text", "text body", rendered.text)):
            if problem := limits.body_problem(body, f"{label} filled with this recipient's merge fields"):
                raise MessageError(field_name, problem)
        key = (tracked, rendered.subject, rendered.html, rendered.text)
        with self.lock:
            template = self.cache.get(key)
        if template is None:
            template = replace(parts, subject=rendered.subject, html=rendered.html, text=rendered.text).template()
            with self.lock:
                if len(self.cache) >= self.CACHED:
                    self.cache.clear()
                self.cache[key] = template
        return template


def messages_for(session: Session, config: Config, email: Email, anonymous_image: bool) -> Messages:
    """The email's messages: each recipient's own when it has merge fields, else one shared;
    ``anonymous_image``: the unmeasured ones carry the email's anonymous image."""
    personal = merge_fields.has_fields(email.subject, email.html_body, email.text_body)
    return (Personaliser if personal else SharedMessages)(session, config, email, anonymous_image)
