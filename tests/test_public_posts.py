"""The public paths that take a POST, through a real Apache with mod_wsgi daemons: a stranger's body
is refused before it is read (403 for an unsigned webhook delivery, 413 past the path's cap, chunked
or not), so a burst of large forged posts leaves the daemons' memory where it was; and every answer
of every public path carries a type of its own (Apache never fills in the WSGI script's)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from io import RawIOBase
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from support.apache import ApacheServer
from werkzeug.test import EnvironBuilder

from coretrack.apache import public_body_limits
from coretrack.app import HANDLERS, URL_MAP
from coretrack.delivery_reports import sendgrid
from coretrack.http import max_body
from coretrack.models import Email, EmailLink, Lead, Recipient, User
from coretrack.people import consent, consent_page, unsubscribe
from coretrack.settings import SettingsService
from coretrack.tracking import clicks, tokens

WEBHOOK = "/webhooks/sendgrid"
MB = 1024 * 1024
# What the audit posted: 24 MB, 12 at once.
BIG = 24 * MB
BURST = 12
# "A few MB": what a burst of forged posts may move the daemons' memory by (allocator noise, more of it
# on a busy machine: 4 MB was seen exceeded there).  One body read into memory would be BIG, 24 MB.
ALLOWED_GROWTH_KB = 8 * 1024
# Refusals of a chunked body (which declares no length): mod_wsgi takes none unless told to
# (WSGIChunkedRequest), 411; past the cap Apache's LimitRequestBody or the application refuses it, 413.
CHUNKED_REFUSED = {411, 413}
# Types an answer of a public path may carry: ours, or Apache's own error pages.
DELIBERATE_TYPES = re.compile(r"(text/plain|text/html|image/gif); charset=(utf-8|iso-8859-1)$|image/gif$")


@pytest.fixture(scope="module", params=["site", "express", "htaccess"])
def apache(request):
    server = ApacheServer(request.param)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def signing_key(apache):
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with apache.session() as session:
        SettingsService(session, apache.config).update({"sendgrid_webhook_key": base64.b64encode(der).decode()},
                                                       user_name="test")
    return key


def signed(key, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(), sendgrid.TIMESTAMP_HEADER: stamp}


def bogus_signature() -> dict[str, str]:
    """Headers of the right shape whose signature no key made."""
    other = ec.generate_private_key(ec.SECP256R1())
    return signed(other, b"something else")


def make_recipient(server: ApacheServer, url: str = "https://example.test/offer") -> Recipient:
    with server.session() as session:
        sender = session.scalar(select(User).where(User.name == "admin"))
        recipient = Recipient(address="reader@example.test", token=tokens.new_token(server.config.secret_key()),
                              status="sent")
        email = Email(subject="Hi", html_body=f'<a href="{url}">offer</a>', sender_id=sender.id, tracking=True,
                      from_address="crm@example.test", recipients=[recipient])
        session.add(email)
        session.flush()
        session.add(EmailLink(email_id=email.id, position=0, url=url))
        session.commit()
        return recipient


def daemons_rss_kb(server: ApacheServer) -> int:
    """The resident memory of the server's mod_wsgi daemon processes (in its process group), in KB."""
    assert server.process is not None
    total, daemons = 0, 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != server.process.pid:
                continue
            if not Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"(wsgi:"):
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ProcessLookupError):
            continue
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status)[1])
        daemons += 1
    assert daemons == server.install.processes
    return total


