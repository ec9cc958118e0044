"""Send a test to me: one message of an email not yet sent, to the sending user's own address, with
one chosen recipient's merge values.  It is marked as a test (the subject starts "[Test]", a line
at the top says so) and counted nowhere: no email row, no recipient, no token, no tracking image,
no rewritten link and no unsubscribe link, so nothing in it can count or opt anyone out."""

from __future__ import annotations

import html as html_lib

from sqlalchemy.orm import Session

from ..config import Config
from ..models import User
from ..settings import SettingsService
from ..validation import ValidationError, clean_address
from . import merge_fields
from .bodies import insert_at_start
from .compose import PlannedRecipient, PreparedEmail
from .mime import MessageError, MessageTemplate
from .preview import as_recipient
from .senders import own_name
from .smtp import DeliveryError, SmtpSender

TEST_PREFIX = "[Test] "


def banner_of(recipient: PlannedRecipient) -> str:
    who = f"{recipient.name} <{recipient.address}>" if recipient.name else recipient.address
    return (f"Test message, sent only to you: as {who} will get it. Nothing in it is counted or tracked, "
            "and the unsubscribe link is left out.")


def send_test(session: Session, config: Config, user: User, prepared: PreparedEmail,
              recipient: PlannedRecipient) -> str:
    """Send the test to ``user``'s own address; the address it went to, or ValidationError (key
    ``test``, or the field a message cannot carry) saying why not."""
    try:
        to_address = clean_address(user.email)
    except ValueError:
        raise ValidationError({"test": "add your email address on your Account page: a test goes there"}) from None
    settings = SettingsService(session, config)
    from_address = prepared.from_address or settings.get("from_address")
    from_name = prepared.from_name if prepared.from_address else settings.get("from_name")
    subject, html, text = prepared.subject, prepared.html, prepared.text
    if merge_fields.has_fields(subject, html, text):
        filled = as_recipient(prepared, user, recipient)
        subject, html, text = filled.subject, filled.html, filled.text
    banner = banner_of(recipient)
    html = insert_at_start(html, f'<p class="test-banner" style="padding:8px;background:#fff3cd;color:#664d03;'
                                 f'border:1px solid #ffe69c">{html_lib.escape(banner)}</p>\n')
    if text.strip():
        text = f"{banner}\n\n{text}"
    try:
        template = MessageTemplate(from_address=from_address, from_name=from_name, reply_to=prepared.reply_to,
                                   subject=f"{TEST_PREFIX}{subject}", html=html, text=text,
                                   attachments=prepared.attachments)
        message = template.render(to_address, own_name(user))
    except MessageError as exc:
        raise ValidationError({exc.field: str(exc)}) from None
    with SmtpSender(settings.smtp_server(), settings.dkim_signer(from_address)) as sender:
        try:
            sender.send(from_address, to_address, message)
        except DeliveryError as exc:
            raise ValidationError({"test": f"the test was not sent: {exc}"}) from None
    return to_address
