"""Under "only people who consented", one email to 40 people through a real SMTP server and two real
Apache front-ends (one answering the image in the application, one answering it itself and logging
it for the ingester): only the 10 who consented can be singled out by anything a mail client loads
or follows; every image loaded, every link followed and SendGrid's opens and clicks for all 40
record individual events for those 10 only, and the others' loads add up to the email's anonymous
total.  Then one of the 10 withdraws: their old image and link record nothing a second later, on
both paths, and deleting what was measured moves their counts into the anonymous total."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update
from support.front_ends import two_front_ends
from support.hit_load import wait_until
from support.ports import free_port
from support.postgres import DATABASES
from support.smtp_sink import SmtpSink

from coretrack.db import make_engine, make_session_factory
from coretrack.delivery_reports import sendgrid
from coretrack.models import AccessEvent, AnonymousTotal, ClickEvent, DeliveryEvent, Recipient, User, utcnow
from coretrack.people import consent
from coretrack.sending.send import NewEmail, send
from coretrack.tracking import anonymous
from coretrack.tracking.image import GIF, TRACK_ACCESS_PATH

pytestmark = pytest.mark.slow

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
LINKS = ("https://shop.example.com/spring", "https://shop.example.com/summer")
HTML = f'<p>New season.</p><p><a href="{LINKS[0]}">Spring</a> and <a href="{LINKS[1]}">summer</a>.</p>'
URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|(https?://[^\s<>"']+)""", re.IGNORECASE)
ADDRESSES = [f"person{number:02}@example.test" for number in range(40)]
GRANTED, UNKNOWN, REFUSED, WITHDRAWN = ADDRESSES[:10], ADDRESSES[10:35], ADDRESSES[35:38], ADDRESSES[38:]


class Install:
    """The two front-ends (support/front_ends.py) and the SMTP server the email goes through."""

    def __init__(self, site: Install, sink: SmtpSink) -> None:
        self.logging, self.application, self.sink, self.site = site.logging, site.application, sink, site

    def session(self):
        return self.logging.session()


@pytest.fixture(scope="module", params=DATABASES)
def site(request):
    sink = SmtpSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        with two_front_ends(request.param, {"smtp_host": "127.0.0.1", "smtp_port": str(smtp.port),
                                            "smtp_security": "none", "tracking_policy": consent.CONSENTED}) as site:
            yield Install(site, sink)
    finally:
        smtp.stop()


def state_consents(site: Install) -> None:
    an_hour_ago = utcnow() - timedelta(hours=1)
    with site.session() as session:
        for address in GRANTED + WITHDRAWN:
            consent.record(session, address, consent.GRANTED, consent.API, "newsletter sign-up form",
                           at=an_hour_ago)
        for address in REFUSED:
            consent.record(session, address, consent.REFUSED, consent.STAFF, "said no on the phone")
        for address in WITHDRAWN:
            consent.record(session, address, consent.WITHDRAWN, consent.PAGE)
        session.commit()