def post_stream(server: ApacheServer, path: str, headers: dict[str, str], size: int,
                chunked: bool = False) -> int:
    """POSTs ``size`` bytes of a JSON-looking body in 1 MB pieces, as a client that does not wait
    for the answer before sending; the answer's status (the server may answer early and stop reading)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        else:
            connection.putheader("Content-Length", str(size))
        connection.endheaders()
        piece = b"[" + b" " * (MB - 1)
        try:
            for offset in range(0, size, MB):
                data = piece[:min(MB, size - offset)]
                connection.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the body was all sent: the answer waits to be read
        return connection.getresponse().status
    finally:
        connection.close()


def burst(server: ApacheServer, path: str, headers: dict[str, str], chunked: bool = False,
          size: int = BIG) -> set[int]:
    """BURST posts of ``size`` bytes at once; the statuses answered."""
    with ThreadPoolExecutor(BURST) as pool:
        return set(pool.map(lambda _: post_stream(server, path, headers, size, chunked), range(BURST)))


def settle(server: ApacheServer) -> int:
    """The daemons' memory once every thread of both has answered small forged posts (so each has
    loaded the application and opened its database connection, as the bursts will)."""
    headers = {"Content-Type": "application/json", **bogus_signature()}
    with ThreadPoolExecutor(BURST) as pool:
        list(pool.map(lambda _: server.request("POST", WEBHOOK, body=b"[]", headers=headers), range(6 * BURST)))
    time.sleep(0.5)
    return daemons_rss_kb(server)


@pytest.mark.slow
def test_a_burst_of_large_forged_webhook_posts_leaves_the_daemons_memory_where_it_was(apache):
    """No key configured (the state of every install until SendGrid is set up), then with one:
    no signature, a malformed one, a well-formed one no key made; declared lengths and chunked."""
    before = settle(apache)
    answers = {"no key, no signature": burst(apache, WEBHOOK, {}),
               "no key, within the cap": burst(apache, WEBHOOK, bogus_signature(), size=sendgrid.MAX_BODY_BYTES),
               "no key, chunked": burst(apache, WEBHOOK, bogus_signature(), chunked=True)}
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with apache.session() as session:
        SettingsService(session, apache.config).update({"sendgrid_webhook_key": base64.b64encode(der).decode()},
                                                       user_name="test")
    answers |= {
        "malformed signature": burst(apache, WEBHOOK, {sendgrid.SIGNATURE_HEADER: "%%%",
                                                       sendgrid.TIMESTAMP_HEADER: "soon"}),
        "bogus signature": burst(apache, WEBHOOK, bogus_signature()),
        "bogus signature, chunked": burst(apache, WEBHOOK, bogus_signature(), chunked=True),
        "no signature, chunked": burst(apache, WEBHOOK, {}, chunked=True),
    }
    grown = daemons_rss_kb(apache) - before
    assert grown < ALLOWED_GROWTH_KB, f"the daemons grew by {grown // 1024} MB"
    assert answers == {
        "no key, no signature": {413}, "no key, within the cap": {403}, "no key, chunked": {411},
        "malformed signature": {413},
        "bogus signature": {413}, "bogus signature, chunked": {411}, "no signature, chunked": {411}}


@pytest.mark.slow
def test_a_large_post_to_the_unsubscribe_path_is_refused_unread(apache):
    recipient = make_recipient(apache)
    path = f"{unsubscribe.UNSUBSCRIBE_PATH}?t={recipient.token}"
    before = settle(apache)
    assert burst(apache, path, {"Content-Type": "application/x-www-form-urlencoded"}) == {413}
    assert burst(apache, path, {"Content-Type": "application/x-www-form-urlencoded"}, chunked=True) \
        <= CHUNKED_REFUSED
    assert daemons_rss_kb(apache) - before < ALLOWED_GROWTH_KB
    with apache.session() as session:  # nothing was done with them: the address has no opt-out yet
        assert session.scalars(select(Lead).where(Lead.email == recipient.address)).all() == []
    one_click = apache.request("POST", path, body=b"List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert one_click.status == 200 and b"You are unsubscribed" in one_click.body


@pytest.mark.slow
def test_the_webhook_refuses_before_reading_and_reads_within_its_cap(apache, signing_key):
    recipient = make_recipient(apache)
    event = {"event": "delivered", "sg_event_id": f"ev-cap-{apache.form}", "timestamp": int(time.time()),
             sendgrid.UNIQUE_ARG: recipient.token, "response": "250 OK"}
    # A signed batch filled up to the cap (SendGrid's are at most 768 KB and one event more) is taken.
    body = json.dumps([event]).encode()
    body = body[:-1] + b" " * (sendgrid.MAX_BODY_BYTES - len(body)) + b"]"
    assert len(body) == sendgrid.MAX_BODY_BYTES
    reply = apache.request("POST", WEBHOOK, body=body, headers={"Content-Type": "application/json",
                                                                **signed(signing_key, body)})
    assert reply.status == 204, apache.error_log()
    with apache.session() as session:
        assert session.get(Recipient, recipient.id).delivery_status == "delivered"
    # One byte more is not read, whoever signed it.
    over = body + b" "
    for headers in (signed(signing_key, over), bogus_signature(), {}):
        assert post_stream(apache, WEBHOOK, headers, 0) == 403  # an empty body reaches the application
        reply = apache.request("POST", WEBHOOK, body=over, headers={"Content-Type": "application/json", **headers})
        assert reply.status == 413
        assert post_stream(apache, WEBHOOK, headers, len(over), chunked=True) in CHUNKED_REFUSED


@pytest.mark.slow
def test_every_answer_of_every_public_path_carries_a_deliberate_type(apache, signing_key):
    recipient = make_recipient(apache)
    secret = apache.config.secret_key()
    click = clicks.click_url("", 0, recipient.token, clicks.link_mac(secret, recipient.token, 0))
    events = json.dumps([{"event": "processed", "sg_event_id": f"ev-type-{apache.form}",
                          "timestamp": int(time.time()), sendgrid.UNIQUE_ARG: recipient.token}]).encode()
    not_events = b'{"event": "processed"}'
    answers = {
        "image": apache.request("GET", f"/modules/Emails/TrackAccess.php?t={recipient.token}"),
        "image, HEAD": apache.request("HEAD", "/modules/Emails/TrackAccess.php?t=x"),
        "click": apache.request("GET", click),
        "click, HEAD": apache.request("HEAD", click),
        "click, bad token": apache.request("GET", clicks.CLICK_PATH + "?c=0.x.y"),
        "webhook, signed": apache.request("POST", WEBHOOK, body=events, headers=signed(signing_key, events)),
        "webhook, forged": apache.request("POST", WEBHOOK, body=events, headers=bogus_signature()),
        "webhook, not events": apache.request("POST", WEBHOOK, body=not_events,
                                              headers=signed(signing_key, not_events)),
        "webhook, too large": apache.request("POST", WEBHOOK, body=b" " * (sendgrid.MAX_BODY_BYTES + 1)),
        "webhook, GET": apache.request("GET", WEBHOOK),
        "unsubscribe page": apache.request("GET", f"{unsubscribe.UNSUBSCRIBE_PATH}?t={recipient.token}"),
        "unsubscribe page, bad token": apache.request("GET", f"{unsubscribe.UNSUBSCRIBE_PATH}?t=x"),
        "unsubscribe, too large": apache.request("POST", f"{unsubscribe.UNSUBSCRIBE_PATH}?t=x",
                                                 body=b"x" * (unsubscribe.MAX_BODY_BYTES + 1)),
        "unsubscribe": apache.request("POST", f"{unsubscribe.UNSUBSCRIBE_PATH}?t={recipient.token}",
                                      body=b"List-Unsubscribe=One-Click"),
        "unsubscribe, bad token": apache.request("POST", f"{unsubscribe.UNSUBSCRIBE_PATH}?t=x", body=b""),
        "consent page": apache.request("GET", f"{consent.CONSENT_PATH}?t={recipient.token}"),
        "consent, bad token": apache.request("POST", f"{consent.CONSENT_PATH}?t=x", body=b"answer=accept"),
        "withdrawal page, bad token": apache.request("GET", f"{consent.WITHDRAWAL_PATH}?t=x"),
        "withdrawal, too large": apache.request("POST", f"{consent.WITHDRAWAL_PATH}?t=x",
                                                body=b"x" * (consent_page.MAX_BODY_BYTES + 1)),
        "withdrawal": apache.request("POST", f"{consent.WITHDRAWAL_PATH}?t={recipient.token}", body=b""),
    }
    # A 204 carries no type at all: Apache removes it from a no-content answer (and adds none).
    wrong = {name: reply.headers.get("content-type") for name, reply in answers.items()
             if not DELIBERATE_TYPES.match(reply.headers.get("content-type", ""))
             and not (reply.status == 204 and "content-type" not in reply.headers)}
    assert wrong == {}
    statuses = {name: reply.status for name, reply in answers.items()}
    assert statuses["webhook, GET"] in (401, 403, 405)  # Apache refuses the method, or the application
    assert statuses == {
        "image": 200, "image, HEAD": 200, "click": 302, "click, HEAD": 302, "click, bad token": 404,
        "webhook, signed": 204, "webhook, forged": 403, "webhook, not events": 400, "webhook, too large": 413,
        "webhook, GET": statuses["webhook, GET"],
        "unsubscribe page": 200, "unsubscribe page, bad token": 400, "unsubscribe, too large": 413,
        "unsubscribe": 200, "unsubscribe, bad token": 400, "consent page": 200, "consent, bad token": 400,
        "withdrawal page, bad token": 400, "withdrawal, too large": 413, "withdrawal": 200}, apache.error_log()


# -- the application alone (every server: Apache, 'coretrack serve', any WSGI server) -------------


class Body(RawIOBase):
    """A request body of ``size`` bytes that counts what the application reads of it."""

    def __init__(self, size: int):
        self.size, self.read_so_far = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.read_so_far)
        buffer[:count] = b" " * count
        self.read_so_far += count
        return count


def post_body(app, path: str, body: Body, headers: dict[str, str] | None = None, chunked: bool = False) -> int:
    """The application's status for a POST of ``body``; chunked: no length declared, the server
    marks the stream as ending by itself (as Werkzeug's server does for a chunked body)."""
    environ = EnvironBuilder(path=path, method="POST", headers=headers or {}).get_environ()
    environ["wsgi.input"] = body
    if chunked:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(body.size)
    statuses: list[str] = []
    b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return int(statuses[0].split()[0])


def public_posts() -> list[str]:
    return sorted({rule.rule for rule in URL_MAP.iter_rules()
                   if getattr(HANDLERS.get(rule.endpoint), "public", False) and "POST" in (rule.methods or ())})


def test_every_public_post_states_its_cap_and_apache_enforces_the_same():
    assert public_posts() == [consent.CONSENT_PATH, consent.WITHDRAWAL_PATH, unsubscribe.UNSUBSCRIBE_PATH,
                              WEBHOOK]
    caps = {path: max_body(HANDLERS[URL_MAP.bind("").match(path, method="POST")[0]]) for path in public_posts()}
    assert caps == {unsubscribe.UNSUBSCRIBE_PATH: unsubscribe.MAX_BODY_BYTES, WEBHOOK: sendgrid.MAX_BODY_BYTES,
                    consent.CONSENT_PATH: consent_page.MAX_BODY_BYTES,
                    consent.WITHDRAWAL_PATH: consent_page.MAX_BODY_BYTES}
    assert public_body_limits() == caps


@pytest.mark.parametrize("path", public_posts())
def test_every_public_post_refuses_a_body_past_its_cap_unread_declared_or_chunked(app, db, path):
    """With a webhook key configured, so that the webhook reads a body whose headers look signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    SettingsService(db, app.config).update({"sendgrid_webhook_key": base64.b64encode(der).decode()}, user_name="t")
    cap = max_body(HANDLERS[URL_MAP.bind("").match(path, method="POST")[0]])
    declared = Body(cap + 1)
    assert post_body(app, path + "?t=x", declared, signed(key, b"")) == 413
    assert declared.read_so_far == 0
    chunked = Body(BIG)
    assert post_body(app, path + "?t=x", chunked, signed(key, b""), chunked=True) \
        == (413 if path == WEBHOOK else 400)  # a person's page reads no body when its token is bad
    assert chunked.read_so_far <= cap + 64 * 1024  # Werkzeug reads in pieces of at most 64 KB


def test_an_unsigned_webhook_delivery_is_refused_before_its_body_is_read(app, db):
    body = Body(sendgrid.MAX_BODY_BYTES)
    good_shape = bogus_signature()
    assert post_body(app, WEBHOOK, body, good_shape) == 403  # no key configured
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    SettingsService(db, app.config).update({"sendgrid_webhook_key": base64.b64encode(der).decode()}, user_name="t")
    now = int(time.time())
    for headers in ({}, {sendgrid.TIMESTAMP_HEADER: str(now)}, {sendgrid.SIGNATURE_HEADER: good_shape[
                        sendgrid.SIGNATURE_HEADER]},
                    {**good_shape, sendgrid.SIGNATURE_HEADER: "%%%"},
                    {**good_shape, sendgrid.SIGNATURE_HEADER: "A" * 4000},
                    {**good_shape, sendgrid.TIMESTAMP_HEADER: "soon"},
                    {**good_shape, sendgrid.TIMESTAMP_HEADER: str(now - sendgrid.MAX_AGE_SECONDS - 60)},
                    {**good_shape, sendgrid.TIMESTAMP_HEADER: str(now + 3600)}):
        assert post_body(app, WEBHOOK, body, headers) == 403, headers
    assert body.read_so_far == 0
    assert post_body(app, WEBHOOK, body, good_shape) == 403  # well formed: read, then refused
    assert body.read_so_far == sendgrid.MAX_BODY_BYTES
