"""Outgoing MIME: built once per email, filled in per recipient.

Building and serialising an ``EmailMessage`` per recipient is the slow part
of a large send (scripts/bench-mime times it against this template), so
``MessageTemplate`` serialises the message once, with random placeholders
wherever the recipient's token goes (the tracking image, each rewritten link,
the unsubscribe, withdrawal and consent links in both bodies and the
List-Unsubscribe header) and where
each link's signature goes, and ``render`` only puts the per-recipient headers
(To, Date, Message-ID) in front and the token and signatures into the
placeholders.  Tokens and signatures have a fixed length and an alphabet that
quoted-printable leaves as is, so the swap keeps every line as long as it was;
a soft line break (``=\\r\\n``) may fall inside a placeholder and is kept.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.headerregistry import Address, BaseHeader
from email.message import EmailMessage
from email.utils import format_datetime
from typing import cast

from ..attachments import AttachmentData
from ..delivery_reports import sendgrid
from ..tracking import clicks, tokens
from ..validation import clean_address, mail_problem, text_problem
from .bodies import (
    add_consent_request,
    add_unsubscribe_footer,
    consent_link,
    html_to_text,
    image_tag,
    insert_image,
    tracking_image,
    unsubscribe_link,
    withdrawal_link,
)

SMTP_POLICY = policy.SMTP
# An uploaded picture's source in cleaned HTML (always double-quoted there).
_INLINE_SRC = re.compile(r'src="(data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/]+={0,2}))"')
_ALPHABET = "".join(sorted(tokens.TOKEN_ALPHABET))
# Under the SendGrid preset, an unmeasured message turns SendGrid's own open and click tracking off.
_SENDGRID_UNTRACKED = {"opentrack": {"settings": {"enable": 0}}, "clicktrack": {"settings": {"enable": 0}}}



class EncodedSubject(str):
    """A subject with non-ASCII text, written wholly as RFC 2047 encoded words.

    The library's own folder keeps a space at the end of a line it breaks before an encoded word,
    and readers show it doubled; encoded words carry their spaces inside, and the folding whitespace
    between two of them is dropped when read, so the subject reads back exactly as written."""

    name = "Subject"

    def __new__(cls, subject: str) -> EncodedSubject:
        # What the library refuses in a header (line breaks, U+2028 too), refused here the same way.
        if problem := mail_problem(subject):
            raise ValueError(problem)
        return super().__new__(cls, subject)

    def fold(self, *, policy: policy.Policy) -> str:
        linesep = policy.linesep
        return f"Subject: {Header(str(self), 'utf-8', header_name='Subject').encode(linesep=linesep)}{linesep}"

def inline_images(html: str, domain: str) -> tuple[str, list[tuple[str, str, bytes]]]:
    """``html`` with each uploaded picture (an <img>'s data: URL, as sanitize.clean_html keeps them)
    pointed at an inline part instead, and those parts: (Content-ID, image subtype, bytes), one per
    distinct picture."""
    images: dict[str, tuple[str, str, bytes]] = {}

    def to_part(found: re.Match[str]) -> str:
        url = found.group(1)
        if url not in images:
            content_id = f"image{len(images) + 1}.{secrets.token_hex(8)}@{domain or 'coretrack'}"
            images[url] = (content_id, found.group(2), base64.b64decode(found.group(3)))
        return f'src="cid:{images[url][0]}"'

    return _INLINE_SRC.sub(to_part, html), list(images.values())


class MessageError(ValueError):
    """One part of an email cannot be put into a message; ``field`` names it (subject, reply_to, ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


_LABELS = {"subject": "subject", "reply_to": "Reply-To address", "from_name": "From name",
           "from_address": "From address", "html": "HTML body", "text": "text body", "name": "recipient's name",
           "address": "recipient's address"}


def _problem(field: str, value: str, error: Exception) -> str:
    """Why ``value`` failed, in words a user can act on (the library's own are often misleading)."""
    if field in ("html", "text"):
        problem = text_problem(value)
    elif field in ("reply_to", "from_address", "address"):
        try:
            clean_address(value)
            problem = None
        except ValueError as exc:
            problem = str(exc)
    else:
        problem = mail_problem(value)
    return problem or str(error) or error.__class__.__name__


def _fold(header: object) -> str:
    """A header as it goes on the wire: folding is where the mail library finds what it cannot encode."""
    return str(cast(BaseHeader, header).fold(policy=SMTP_POLICY))


@contextmanager
def _part(field: str, value: str, label: str = "") -> Iterator[None]:
    """A failure while building the part named ``field`` as a MessageError naming it."""
    try:
        yield
    except ValueError as exc:  # the mail library's errors, UnicodeEncodeError and header defects included
        raise MessageError(field, f"the {label or _LABELS[field]} cannot be put in an email: "
                                  f"{_problem(field, value, exc)}") from None


class MessageTemplate:
    """One email's MIME, serialised once; ``render`` gives each recipient's message as bytes."""

    def __init__(
        self,
        *,
        from_address: str,
        from_name: str,
        subject: str,
        html: str,
        text: str = "",
        reply_to: str = "",
        attachments: tuple[AttachmentData, ...] | list[AttachmentData] = (),
        public_url: str | None = None,
        sendgrid_tag: bool = False,
        links: Sequence[str] = (),
        secret: bytes = b"",
        unsubscribe_url: str | None = None,
        unsubscribe_footer: str = "",
        consent_request: bool = False,
        anonymous_image: str = "",
        list_id: str = "",
    ):
        """``public_url`` None means tracking is off for this email: no image at all, no link
        rewritten.  ``links``: the email's stored links (clicks.trackable_links), each pointed to
        the click endpoint with a MAC made with ``secret``.  ``sendgrid_tag``: each message names
        its recipient's token in X-SMTPAPI, for SendGrid's events.  ``unsubscribe_url`` (the
        install's public URL): each message carries its recipient's signed unsubscribe link after
        ``unsubscribe_footer`` in both bodies, and in List-Unsubscribe with List-Unsubscribe-Post
        (RFC 8058 one-click), and a tracked message (``public_url`` set) the withdrawal link beside it.
        ``consent_request``: each message carries its recipient's consent link with a sentence asking
        (with ``unsubscribe_url``).  ``anonymous_image``: an untracked message carries this image, the
        same URL for every recipient (tracking/anonymous.py).  Under ``sendgrid_tag`` an untracked
        message also turns SendGrid's own open and click tracking off.  ``list_id``: each message
        carries it as its List-Id (a mass send's: ``mass_list_id``)."""
        self.domain = from_address.rpartition("@")[2]
        self.sendgrid_tag = sendgrid_tag
        self.sendgrid_filters = public_url is None  # nothing about this message's reading is measured
        self.secret = secret
        self.placeholder = None
        self.link_positions: frozenset[int] = frozenset()  # the links rewritten, each with a MAC slot
        if public_url is not None or unsubscribe_url is not None:
            # Random, so it cannot already be in the HTML; its QP form is itself.
            self.placeholder = _random_placeholder(tokens.TOKEN_LENGTH)
        if unsubscribe_url is not None and self.placeholder:
            # (Links under the install's URL: never rewritten into a click.)
            if consent_request:
                html, text = add_consent_request(html, text, consent_link(unsubscribe_url, self.placeholder))
            html, text = add_unsubscribe_footer(
                html, text, unsubscribe_footer, unsubscribe_link(unsubscribe_url, self.placeholder),
                withdrawal_link(unsubscribe_url, self.placeholder) if public_url is not None else "")
        plain = text or html_to_text(html)  # made before the links are rewritten: it keeps their URLs
        # Every link's MAC placeholder is one random prefix and the link's position, so that one
        # scan of the serialised message finds them all (a search per link would grow with the
        # square of the links).  Filled per recipient like the token.
        self.link_prefix = _random_placeholder(clicks.MAC_LENGTH - _POSITION_DIGITS)
        if public_url is not None and self.placeholder and links:
            if len(links) > 10 ** _POSITION_DIGITS:  # (far more than an email may have: limits.py)
                raise MessageError("html", f"the HTML body cannot be put in an email: {len(links):,} links")
            html, rewritten = clicks.rewrite_links(html, links, {
                position: clicks.click_url(public_url, position, self.placeholder, self._link_placeholder(position))
                for position in range(len(links))})
            # A stored link the HTML no longer has in its place is not rewritten, and gets no slot.
            self.link_positions = frozenset(rewritten)
        if public_url is not None and self.placeholder:
            html = insert_image(html, tracking_image(public_url, self.placeholder))
        elif anonymous_image:
            html = insert_image(html, image_tag(anonymous_image))

        html, images = inline_images(html, self.domain)
        message = EmailMessage(policy=SMTP_POLICY)
        # Each header is folded as soon as it is set, so that a failure names its field.
        with _part("from_address", from_address):
            Address(addr_spec=from_address)
        with _part("from_name", from_name):
            message["From"] = Address(display_name=from_name, addr_spec=from_address)
            message["From"].fold(policy=SMTP_POLICY)
        if reply_to:
            with _part("reply_to", reply_to):
                message["Reply-To"] = Address(addr_spec=reply_to)
                message["Reply-To"].fold(policy=SMTP_POLICY)
        with _part("subject", subject):
            message["Subject"] = subject if subject.isascii() else EncodedSubject(subject)
            message["Subject"].fold(policy=SMTP_POLICY)
        with _part("text" if text else "html", text or html):
            message.set_content(plain, subtype="plain", charset="utf-8", cte="quoted-printable")
        with _part("html", html):
            message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        if images:  # the HTML part and its pictures become one multipart/related
            html_part = cast(EmailMessage, message.get_body(("html",)))
            for content_id, subtype, data in images:
                html_part.add_related(data, maintype="image", subtype=subtype, cid=f"<{content_id}>",
                                      disposition="inline", filename=f"{content_id.partition('@')[0]}.{subtype}")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            with _part("attachments", attachment.filename, f"name of the attachment {attachment.filename!r}"):
                message.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                                       filename=attachment.filename)
                _fold(list(message.iter_attachments())[-1]["Content-Disposition"])
        for part in message.walk():
            if part is not message:
                del part["MIME-Version"]  # only the top level carries it
        self.body = message.as_bytes(policy=SMTP_POLICY)
        if unsubscribe_url is not None and self.placeholder:
            # Written as is, never folded: the URL has no spaces and stays far below 998 characters.
            self.body = (f"List-Unsubscribe: <{unsubscribe_link(unsubscribe_url, self.placeholder)}>\r\n"
                         "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode("ascii") + self.body
        if list_id:
            self.body = f"List-Id: <{list_id}>\r\n".encode("ascii") + self.body
        # Where each placeholder is in the body, in order: (start, end, its bytes, None for the
        # token or a link's position for its MAC).  The token is in the image, every link and the
        # unsubscribe links.
        self._slots: list[tuple[int, int, bytes, int | None]] = []
        if self.placeholder:
            self._slots += [(*match.span(), match.group(), None)
                            for match in _find(self.placeholder, self.body)]
        if self.link_positions:
            digits = rb"((?:" + _SOFT_BREAK + rb"?[0-9]){%d})" % _POSITION_DIGITS
            found = [(*match.span(), match.group(), int(re.sub(_SOFT_BREAK, b"", match.group(1))))
                     for match in _find(self.link_prefix, self.body, digits)]
            if sorted(slot[3] for slot in found) != sorted(self.link_positions):
                raise RuntimeError("a link's placeholder is not once in the serialised message")
            self._slots += found
        self._slots.sort()

    def _smtpapi_header(self, token: str) -> str:
        """The X-SMTPAPI header naming the recipient (for SendGrid's events), with SendGrid's own
        tracking turned off in an untracked message."""
        if not self.sendgrid_filters:
            return sendgrid.smtpapi_header(token)
        value = {"unique_args": {sendgrid.UNIQUE_ARG: token}, "filters": _SENDGRID_UNTRACKED}
        return "X-SMTPAPI: " + json.dumps(value, separators=(",", ":")) + "\r\n"

    def _link_placeholder(self, position: int) -> str:
        return f"{self.link_prefix}{position:0{_POSITION_DIGITS}d}"

    def to_header(self, address: str, name: str = "") -> str:
        """The folded To header; MessageError when the recipient's name or address cannot go into it."""
        if _PLAIN_ADDRESS.match(address) and (not name or _PLAIN_NAME.match(name)):
            # What the mail library would write, without its parser and folder (the slowest part
            # of a message): words that need no quoting and a line too short to fold.
            plain = f"To: {name} <{address}>\r\n" if name else f"To: {address}\r\n"
            if len(plain) <= _UNFOLDED:
                return plain
        with _part("address", address):
            Address(addr_spec=address)
        with _part("name", name):
            folded = _fold(SMTP_POLICY.header_factory("To", Address(display_name=name, addr_spec=address)))
            folded.encode("ascii")
        return folded

    def render(self, address: str, name: str = "", token: str | None = None) -> bytes:
        """The message for one recipient: To is that recipient only; Date and Message-ID are fresh."""
        headers: bytes = (
            self.to_header(address, name)
            + f"Date: {format_datetime(datetime.now(UTC))}\r\n"
            + f"Message-ID: <{secrets.token_hex(16)}@{self.domain}>\r\n"
        ).encode("ascii")
        if not self._slots and not self.sendgrid_tag:
            return headers + self.body
        if token is None or len(token) != tokens.TOKEN_LENGTH or not tokens.TOKEN_ALPHABET.issuperset(token):
            raise ValueError("a tracking token of the fixed length and alphabet is required")
        if self.sendgrid_tag:
            headers += self._smtpapi_header(token).encode("ascii")
        if not self._slots:
            return headers + self.body
        values: dict[int | None, bytes] = {None: token.encode("ascii")}
        for position in self.link_positions:
            values[position] = clicks.link_mac(self.secret, token, position).encode("ascii")
        pieces = [headers]
        done = 0
        for start, end, placeholder, key in self._slots:
            filled = iter(values[key])
            # Each placeholder character becomes the value's; soft line breaks in between stay.
            pieces += [self.body[done:start],
                       bytes(next(filled) if byte in _PLACEHOLDER_BYTES else byte for byte in placeholder)]
            done = end
        pieces.append(self.body[done:])
        return b"".join(pieces)


_PLACEHOLDER_BYTES = frozenset(_ALPHABET.encode("ascii"))
# A link's position at the end of its MAC placeholder: more positions than an email may have links.
_POSITION_DIGITS = 6
# Quoted-printable may break a line anywhere in a placeholder (its alphabet has no "=").
_SOFT_BREAK = rb"(?:=\r?\n)"


def mass_list_id(from_address: str) -> str:
    """The List-Id of a mass send's messages (RFC 2919): one list per sending domain, under that
    domain, so that receivers and their filters tell the install's mass mail from a person's."""
    domain = from_address.rpartition("@")[2].lower()
    return f"mass-mail.{domain.encode('idna').decode('ascii') if not domain.isascii() else domain}"


def _find(placeholder: str, body: bytes, then: bytes = b"") -> list[re.Match[bytes]]:
    """Every place of the placeholder (followed by what ``then`` matches) in the body, in one scan;
    at least one."""
    pattern = (_SOFT_BREAK + b"?").join(re.escape(char.encode("ascii")) for char in placeholder)
    matches = list(re.finditer(pattern + then, body))
    if not matches:
        raise RuntimeError("placeholder not found in the serialised message")
    return matches


def _random_placeholder(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
# An address as a dot-atom, and a name of atoms ('=' and '?' left out: they could start an
# encoded word), in ASCII: both go into a header as they are.
_ATOM = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_PLAIN_NAME = re.compile(rf"{_ATOM}(?: {_ATOM})*\Z")
_UNFOLDED = (SMTP_POLICY.max_line_length or 78) + 2  # the longest header line the policy leaves whole, CRLF included
