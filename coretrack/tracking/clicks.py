"""Click tracking: links rewritten to a signed redirect, each click recorded and sent on.

When an email is tracked, every http(s) link of its HTML (not mailto:, tel:, in-page anchors,
javascript:/data:, anything under the install's own public URL or with a merge field) is stored
in ``email_links`` when the email is composed, in document order, and the HTML sent to each
recipient points it to
``CLICK_PATH?c=<position>.<recipient token>.<mac>``, where the MAC is an HMAC of the token and the
position with the install's secret.  The endpoint checks the MAC in constant time before it touches
the database and redirects only to the URL stored for that email's link: nothing of the query but
the signed token picks it, so the endpoint cannot be made to redirect anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html as html_lib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from ..db import changed_rows
from ..models import AccessEvent, ClickEvent, EmailLink, Recipient, utcnow
from ..people import consent, suppression
from ..sending import merge_fields
from ..webhooks import events
from . import click_verdicts, tokens
from .counting import fold_target
from .hits import clean_agent
from .verdicts import store_ip

CLICK_PATH = "/email/click"
MAC_LENGTH = 22  # base64url of 16 bytes, unpadded
# Whose click a click is, a person's or a scanner's: click_verdicts.py holds the rules.
_TRACKED_SCHEMES = frozenset({"http", "https"})
# Browsers drop these anywhere in a URL, and surrounding white space.
_URL_NOISE = re.compile(r"[\t\n\r]")
# One attribute of a start tag, as html.parser reads it (name, then an optional value).
_ATTRIBUTE = re.compile(r"""\s*([^\s/>"'=][^\s/>=]*)(\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def link_mac(secret: bytes, token: str, position: int) -> str:
    """The signature of one recipient's link: MAC_LENGTH characters of the token alphabet."""
    digest = hmac.new(secret, f"coretrack-click:{position}:{token}".encode("ascii"), hashlib.sha256).digest()
    return _b64(digest[:16])


def click_url(public_url: str, position: int, token: str, mac: str) -> str:
    return f"{public_url.rstrip('/')}{CLICK_PATH}?c={position}.{token}.{mac}"


def _clean_url(href: str) -> str:
    return _URL_NOISE.sub("", html_lib.unescape(href)).strip()


def is_trackable(url: str, public_url: str = "") -> bool:
    """An http(s) URL with a host, not under the install's own public URL (its pages and the
    unsubscribe link stay as they are)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in _TRACKED_SCHEMES or not parts.netloc:
        return False
    if public_url:
        own = urlsplit(public_url)
        if (parts.scheme.lower(), parts.netloc.lower()) == (own.scheme.lower(), own.netloc.lower()) and (
                parts.path.rstrip("/") + "/").startswith(own.path.rstrip("/") + "/"):
            return False
    return True


@dataclass(frozen=True)
class _Href:
    start: int  # offsets of the attribute's value in the HTML, quotes included
    end: int
    url: str


class _AnchorFinder(HTMLParser):
    """The href of each <a> start tag (the first one: what browsers follow), with its place."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.line_starts = [0] + [match.end() for match in re.finditer(r"\n", html)]
        self.hrefs: list[_Href] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        line, column = self.getpos()
        start = self.line_starts[line - 1] + column
        raw = self.get_starttag_text() or ""
        at = 2  # after "<a"
        while match := _ATTRIBUTE.match(raw, at):
            if not match.group(0).strip():
                break
            at = match.end()
            if match.group(1).lower() == "href" and match.group(3) is not None:
                value = match.group(3)
                unquoted = value[1:-1] if value[:1] in "\"'" and len(value) > 1 else value
                self.hrefs.append(_Href(start + match.start(3), start + match.end(3), _clean_url(unquoted)))
                return

    handle_startendtag = handle_starttag


def _hrefs(html: str) -> Iterator[_Href]:
    finder = _AnchorFinder(html)
    finder.feed(html)
    finder.close()
    return iter(finder.hrefs)


def trackable_links(html: str, public_url: str) -> list[str]:
    """The URLs to store for an email, in document order (their position is their index).  A URL
    with a merge field is each recipient's own, not one stored redirect: it is not tracked (stored,
    it would match no filled link, and the links after it would not be rewritten either)."""
    return [href.url for href in _hrefs(html)
            if is_trackable(href.url, public_url) and not merge_fields.has_fields(href.url)]


def link_count(html: str) -> int:
    """How many links (``<a href>``) the HTML has, trackable or not."""
    return sum(1 for _ in _hrefs(html))


def rewrite_links(html: str, links: Sequence[str], url_of: dict[int, str]) -> tuple[str, list[int]]:
    """The HTML with the links stored for its email (``links``, in order) pointing to
    ``url_of[position]``, every other href as it is; and the positions rewritten."""
    parts: list[str] = []
    done = 0
    position = 0
    for href in _hrefs(html):
        if position < len(links) and href.url == links[position] and is_trackable(href.url):
            parts += [html[done:href.start], '"', html_lib.escape(url_of[position]), '"']
            done = href.end
            position += 1
    return "".join(parts) + html[done:], list(range(position))


def parse(secret: bytes, query: str) -> tuple[str, int] | None:
    """The recipient token and link position a click URL's query names, if this install signed
    them for each other; None for anything else (one HMAC at most, no database)."""
    value = next((value for key, value in parse_qsl(query, keep_blank_values=True) if key == "c"), "")
    position_text, _, rest = value.partition(".")
    token, _, mac = rest.rpartition(".")
    if not (position_text.isascii() and position_text.isdigit() and len(position_text) <= 4):
        return None
    position = int(position_text)
    if len(mac) != MAC_LENGTH or not tokens.verify(secret, token):
        return None
    if not hmac.compare_digest(link_mac(secret, token, position), mac):
        return None
    return token, position


def target(session: Session, token: str, position: int) -> tuple[Recipient, EmailLink] | None:
    found = session.execute(
        select(Recipient, EmailLink).join(EmailLink, and_(EmailLink.email_id == Recipient.email_id,
                                                          EmailLink.position == position))
        .where(Recipient.token == token)
    ).first()
    return None if found is None else (found[0], found[1])


def record(session: Session, recipient: Recipient, link: EmailLink, ip: str, user_agent: str, ip_policy: str,
           at: datetime | None = None) -> str | None:
    """Count one click and keep its event; commits.  Returns the click's verdict, or None for the
    link of an erased person, or of one whose reading is not measured (Recipient.tracked) or who
    refused or withdrew before the click, which counts and keeps nothing.  A recipient keeps at most
    EVENTS_PER_RECIPIENT_PER_MINUTE click events a minute, as for loads of the image: their further
    clicks of that minute are added to the minute's last event (its ``hits``), so the counts stay
    exact and one link clicked in a loop does not grow the table."""
    at = at or utcnow()
    if recipient.erased or not recipient.tracked or consent.Stops.of(session, [recipient.address]).stopped(
            suppression.key(recipient.address), at):
        return None  # not measured, or no longer (a refusal or withdrawal before this click)
    verdict, reason = click_verdicts.alone(user_agent, ip, recipient.sent_at, at)
    # The recipient's row first: it serialises this recipient's concurrent clicks, so the sequence
    # rules and the per-minute bound below see the others; and an erasure committed meanwhile (it
    # sets the flag on this row) is seen here.
    if not changed_rows(session, update(Recipient).where(Recipient.id == recipient.id, ~Recipient.erased)
                        .values(click_count=Recipient.click_count + 1)):
        session.commit()  # nothing changed: ends the transaction (and SQLite's write lock)
        return None
    session.execute(update(EmailLink).where(EmailLink.id == link.id).values(click_count=EmailLink.click_count + 1))
    kept_ip = store_ip(ip, ip_policy)
    verdict, reason = _judge_in_sequence(session, recipient.id, click_verdicts.Click(at, link.id, kept_ip, verdict,
                                                                                     reason))
    folded_into = fold_target(session.connection(), "click_events", recipient.id, at)
    if folded_into is None:
        session.add(ClickEvent(recipient_id=recipient.id, link_id=link.id, at=at, ip=kept_ip,
                               user_agent=clean_agent(user_agent), verdict=verdict, reason=reason, hits=1))
    else:
        session.execute(update(ClickEvent).where(ClickEvent.id == folded_into).values(hits=ClickEvent.hits + 1))
        # Counted as the event it is folded into: the recipient's human clicks stay the sum of its human events.
        verdict = session.scalar(select(ClickEvent.verdict).where(ClickEvent.id == folded_into)) or verdict
    if verdict == "human":
        _add_human_clicks(session, recipient.id, [(link.id, 1)])
        if folded_into is None:  # a click kept as its own event (at most a few a minute) is reported
            events.emit(session, [events.recipient_event(events.CLICKED, at, recipient, url=link.url)])
        # A person's click is a human engagement, like a likely-human open: the sender is told of the first.
        session.execute(update(Recipient).where(Recipient.id == recipient.id).values(
            first_human_at=case((Recipient.first_human_at.is_(None), at),
                                (Recipient.first_human_at > at, at), else_=Recipient.first_human_at)))
    session.commit()
    return verdict


def _judge_in_sequence(session: Session, recipient_id: int, click: click_verdicts.Click) -> tuple[str, str]:
    """The new click's verdict among the recipient's clicks around it (click_verdicts.judge), one
    query; the earlier clicks it shows were a scanner's are revised now, and count as people's no
    more (the recipient's and links' likely-human clicks, and the first human engagement)."""
    around = session.execute(
        select(ClickEvent.id, ClickEvent.at, ClickEvent.link_id, ClickEvent.ip, ClickEvent.verdict,
               ClickEvent.reason, ClickEvent.hits)
        .where(ClickEvent.recipient_id == recipient_id, ClickEvent.at >= click.at - click_verdicts.SEQUENCE_WINDOW,
               ClickEvent.at <= click.at + click_verdicts.SEQUENCE_WINDOW)
        .order_by(ClickEvent.at, ClickEvent.id)).all()
    place = sum(1 for row in around if row.at <= click.at)
    sequence = [click_verdicts.Click(row.at, row.link_id, row.ip, row.verdict, row.reason) for row in around]
    sequence.insert(place, click)
    verdicts = click_verdicts.judge(sequence)
    own = verdicts.pop(place)
    revised = [(row, judged) for row, judged in zip(around, verdicts, strict=True) if judged[0] != row.verdict]
    if not revised:
        return own
    # Known only now: these earlier clicks were a scanner's.
    for row, (new_verdict, new_reason) in revised:
        session.execute(update(ClickEvent).where(ClickEvent.id == row.id)
                        .values(verdict=new_verdict, reason=new_reason))
    _add_human_clicks(session, recipient_id, [(row.link_id, row.hits if judged[0] == "human" else -row.hits)
                                              for row, judged in revised])
    first_human = session.scalar(select(Recipient.first_human_at).where(Recipient.id == recipient_id))
    if any(row.verdict == "human" and row.at == first_human for row, _ in revised):
        # The first human engagement was one of them: it is now the earliest left, a load or a click.
        earliest = [session.scalar(select(func.min(table.at)).where(table.recipient_id == recipient_id,
                                                                   table.verdict == "human"))
                    for table in (AccessEvent, ClickEvent)]
        session.execute(update(Recipient).where(Recipient.id == recipient_id).values(
            first_human_at=min((at for at in earliest if at is not None), default=None)))
    return own


def _add_human_clicks(session: Session, recipient_id: int, by_link: list[tuple[int, int]]) -> None:
    """Adds to the recipient's and each link's likely-human clicks (negative: verdicts revised)."""
    total = sum(change for _, change in by_link)
    if total:
        session.execute(update(Recipient).where(Recipient.id == recipient_id)
                        .values(human_clicks=Recipient.human_clicks + total))
    for link_id, change in by_link:
        session.execute(update(EmailLink).where(EmailLink.id == link_id)
                        .values(human_clicks=EmailLink.human_clicks + change))
