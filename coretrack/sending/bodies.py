"""The bodies of an outgoing message: the parts added to the email's HTML and text (the tracking
image, the unsubscribe footer with the withdrawal link, a consent request, the signature) and the
text version made from the HTML.  mime.MessageTemplate puts them together once per email."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser

from ..people.consent import CONSENT_PATH, WITHDRAWAL_PATH
from ..people.unsubscribe import UNSUBSCRIBE_PATH
from ..tracking.image import TRACK_ACCESS_PATH

_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
WITHDRAWAL_LABEL = "Stop measuring my reading"
CONSENT_SENTENCE = "May we measure when you read our email? Nothing is measured unless you say yes."
CONSENT_LABEL = "Answer here"


def image_tag(url: str) -> str:
    return f'<img src="{html_lib.escape(url)}" width="1" height="1" alt="">'


def tracking_image(public_url: str, token: str) -> str:
    return image_tag(f"{public_url.rstrip('/')}{TRACK_ACCESS_PATH}?t={token}")


def unsubscribe_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{UNSUBSCRIBE_PATH}?t={token}"


def withdrawal_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{WITHDRAWAL_PATH}?t={token}"


def consent_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{CONSENT_PATH}?t={token}"


def add_unsubscribe_footer(html: str, text: str, footer: str, url: str, withdrawal_url: str = "") -> tuple[str, str]:
    """Both bodies with the footer and the unsubscribe link at their end, and beside it the
    withdrawal link when there is one (a tracked message's); an empty text body is made from the
    HTML when the message is built, footer and links included."""
    withdrawal_html = (f' &middot; <a class="stop-measuring" href="{html_lib.escape(withdrawal_url)}">'
                       f'{WITHDRAWAL_LABEL}</a>' if withdrawal_url else "")
    html = insert_at_end(html, f'\n<p class="unsubscribe" style="font-size:small;color:#666">'
                               f'{html_lib.escape(footer)} <a href="{html_lib.escape(url)}">Unsubscribe</a>'
                               f'{withdrawal_html}</p>\n')
    if text.strip():
        text = text.rstrip("\n") + f"\n\n{footer}\n{url}\n"
        if withdrawal_url:
            text += f"{WITHDRAWAL_LABEL}:\n{withdrawal_url}\n"
    return html, text


def add_consent_request(html: str, text: str, url: str) -> tuple[str, str]:
    """Both bodies with the consent request (a sentence and the recipient's consent link) at their end."""
    html = insert_at_end(html, f'\n<p class="consent-request">{html_lib.escape(CONSENT_SENTENCE)} '
                               f'<a href="{html_lib.escape(url)}">{CONSENT_LABEL}</a></p>\n')
    if text.strip():
        text = text.rstrip("\n") + f"\n\n{CONSENT_SENTENCE}\n{CONSENT_LABEL}: {url}\n"
    return html, text


def insert_image(html: str, image: str) -> str:
    """``image`` once, immediately before the last ``</body>``, or at the end when there is none."""
    return insert_at_end(html, image)


def insert_at_end(html: str, part: str) -> str:
    """``part`` immediately before the last ``</body>``, or at the end when there is none."""
    matches = list(_BODY_END.finditer(html))
    if not matches:
        return html + part
    at = matches[-1].start()
    return html[:at] + part + html[at:]


def insert_at_start(html: str, part: str) -> str:
    """``part`` immediately after the first ``<body>``, or at the start when there is none."""
    found = _BODY_START.search(html)
    return html[:found.end()] + part + html[found.end():] if found else part + html


def add_signature(html: str, text: str, signature_html: str) -> tuple[str, str]:
    """The HTML and text bodies with the signature at their end (a text body left empty is made
    from the HTML when the message is built, signature and all)."""
    html = insert_at_end(html, f'\n<div class="signature">{signature_html}</div>\n')
    if text.strip():
        text = text.rstrip("\n") + "\n\n-- \n" + html_to_text(signature_html)
    return html, text


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset(
        "address article aside blockquote dd div dl dt fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 "
        "header hr li main nav ol p pre section table tbody thead tfoot tr ul".split()
    )
    HIDDEN = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive unescaped in handle_data
        self.parts: list[str] = []
        self.hidden = 0
        self.links: list[tuple[str, int]] = []  # (href, index in parts where the link text starts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in self.HIDDEN:
            self.hidden -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS and tag != "li":  # the next item's own line break is enough
            self.parts.append("\n")
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.parts[start:]).strip()
            if href and not href.startswith("#") and href != label:
                self.parts.append(f" ({href})" if label else href)

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable text version of an HTML body, for the text/plain part."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
