"""What one recipient received: their message built again, on demand, by the code that sent it
(messages.py: the stored email, their merge values, their token and link signatures), then read back
as a mail client reads it.  Nothing is written: only the view (``inert``) keeps the staff member
looking at it from counting as that recipient."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy

from sqlalchemy.orm import Session

from ..config import Config
from ..models import Email, Recipient
from ..tracking.image import TRACK_ACCESS_PATH
from . import merge_fields
from .messages import Personaliser, message_template

# A tracking image (the recipient's own or the email's anonymous one) as bodies.image_tag writes it.
_TRACKING_IMAGE = re.compile(r'<img\b[^>]*\bsrc="[^"]*' + re.escape(TRACK_ACCESS_PATH) + r'[^"]*"[^>]*>',
                             re.IGNORECASE)
_LINK_START = re.compile(r"<a\b", re.IGNORECASE)
_HREF = re.compile(r'<a\b[^>]*?\bhref="([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True)
class Received:
    """One recipient's message as their mail client shows it."""

    from_header: str
    to_header: str
    reply_to: str
    subject: str
    html: str  # as it arrived: the image and every link with the recipient's token
    text: str
    links: list[str]  # every link's address as it arrived, in order

    @property
    def inert(self) -> str:
        """The HTML to show staff: without its tracking image, and each link opening a new window,
        which the sandboxed frame refuses, so that looking counts no open and no click."""
        html = _TRACKING_IMAGE.sub("", self.html)
        return _LINK_START.sub('<a target="_blank" rel="noopener noreferrer"', html)


def received(session: Session, config: Config, email: Email, recipient: Recipient) -> Received:
    """The message ``recipient`` got (or, not sent, would get): the variant measuring.py chose
    (``recipient.tracked``), merge fields filled from their record as it is now; MessageError when
    it cannot be built."""
    if merge_fields.has_fields(email.subject, email.html_body, email.text_body):
        personaliser = Personaliser(session, config, email, anonymous_image=False)
        values = personaliser.values(session, [recipient.id])[recipient.id]
        template = personaliser.template(recipient.tracked, values)
    else:
        template = message_template(session, config, email, tracked=recipient.tracked)
    raw = template.render(recipient.address, recipient.name, recipient.token)
    message = message_from_bytes(raw, policy=policy.default)
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    html = str(html_part.get_content()) if html_part is not None else ""
    return Received(
        from_header=str(message["From"] or ""), to_header=str(message["To"] or ""),
        reply_to=str(message["Reply-To"] or ""), subject=str(message["Subject"] or ""), html=html,
        text=str(text_part.get_content()) if text_part is not None else "",
        links=[link.replace("&amp;", "&") for link in _HREF.findall(html)],
    )
