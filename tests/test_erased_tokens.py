"""An erased person's tokens count nothing and store nothing, on every path a hit or a report of
theirs can take: the image answered by the application, the image answered by Apache and counted
from its hit log, a click, SendGrid's events and a bounce.  Each path is taken through a real
Apache (the bounce as the mailbox reader applies it), on SQLite and PostgreSQL; a recipient of
the same email who was not erased takes it too, to show the path counts."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from support.apache import ApacheServer
from support.front_ends import Site, two_front_ends
from support.hit_load import PATH, wait_until
from support.postgres import DATABASES

from coretrack.delivery_reports import bounces, sendgrid
from coretrack.models import AccessEvent, ClickEvent, DeliveryEvent, Email, EmailLink, Recipient, User, utcnow
from coretrack.people import erasure
from coretrack.tracking import clicks, tokens
from coretrack.tracking.image import GIF

pytestmark = pytest.mark.slow

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
LINK = "https://shop.example.com/spring"


@pytest.fixture(scope="module", params=DATABASES)
def site(request):
    with two_front_ends(request.param) as site:
        yield site


def sent_email(server: ApacheServer) -> tuple[int, int]:
    """An email with one link sent a while ago to ann@ and bob@; then ann@ is erased.  Their ids."""
    secret = server.config.secret_key()
    with server.session() as session:
        sender = session.scalars(select(User).order_by(User.id)).first()
        email = Email(subject="Spring", html_body=f'<a href="{LINK}">x</a>', sender_id=sender.id,
                      from_address="crm@example.test", status="sent")
        sent_at = utcnow() - timedelta(hours=1)
        email.recipients = [Recipient(address=address, token=tokens.new_token(secret), status="sent", sent_at=sent_at)
                            for address in ("ann@example.test", "bob@example.test")]
        email.links = [EmailLink(position=0, url=LINK)]
        session.add(email)
        session.commit()
        ann, bob = (recipient.id for recipient in email.recipients)
        erasure.erase(session, secret, "ann@example.test", "admin")
    return ann, bob


def kept(server: ApacheServer, recipient_id: int) -> dict[str, object]:
    """Everything kept of or under one recipient that a hit or a report could change."""
    with server.session() as session:
        row = session.get(Recipient, recipient_id)
        kept = {name: getattr(row, name) for name in (
            "access_count", "human_opens", "first_access", "last_access", "first_human_at", "click_count",
            "delivery_status", "delivery_detail", "delivery_at", "notified_at")}
        for table in (AccessEvent, ClickEvent, DeliveryEvent):
            kept[table.__tablename__] = session.scalar(
                select(func.count()).select_from(table).where(table.recipient_id == recipient_id))
        return kept


def token_of(server: ApacheServer, recipient_id: int) -> str:
    with server.session() as session:
        return session.get(Recipient, recipient_id).token


def load_image(site: Site, token: str) -> None:
    """The image from the front-end whose application answers it (tracker.Tracker, count_hits)."""
    reply = site.application.request("GET", f"{PATH}?t={token}", headers={"User-Agent": AGENT})
    assert (reply.status, reply.body) == (200, GIF)


def load_logged_image(site: Site, token: str) -> None:
    """The image Apache answers and logs; counted by 'coretrack ingest' (ingester.py, count_hits)."""
    reply = site.logging.request("GET", f"{PATH}?t={token}", headers={"User-Agent": AGENT})
    assert (reply.status, reply.body) == (200, GIF)


def click(site: Site, token: str) -> None:
    """The link: still redirected to the stored URL (it is the person's own mail), recorded or not."""
    mac = clicks.link_mac(site.logging.config.secret_key(), token, 0)
    reply = site.logging.request("GET", f"{clicks.CLICK_PATH}?c=0.{token}.{mac}", headers={"User-Agent": AGENT})
    assert (reply.status, reply.headers["location"]) == (302, LINK)


def sendgrid_event(kind: str, **fields: object):
    def post(site: Site, token: str) -> None:
        site.post_sendgrid([{"email": "someone@example.test", "timestamp": int(time.time()), "event": kind,
                             "sg_event_id": f"{kind}-{token}", sendgrid.UNIQUE_ARG: token, **fields}])
    return post


def bounce(site: Site, token: str) -> None:
    """A bounce returning the message (its image names the token), applied as the mailbox reader does."""
    raw = (f"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           f"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n"
           f"<someone@example.test>: host mx.example.net said: 550 5.1.1 <someone@example.test> unknown\r\n\r\n"
           f"--- copy of the message follows ---\r\n\r\n"
           f'<img src="{site.logging.public_url}{PATH}?t={token}">\r\n').encode()
    parsed = bounces.parse(raw, "", site.logging.config.secret_key())
    assert parsed is not None and token in parsed.tokens
    with site.logging.session() as session:
        bounces.apply(session, parsed)
        session.commit()


PATHS = {
    "image": load_image,
    "image through the hit log": load_logged_image,
    "click": click,
    "SendGrid open": sendgrid_event("open", ip="203.0.113.9", useragent=AGENT),
    "SendGrid click": sendgrid_event("click", url=LINK, ip="203.0.113.9", useragent=AGENT),
    "SendGrid bounce": sendgrid_event("bounce", status="5.1.1", reason="550 5.1.1 <someone@example.test> unknown",
                                      type="bounce"),
    "bounce": bounce,
}


@pytest.mark.parametrize("path", PATHS)
def test_an_erased_persons_token_counts_nothing_and_stores_nothing(site, path):
    ann, bob = sent_email(site.logging)
    ann_before, bob_before = kept(site.logging, ann), kept(site.logging, bob)
    assert ann_before["access_events"] == ann_before["click_events"] == ann_before["delivery_events"] == 0
    ann_token = token_of(site.logging, ann)
    for recipient in (ann, bob):  # the erased person's first: once bob's is counted, ann's was taken
        PATHS[path](site, token_of(site.logging, recipient))
    if path == "image through the hit log":
        site.logging.run("ingest", "--once")
    wait_until(lambda: kept(site.logging, bob) != bob_before, f"bob's {path} to be counted", 30)

    assert kept(site.logging, ann) == ann_before
    with site.logging.session() as session:
        # Nothing under no recipient either (a provider's event of an unknown token is kept so).
        assert session.scalars(select(DeliveryEvent.event_id).where(DeliveryEvent.event_id.contains(ann_token))
                               ).all() == []
        # The link's own count is the people's who were not erased.
        assert session.scalar(select(func.sum(EmailLink.click_count)).join(Recipient, Recipient.email_id ==
                              EmailLink.email_id).where(Recipient.id == bob)) == kept(site.logging, bob)["click_count"]