def send_to_forty(site: Install) -> int:
    engine = make_engine(site.logging.config.database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            sender = session.scalars(select(User).where(User.name == "sam")).one()
            outcome = send(session, factory, site.logging.config, sender,
                           NewEmail(subject="New season", html=HTML, to=ADDRESSES), deliver_all=True)
            email_id = outcome.email.id
            # Read an hour after it went: a load within seconds of the send is a scanner's.
            session.execute(update(Recipient).where(Recipient.email_id == email_id)
                            .values(sent_at=utcnow() - timedelta(hours=1)))
            session.commit()
            return email_id
    finally:
        engine.dispose()


def tokens_of(site: Install, email_id: int) -> dict[str, str]:
    """Each recipient's token, by address."""
    with site.session() as session:
        return {address: token for address, token in session.execute(
            select(Recipient.address, Recipient.token).where(Recipient.email_id == email_id))}


def messages(site: Install) -> dict[str, tuple[str, list[str]]]:
    """Each address's message: its whole text (headers included) and every URL in its bodies."""
    found = {}
    for received in site.sink.received:
        message = received.message
        bodies = [part.get_content() for part in message.walk() if part.get_content_type() in ("text/html",
                                                                                              "text/plain")]
        # A text body's bare URL may be followed by ")" or "." of its sentence.
        urls = [match[0] or match[1].rstrip(").,") for body in bodies for match in URL.findall(body)]
        found[received.rcpt_tos[0]] = (message.as_string(), urls)
    return found


def local(site: Install, url: str) -> str | None:
    """The path and query of a URL that leads to this install, else None."""
    parts = urlsplit(url.replace("&amp;", "&"))
    if f"{parts.scheme}://{parts.netloc}" != site.logging.public_url:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def load_everything(site: Install, urls: list[str]) -> int:
    """Loads every image and follows every link of this install, through both front-ends, as a mail
    client would; how many image loads that made."""
    loads = 0
    for url in urls:
        path = local(site, url)
        if path is None:
            continue
        for front_end in (site.application, site.logging):
            reply = front_end.request("GET", path, headers={"User-Agent": AGENT})
            assert reply.status in (200, 302), (path, reply.status)
            if path.startswith(TRACK_ACCESS_PATH):
                assert reply.body == GIF
                loads += 1
    return loads


def post_sendgrid(site: Install, tokens_: dict[str, str], kinds=("open", "click")) -> None:
    now = int(time.time())
    site.site.post_sendgrid([{"email": address, "timestamp": now, "event": kind, "sg_event_id": f"{kind}-{token}",
                              sendgrid.UNIQUE_ARG: token, "url": LINKS[0], "ip": "203.0.113.9", "useragent": AGENT}
                             for address, token in tokens_.items() for kind in kinds])


def individual_events(site: Install, email_id: int) -> dict[str, set[str]]:
    """The addresses that have rows of each kind of individual event under the email."""
    kept: dict[str, set[str]] = {}
    with site.session() as session:
        for name, table in (("loads", AccessEvent), ("clicks", ClickEvent), ("sendgrid", DeliveryEvent)):
            query = select(Recipient.address).join(table, table.recipient_id == Recipient.id).where(
                Recipient.email_id == email_id)
            if table is DeliveryEvent:
                query = query.where(DeliveryEvent.event.in_(("open", "click")))
            kept[name] = set(session.scalars(query))
    return kept


def anonymous_loads(site: Install, email_id: int) -> int:
    with site.session() as session:
        return session.scalar(select(func.coalesce(func.sum(AnonymousTotal.loads), 0))
                              .where(AnonymousTotal.email_id == email_id))


def test_only_the_people_who_consented_can_be_singled_out_and_the_others_are_counted_anonymously(site):
    state_consents(site)
    email_id = send_to_forty(site)
    token_of = tokens_of(site, email_id)
    with site.session() as session:
        measured = set(session.scalars(select(Recipient.address).where(Recipient.email_id == email_id,
                                                                        Recipient.tracked)))
    assert measured == set(GRANTED)
    received = messages(site)
    assert sorted(received) == sorted(ADDRESSES)

    shared_image = anonymous.token(site.logging.config.secret_key(), email_id)
    for address, (whole, urls) in received.items():
        carrying = [url for url in urls if token_of[address] in url]
        if address in measured:
            assert any(TRACK_ACCESS_PATH in url for url in carrying), address
            assert any("/email/click" in url for url in carrying), address
            continue
        # Only the unsubscribe and consent pages' links name the person, and they record no reading.
        assert {urlsplit(url).path for url in carrying} <= {"/email/unsubscribe", "/email/consent"}, (address, carrying)
        assert not any(other in whole for other_address, other in token_of.items() if other_address != address)
        images = [url for url in urls if TRACK_ACCESS_PATH in url]
        assert images == [f"{site.logging.public_url}{TRACK_ACCESS_PATH}?t={shared_image}"], (address, images)
        assert {url for url in urls if "shop.example.com" in url} == set(LINKS)  # not rewritten

    unmeasured_loads = 0
    for address, (_, urls) in received.items():
        loads = load_everything(site, urls)
        if address not in measured:
            unmeasured_loads += loads
    assert unmeasured_loads == 2 * 30  # each unmeasured message's one image, through both front-ends
    site.logging.run("ingest", "--once")
    post_sendgrid(site, token_of)

    wait_until(lambda: individual_events(site, email_id)["loads"] == set(GRANTED)
               and anonymous_loads(site, email_id) == unmeasured_loads, "the loads to be counted", 30)
    assert individual_events(site, email_id) == {"loads": set(GRANTED), "clicks": set(GRANTED),
                                                 "sendgrid": set(GRANTED)}
    with site.session() as session:
        counts = {address: (access, clicks) for address, access, clicks in session.execute(
            select(Recipient.address, Recipient.access_count, Recipient.click_count)
            .where(Recipient.email_id == email_id))}
        # Each measured image loaded through both front-ends, plus SendGrid's open; each link followed twice.
        assert {address: counts[address] for address in GRANTED} == {address: (3, 4) for address in GRANTED}
        assert all(counts[address] == (0, 0) for address in ADDRESSES if address not in measured)


def email_totals(site: Install, email_id: int) -> tuple[int, int]:
    """The email's loads and clicks in all: its measured recipients' counts plus its anonymous totals."""
    with site.session() as session:
        measured = session.execute(select(func.sum(Recipient.access_count), func.sum(Recipient.click_count))
                                   .where(Recipient.email_id == email_id)).one()
        anonymous_ = session.execute(select(func.coalesce(func.sum(AnonymousTotal.loads), 0),
                                            func.coalesce(func.sum(AnonymousTotal.clicks), 0))
                                     .where(AnonymousTotal.email_id == email_id)).one()
    return measured[0] + anonymous_[0], measured[1] + anonymous_[1]


def test_a_withdrawal_holds_a_second_later_on_both_paths_and_deleting_keeps_the_email_s_totals(site):
    state_consents(site)
    email_id = send_to_forty(site)
    token_of = tokens_of(site, email_id)
    ann, bob = GRANTED[0], GRANTED[1]
    received = messages(site)
    for address in (ann, bob):
        load_everything(site, [url for url in received[address][1] if "/email/" not in url or "/email/click" in url])
    site.logging.run("ingest", "--once")

    def counted(address: str) -> tuple[int, int]:
        with site.session() as session:
            access, clicks = session.execute(select(Recipient.access_count, Recipient.click_count).where(
                Recipient.email_id == email_id, Recipient.address == address)).one()
            return access, clicks

    wait_until(lambda: counted(ann) == (2, 4) and counted(bob) == (2, 4), "ann's and bob's reading to be counted", 30)

    (withdrawal,) = {url.replace("&amp;", "&") for url in received[ann][1] if "/email/stop-measuring" in url}
    reply = site.application.request("POST", local(site, withdrawal), body=b"",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200
    time.sleep(1)
    for address in (ann, bob):  # bob's, to show the paths still count
        load_everything(site, [url for url in received[address][1] if "/email/" not in url or "/email/click" in url])
    site.logging.run("ingest", "--once")
    wait_until(lambda: counted(bob) == (4, 8), "bob's second reading to be counted", 30)
    assert counted(ann) == (2, 4)

    before = email_totals(site, email_id)
    reply = site.logging.request("POST", local(site, withdrawal), body=b"delete=yes",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200
    assert counted(ann) == (0, 0)
    assert ann not in individual_events(site, email_id)["loads"] | individual_events(site, email_id)["clicks"]
    assert email_totals(site, email_id) == before
    assert token_of[ann] not in site.logging.request("GET", f"/email/stop-measuring?t={token_of[bob]}").body.decode()
