"""Every shipped Apache form, on a real Apache 2.4 with mod_wsgi: auth everywhere, one exact exception."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from support.apache import ADMIN_PASSWORD, DISABLED_PASSWORD, STAFF_PASSWORD, ApacheServer
from support.hit_load import wait_until

from coretrack.models import AccessEvent, Email, Recipient, User
from coretrack.tracking import tokens
from coretrack.tracking.image import GIF

pytestmark = pytest.mark.slow

ENDPOINT = "/modules/Emails/TrackAccess.php"
FORMS = [(form, prefix) for form in ("site", "express", "htaccess") for prefix in ("", "/crm")]


@pytest.fixture(scope="module", params=FORMS, ids=[f"{form}{prefix or '-root'}" for form, prefix in FORMS])
def apache(request):
    form, prefix = request.param
    server = ApacheServer(form, prefix)
    try:
        yield server.start()
    finally:
        server.stop()


def make_recipient(server: ApacheServer, address: str = "reader@example.test") -> Recipient:
    with server.session() as session:
        sender = session.scalar(select(User).where(User.name == "admin"))
        recipient = Recipient(address=address, token=tokens.new_token(server.config.secret_key()),
                              status="sent")
        session.add(Email(subject="Hi", html_body="<p>hi</p>", sender_id=sender.id,
                          from_address="crm@example.test", recipients=[recipient]))
        session.commit()
        return recipient


def access_count(server: ApacheServer, recipient_id: int) -> tuple[int, int]:
    with server.session() as session:
        count = session.get(Recipient, recipient_id).access_count
        events = len(session.scalars(select(AccessEvent.id).where(AccessEvent.recipient_id == recipient_id)).all())
        return count, events


def test_the_generated_config_passes_apache_configtest(apache):
    result = apache.configtest()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Syntax OK" in result.stdout + result.stderr


@pytest.mark.parametrize("path", ["/", "/emails", "/emails/new", "/api/emails", "/settings", "/users",
                                  "/static/coretrack.css", "/contacts"])
def test_anonymous_requests_are_refused_by_apache(apache, path):
    reply = apache.request("GET", apache.prefix + path)
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Basic")
    assert not reply.from_app


def test_the_image_endpoint_answers_anonymously_and_counts(apache):
    recipient = make_recipient(apache)
    reply = apache.request("GET", f"{apache.prefix}{ENDPOINT}?t={recipient.token}",
                           headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0"})
    assert (reply.status, reply.headers["content-type"], reply.body) == (200, "image/gif", GIF)
    assert reply.headers["cache-control"] == "no-store, no-cache, must-revalidate, private"
    wait_until(lambda: access_count(apache, recipient.id) == (1, 1), "the hit to be counted", 10)
    assert ENDPOINT in apache.logs() or apache.form == "express"  # express keeps no access log
    assert recipient.token not in apache.logs()


def test_a_valid_user_reaches_the_ui_and_the_app_knows_who_it_is(apache):
    reply = apache.request("GET", apache.prefix + "/emails", user=("sam", STAFF_PASSWORD))
    assert reply.status == 200, apache.error_log()
    assert b"sam" in reply.body and b"(staff; times in UTC)" in reply.body
    static = apache.request("GET", apache.prefix + "/static/coretrack.css", user=("sam", STAFF_PASSWORD))
    assert static.status == 200 and b"coretrack" in static.body


def test_roles_come_from_the_database_under_apache(apache):
    assert apache.request("GET", apache.prefix + "/settings", user=("sam", STAFF_PASSWORD)).status == 403
    assert apache.request("GET", apache.prefix + "/settings", user=("admin", ADMIN_PASSWORD)).status == 200


def test_a_wrong_password_is_refused_by_apache(apache):
    reply = apache.request("GET", apache.prefix + "/emails", user=("sam", "not-the-password"))
    assert reply.status == 401 and not reply.from_app


def test_a_disabled_user_gets_403(apache):
    reply = apache.request("GET", apache.prefix + "/emails", user=("dora", DISABLED_PASSWORD))
    assert reply.status == 403
    assert b"disabled" in reply.body


# Anonymous requests that must not reach any part of the application but the image endpoint.
# "endpoint": Apache normalises the path to the endpoint itself, which answers the GIF.
# "refused": Apache answers by itself (401/403/404/400/405), the application never sees it.
TRICKY = [
    ("GET", "{e}/", "refused"),
    ("GET", "{e}/x", "refused"),
    ("GET", "{e}/../../../emails", "refused"),
    ("GET", "{e};jsessionid=1", "refused"),
    ("GET", "{e}%00", "refused"),
    ("GET", "{e}%2f", "refused"),
    ("GET", "{e}%2Fx", "refused"),
    ("GET", "{e}x", "refused"),
    ("GET", "{e}.bak", "refused"),
    ("GET", "{e}~", "refused"),
    ("GET", "{e}%20", "refused"),
    ("GET", "{e}%0a", "refused"),
    ("GET", "{e}/%2e%2e/emails", "refused"),
    ("GET", "{p}/modules/Emails/TrackAccess.PHP", "refused"),
    ("GET", "{p}/modules/emails/TrackAccess.php", "refused"),
    ("GET", "{p}/MODULES/Emails/TrackAccess.php", "refused"),
    ("GET", "{p}/modules/Emails/trackaccess.php", "refused"),
    ("GET", "{p}/modules/Emails/TrackAccess", "refused"),
    ("GET", "{p}/modules/Emails/", "refused"),
    ("GET", "{p}/modules/Emails/TrackAccess%2ephp/x", "refused"),
    ("GET", "{p}/modules/Emails/../Emails/TrackAccess.php/x", "refused"),
    ("GET", "{p}/modules/Emails/TrackAccess.php\\..\\..\\emails", "refused"),
    ("GET", "{p}/%65mails", "refused"),
    ("GET", "{p}//emails", "refused"),
    ("GET", "{p}/./emails", "refused"),
    ("GET", "{p}/emails?x=/modules/Emails/TrackAccess.php", "refused"),
    ("GET", "{p}/emails#/modules/Emails/TrackAccess.php", "refused"),
    ("GET", "{p}/api/emails/1", "refused"),
    ("GET", "/", "refused"),
    ("POST", "{e}", "refused"),
    ("PUT", "{e}", "refused"),
    ("DELETE", "{e}", "refused"),
    ("PATCH", "{e}", "refused"),
    ("OPTIONS", "{e}", "refused"),
    ("TRACE", "{e}", "refused"),
    ("PROPFIND", "{e}", "refused"),
    ("GET", "{p}//modules//Emails//TrackAccess.php", "endpoint"),
    ("GET", "{p}/./modules/Emails/./TrackAccess.php", "endpoint"),
    ("GET", "{p}/x/../modules/Emails/TrackAccess.php", "endpoint"),
    ("GET", "{p}/modules/Emails/TrackAccess%2ephp", "endpoint"),
    ("GET", "{e}?t=../../emails", "endpoint"),
    ("HEAD", "{e}", "endpoint"),
]


def tricky_path_failures(server: ApacheServer) -> list[str]:
    """The TRICKY requests (and, under a prefix, the endpoint without it) that got another answer."""
    # Under a prefix, the endpoint's path without the prefix is nothing public.
    extra = [("GET", ENDPOINT, "refused"), ("GET", ENDPOINT + "?t=x", "refused")] if server.prefix else []
    wrong = []
    for method, template, expected in TRICKY + extra:
        path = template.format(e=server.prefix + ENDPOINT, p=server.prefix)
        reply = server.request(method, path)
        if expected == "endpoint":
            ok = reply.status == 200 and reply.headers.get("content-type") == "image/gif" and (
                method == "HEAD" or reply.body == GIF)
        else:
            ok = reply.status in (400, 401, 403, 404, 405, 501) and not reply.from_app and reply.body != GIF
        if not ok:
            wrong.append(f"{method} {path} -> {reply.status} {reply.body[:80]!r}")
    return wrong


def test_tricky_anonymous_paths_reach_nothing_but_the_image_endpoint(apache):
    assert len(TRICKY) >= 25
    assert tricky_path_failures(apache) == []


WEBHOOK = "/webhooks/sendgrid"
# Anonymous requests around SendGrid's webhook: only an exact POST reaches it ("webhook": the
# application's own refusal of an unsigned delivery); "either": Apache may normalise the path to
# the webhook's or refuse it, but nothing else answers.
WEBHOOK_TRICKY = [
    ("POST", "{w}/", "refused"),
    ("POST", "{w}x", "refused"),
    ("POST", "{w}.php", "refused"),
    ("POST", "{w}%2f", "refused"),
    ("POST", "{w}%2Fx", "refused"),
    ("POST", "{w};x=1", "refused"),
    ("POST", "{w}%00", "refused"),
    ("POST", "{w}/../../emails", "refused"),
    ("POST", "{p}/webhooks/SendGrid", "refused"),
    ("POST", "{p}/WEBHOOKS/sendgrid", "refused"),
    ("POST", "{p}/webhooks/", "refused"),
    ("POST", "{p}/webhooks", "refused"),
    ("POST", "{p}/webhooks/sendgrid\\..\\emails", "refused"),
    ("POST", "{p}/emails?x=/webhooks/sendgrid", "refused"),
    ("GET", "{w}", "refused"),
    ("HEAD", "{w}", "refused"),
    ("PUT", "{w}", "refused"),
    ("DELETE", "{w}", "refused"),
    ("POST", "{w}", "webhook"),
    ("POST", "{w}?x=1", "webhook"),
    ("POST", "{p}//webhooks//sendgrid", "either"),
    ("POST", "{p}/./webhooks/sendgrid", "either"),
    ("POST", "{p}/x/../webhooks/sendgrid", "either"),
    ("POST", "{p}/webhooks/sendgri%64", "either"),
]


def test_tricky_anonymous_paths_reach_nothing_but_the_sendgrid_webhook(apache):
    extra = [("POST", WEBHOOK, "refused")] if apache.prefix else []
    wrong = []
    for method, template, expected in WEBHOOK_TRICKY + extra:
        path = template.format(w=apache.prefix + WEBHOOK, p=apache.prefix)
        reply = apache.request(method, path, body=b"[]", headers={"Content-Type": "application/json"})
        webhook = reply.status == 403 and reply.from_app and reply.body == b"forbidden\n"
        refused = reply.status in (400, 401, 403, 404, 405, 501) and not reply.from_app
        if not {"webhook": webhook, "refused": refused, "either": webhook or refused}[expected]:
            wrong.append(f"{method} {path} -> {reply.status} {reply.body[:80]!r}")
    assert wrong == []


def test_a_signed_sendgrid_event_goes_through_apache_anonymously(apache):
    import base64
    import json
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from coretrack.delivery_reports import sendgrid
    from coretrack.settings import SettingsService

    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    with apache.session() as session:
        SettingsService(session, apache.config).update({"sendgrid_webhook_key": public.decode()}, user_name="test")
    recipient = make_recipient(apache)
    body = json.dumps([{"event": "delivered", "sg_event_id": f"ev-{recipient.id}", "timestamp": int(time.time()),
                        sendgrid.UNIQUE_ARG: recipient.token}]).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    reply = apache.request("POST", apache.prefix + WEBHOOK, body=body, headers={
        "Content-Type": "application/json", sendgrid.SIGNATURE_HEADER: signature, sendgrid.TIMESTAMP_HEADER: stamp})
    assert reply.status == 204
    with apache.session() as session:
        assert session.get(Recipient, recipient.id).delivery_status == "delivered"


UNSUBSCRIBE = "/email/unsubscribe"
# Anonymous requests around the unsubscribe page: GET, HEAD and POST of the exact path reach it
# ("page": its neutral answer to a missing token), nothing else does.
UNSUBSCRIBE_TRICKY = [
    ("GET", "{u}/", "refused"),
    ("GET", "{u}x", "refused"),
    ("GET", "{u}.php", "refused"),
    ("GET", "{u}%2f", "refused"),
    ("GET", "{u}%2Fx", "refused"),
    ("GET", "{u};x=1", "refused"),
    ("GET", "{u}%00", "refused"),
    ("GET", "{u}/../../emails", "refused"),
    ("POST", "{u}/", "refused"),
    ("POST", "{u}.bak", "refused"),
    ("GET", "{p}/email/Unsubscribe", "refused"),
    ("GET", "{p}/EMAIL/unsubscribe", "refused"),
    ("GET", "{p}/email/", "refused"),
    ("GET", "{p}/email", "refused"),
    ("GET", "{p}/emails/unsubscribe", "refused"),
    ("GET", "{p}/email/unsubscribe\\..\\emails", "refused"),
    ("GET", "{p}/emails?x=/email/unsubscribe", "refused"),
    ("PUT", "{u}", "refused"),
    ("DELETE", "{u}", "refused"),
    ("PATCH", "{u}", "refused"),
    ("OPTIONS", "{u}", "refused"),
    ("GET", "{u}", "page"),
    ("HEAD", "{u}", "page"),
    ("POST", "{u}", "page"),
    ("GET", "{u}?t=../../emails", "page"),
    ("GET", "{p}//email//unsubscribe", "either"),
    ("GET", "{p}/./email/unsubscribe", "either"),
    ("POST", "{p}/x/../email/unsubscribe", "either"),
    ("GET", "{p}/email/unsubscrib%65", "either"),
]


def test_tricky_anonymous_paths_reach_nothing_but_the_unsubscribe_page(apache):
    assert wrong_answers(apache, UNSUBSCRIBE, UNSUBSCRIBE_TRICKY, b"List-Unsubscribe=One-Click") == []


def wrong_answers(apache, page_path: str, tricky: list[tuple[str, str, str]], body: bytes) -> list[str]:
    """The tricky anonymous requests around a person's public page that were not answered as
    expected: "page" (the page's one answer to a missing token), "refused" (by Apache, not the
    application) or "either".  Under a prefix the bare path is outside the application: refused."""
    extra = [("GET", page_path, "refused"), ("POST", page_path, "refused")] if apache.prefix else []
    wrong = []
    for method, template, expected in tricky + extra:
        path = template.format(u=apache.prefix + page_path, p=apache.prefix)
        reply = apache.request(method, path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        page = reply.status == 400 and reply.from_app and (method == "HEAD" or b"This link does not work" in reply.body)
        refused = reply.status in (400, 401, 403, 404, 405, 501) and not reply.from_app
        if not {"page": page, "refused": refused, "either": page or refused}[expected]:
            wrong.append(f"{method} {path} -> {reply.status} {reply.body[:80]!r}")
    return wrong


CONSENT, WITHDRAWAL = "/email/consent", "/email/stop-measuring"


def person_page_tricky(path: str) -> list[tuple[str, str, str]]:
    """Anonymous requests around a public page of a person's own (consent, withdrawal) at ``path``
    (/email/<name>): GET, HEAD and POST of the exact path reach it ("page": its one answer to a
    missing token), nothing else does ("either": Apache may normalise the path to the page's or
    refuse it)."""
    name = path.rpartition("/")[2]
    return [
        ("GET", "{u}/", "refused"), ("GET", "{u}/x", "refused"), ("GET", "{u}x", "refused"),
        ("GET", "{u}.php", "refused"), ("GET", "{u}%2f", "refused"), ("GET", "{u}%2Fx", "refused"),
        ("GET", "{u};x=1", "refused"), ("POST", "{u};x=1", "refused"), ("GET", "{u}%00", "refused"),
        ("GET", "{u}%20", "refused"), ("GET", "{u}~", "refused"), ("GET", "{u}/../../emails", "refused"),
        ("GET", "{u}/%2e%2e/emails", "refused"), ("POST", "{u}/", "refused"), ("POST", "{u}.bak", "refused"),
        ("GET", "{p}/email/" + name.capitalize(), "refused"), ("GET", "{p}/email/" + name.upper(), "refused"),
        ("GET", "{p}/EMAIL/" + name, "refused"), ("GET", "{p}/email/", "refused"), ("GET", "{p}/email", "refused"),
        ("GET", "{p}/emails/" + name, "refused"), ("GET", "{p}/email/" + name + "\\..\\emails", "refused"),
        ("GET", "{p}/emails?x=/email/" + name, "refused"), ("PUT", "{u}", "refused"), ("DELETE", "{u}", "refused"),
        ("PATCH", "{u}", "refused"), ("OPTIONS", "{u}", "refused"), ("TRACE", "{u}", "refused"),
        ("GET", "{u}", "page"), ("HEAD", "{u}", "page"), ("POST", "{u}", "page"),
        ("GET", "{u}?t=../../emails", "page"), ("POST", "{u}?t=../../settings", "page"),
        ("GET", "{p}//email//" + name, "either"), ("GET", "{p}/./email/" + name, "either"),
        ("POST", "{p}/x/../email/" + name, "either"), ("GET", "{p}/email/" + name[:-1] + "%" + f"{ord(name[-1]):02x}",
                                                      "either"),
    ]


@pytest.mark.parametrize("page_path", [CONSENT, WITHDRAWAL])
def test_tricky_anonymous_paths_reach_nothing_but_the_consent_and_withdrawal_pages(apache, page_path):
    assert wrong_answers(apache, page_path, person_page_tricky(page_path), b"answer=accept&version=1&delete=yes") == []


def consent_events(server: ApacheServer, address: str) -> list[tuple[str, str, int | None]]:
    from coretrack.models import Address, ConsentEvent

    with server.session() as session:
        return [(event.state, event.ip, event.email_id) for event in session.scalars(
            select(ConsentEvent).join(Address).where(Address.address == address).order_by(ConsentEvent.id))]


def test_the_consent_page_goes_through_apache_anonymously_and_only_its_post_records(apache):
    from coretrack.tracking import anonymous

    ann = make_recipient(apache, "consenting@example.test")
    bob = make_recipient(apache, "other-consenting@example.test")
    path = f"{apache.prefix}{CONSENT}?t={ann.token}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    shown = apache.request("GET", path)
    assert shown.status == 200 and b"Accept" in shown.body and b'name="version" value="1"' in shown.body
    assert apache.request("HEAD", path).status == 200
    assert consent_events(apache, ann.address) == []
    others = [tokens.new_token(apache.config.secret_key()), ann.token[:-1] + ("A" if ann.token[-1] != "A" else "B"),
              anonymous.token(apache.config.secret_key(), ann.email_id)]
    for token in others:
        reply = apache.request("POST", f"{apache.prefix}{CONSENT}?t={token}", body=b"answer=accept&version=1",
                               headers=form)
        assert reply.status == 400 and b"This link does not work" in reply.body
    assert consent_events(apache, ann.address) == []
    reply = apache.request("POST", path, body=b"answer=accept&version=1", headers=form)
    assert reply.status == 200 and b"Thank you" in reply.body
    assert consent_events(apache, ann.address) == [("granted", "127.0.0.0", ann.email_id)]
    apache.request("GET", path)
    # Another recipient's link decides for that recipient's address only.
    apache.request("POST", f"{apache.prefix}{CONSENT}?t={bob.token}", body=b"answer=decline&version=1", headers=form)
    assert consent_events(apache, ann.address) == [("granted", "127.0.0.0", ann.email_id)]
    assert consent_events(apache, bob.address) == [("refused", "127.0.0.0", bob.email_id)]


def test_the_withdrawal_page_goes_through_apache_anonymously_and_a_bare_post_withdraws(apache):
    ann = make_recipient(apache, "withdrawing@example.test")
    path = f"{apache.prefix}{WITHDRAWAL}?t={ann.token}"
    shown = apache.request("GET", path)
    assert shown.status == 200 and b"Stop measuring my reading" in shown.body
    forged = apache.request("POST", f"{apache.prefix}{WITHDRAWAL}?t={tokens.new_token(b'another key')}", body=b"")
    assert forged.status == 400 and consent_events(apache, ann.address) == []
    reply = apache.request("POST", path, body=b"")
    assert reply.status == 200 and b"no longer measured" in reply.body
    assert consent_events(apache, ann.address) == [("withdrawn", "127.0.0.0", ann.email_id)]
    too_big = apache.request("POST", path, body=b"delete=yes&" + b"x" * 2048,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert too_big.status == 413 and len(consent_events(apache, ann.address)) == 1


CLICK = "/email/click"
# Anonymous requests around the click redirect: only an exact GET or HEAD reaches it ("click": the
# application's one answer for a bad token); "either": Apache may normalise the path to the
# endpoint's or refuse it, but nothing else answers.
CLICK_TRICKY = [
    ("GET", "{c}/", "refused"),
    ("GET", "{c}x", "refused"),
    ("GET", "{c}.php", "refused"),
    ("GET", "{c}%2f", "refused"),
    ("GET", "{c}%2Fx", "refused"),
    ("GET", "{c};x=1", "refused"),
    ("GET", "{c}%00", "refused"),
    ("GET", "{c}%20", "refused"),
    ("GET", "{c}~", "refused"),
    ("GET", "{c}/../../emails", "refused"),
    ("GET", "{c}/%2e%2e/emails", "refused"),
    ("GET", "{p}/email/Click", "refused"),
    ("GET", "{p}/EMAIL/click", "refused"),
    ("GET", "{p}/email/", "refused"),
    ("GET", "{p}/email", "refused"),
    ("GET", "{p}/emails/click", "refused"),
    ("GET", "{p}/email/click\\..\\emails", "refused"),
    ("GET", "{p}/emails?x=/email/click", "refused"),
    ("POST", "{c}", "refused"),
    ("PUT", "{c}", "refused"),
    ("DELETE", "{c}", "refused"),
    ("OPTIONS", "{c}", "refused"),
    ("TRACE", "{c}", "refused"),
    ("GET", "{c}", "click"),
    ("HEAD", "{c}", "click"),
    ("GET", "{c}?c=0.x.y&url=https://evil.example", "click"),
    ("GET", "{c}?next=//evil.example", "click"),
    ("GET", "{p}//email//click", "either"),
    ("GET", "{p}/./email/click", "either"),
    ("GET", "{p}/x/../email/click", "either"),
    ("GET", "{p}/email/clic%6b", "either"),
]


def test_tricky_anonymous_paths_reach_nothing_but_the_click_endpoint(apache):
    extra = [("GET", CLICK, "refused"), ("GET", CLICK + "?c=x", "refused")] if apache.prefix else []
    wrong = []
    for method, template, expected in CLICK_TRICKY + extra:
        path = template.format(c=apache.prefix + CLICK, p=apache.prefix)
        reply = apache.request(method, path)
        click = reply.status == 404 and reply.from_app and "location" not in reply.headers and (
            method == "HEAD" or b"This link is not valid" in reply.body)
        refused = reply.status in (400, 401, 403, 404, 405, 501) and not reply.from_app
        if not {"click": click, "refused": refused, "either": click or refused}[expected]:
            wrong.append(f"{method} {path} -> {reply.status} {reply.body[:80]!r}")
    assert wrong == []


def test_a_one_click_unsubscribe_goes_through_apache_anonymously(apache):
    from coretrack.models import Contact

    # An address of its own: the server is shared by the module's tests, which mail reader@.
    recipient = make_recipient(apache, "unsubscriber@example.test")
    with apache.session() as session:
        session.add(Contact(first_name="Rea", last_name="Der", email=recipient.address))
        session.commit()
    path = f"{apache.prefix}{UNSUBSCRIBE}?t={recipient.token}"
    assert apache.request("GET", path).status == 200
    reply = apache.request("POST", path, body=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 200 and b"You are unsubscribed" in reply.body
    with apache.session() as session:
        assert session.scalar(select(Contact).where(Contact.email == recipient.address)).email_opt_out


def test_a_signed_click_goes_through_apache_anonymously_to_the_stored_url(apache):
    from coretrack.models import EmailLink
    from coretrack.tracking import clicks

    recipient = make_recipient(apache)
    with apache.session() as session:
        email_id = session.get(Recipient, recipient.id).email_id
        session.add(EmailLink(email_id=email_id, position=0, url="https://shop.example.com/a?b=1"))
        session.commit()
    mac = clicks.link_mac(apache.config.secret_key(), recipient.token, 0)
    query = f"?c=0.{recipient.token}.{mac}&next=//evil.example"
    head = apache.request("HEAD", apache.prefix + CLICK + query)
    reply = apache.request("GET", apache.prefix + CLICK + query, headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/1"})
    assert (head.status, head.headers["location"]) == (302, "https://shop.example.com/a?b=1")
    assert (reply.status, reply.headers["location"]) == (302, "https://shop.example.com/a?b=1")
    with apache.session() as session:
        assert session.get(Recipient, recipient.id).click_count == 2  # mod_wsgi hands a HEAD over as a GET


def test_with_apache_auth_removed_the_app_still_refuses_anonymous_requests():
    server = ApacheServer("site", "/crm", auth_removed=True)
    try:
        server.start()
        for path in ("/emails", "/api/emails", "/settings", "/users", "/contacts"):
            reply = server.request("GET", "/crm" + path)
            assert reply.status == 401, path
            assert reply.from_app  # the application itself said no
        recipient = make_recipient(server)
        assert server.request("GET", f"/crm{ENDPOINT}?t={recipient.token}").body == GIF
        wait_until(lambda: access_count(server, recipient.id) == (1, 1), "the hit to be counted", 10)
    finally:
        server.stop()


def test_mail_sent_through_apache_carries_the_prefix_and_its_image_counts(apache, smtp_server):
    from coretrack.settings import SettingsService

    sink, port = smtp_server
    with apache.session() as session:
        SettingsService(session, apache.config).update(
            {"smtp_host": "127.0.0.1", "smtp_port": str(port), "from_address": "crm@example.test"}, "test")
    import json

    reply = apache.request(
        "POST", apache.prefix + "/api/emails", user=("sam", STAFF_PASSWORD),
        headers={"Content-Type": "application/json"},
        body=json.dumps({"to": ["reader@example.test"], "subject": "Hello", "html": "<p>Hi</p>"}).encode())
    assert reply.status == 201, reply.body
    email_id = json.loads(reply.body)["id"]
    html = sink.received[-1].message.get_body(preferencelist=("html",)).get_content()
    (url,) = re.findall(r'src="(http://[^"]+TrackAccess\.php\?t=[^"]+)"', html)
    assert url.startswith(f"{apache.public_url}/modules/Emails/TrackAccess.php?t=")
    path = url.removeprefix(f"http://127.0.0.1:{apache.port}")
    assert apache.request("GET", path).body == GIF

    def access_count_shown() -> int:
        detail = json.loads(apache.request("GET", f"{apache.prefix}/api/emails/{email_id}",
                                           user=("sam", STAFF_PASSWORD)).body)
        return detail["recipient_list"][0]["access_count"]

    wait_until(lambda: access_count_shown() == 1, "the hit to be counted", 10)



# -- HTTPS and HSTS --------------------------------------------------------------------------

YEAR = 365 * 24 * 3600
HTTPS_FORMS = [("site", "/crm"), ("express", ""), ("htaccess", "")]


def test_plain_http_answers_carry_no_hsts(apache):
    """RFC 6797 forbids the header over plain HTTP, where anyone on the way could add or strip it."""
    for user in (("sam", STAFF_PASSWORD), None):
        reply = apache.request("GET", apache.prefix + "/emails", user=user)
        assert "strict-transport-security" not in reply.headers


@pytest.fixture(scope="module", params=HTTPS_FORMS, ids=[f"{form}{prefix or '-root'}" for form, prefix in HTTPS_FORMS])
def https_apache(request, certificates):
    form, prefix = request.param
    server = ApacheServer(form, prefix, tls=certificates)
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_https_config_passes_apache_configtest(https_apache):
    result = https_apache.configtest()
    assert result.returncode == 0, result.stdout + result.stderr


def test_over_https_every_answer_tells_browsers_to_refuse_plain_http_for_a_year(https_apache):
    server = https_apache
    recipient = make_recipient(server)
    sam = ("sam", STAFF_PASSWORD)
    replies = {
        "a page": server.request("GET", server.prefix + "/emails", user=sam),
        "the API": server.request("GET", server.prefix + "/api/emails", user=sam),
        "a static file": server.request("GET", server.prefix + "/static/coretrack.css", user=sam),
        "Apache's 401": server.request("GET", server.prefix + "/emails"),
        "the image endpoint": server.request("GET", f"{server.prefix}{ENDPOINT}?t={recipient.token}"),
    }
    assert [reply.status for reply in replies.values()] == [200, 200, 200, 401, 200], server.error_log()
    assert replies["the image endpoint"].body == GIF
    for what, reply in replies.items():
        policy = reply.headers.get("strict-transport-security", "")
        max_age = re.fullmatch(r"max-age=(\d+)", policy)
        assert max_age and int(max_age[1]) >= YEAR, (what, policy)


def test_https_needs_both_a_certificate_and_its_key(tmp_path):
    from coretrack.apache import ApacheConfigError, Install

    with pytest.raises(ApacheConfigError, match="both"):
        Install(home=tmp_path, tls_certificate=tmp_path / "cert.pem")
    with pytest.raises(ApacheConfigError, match="path"):
        Install(home=tmp_path, tls_certificate=tmp_path / "a b.pem", tls_key=tmp_path / "key.pem")


# The reference (coreBOS) documentation's .htaccess, with the directive's spelling fixed.
REFERENCE_HTACCESS = """AuthType Basic
AuthName "coretrack"
AuthUserFile {htpasswd}
Require valid-user
<FilesMatch "modules/Emails/TrackAccess.php">
    Require all granted
</FilesMatch>
"""


def test_the_reference_filesmatch_exception_never_matches_a_wsgi_url():
    """Why the shipped .htaccess uses <If>: FilesMatch sees the script's file name, never the URL."""
    def reference_form(output):
        (output / "www" / ".htaccess").write_text(REFERENCE_HTACCESS.format(htpasswd=server.config.htpasswd_path))

    server = ApacheServer("htaccess", "", edit=reference_form)
    try:
        server.start()
        reply = server.request("GET", ENDPOINT)
        assert reply.status == 401 and reply.body != GIF  # recipients' mail clients would be refused
    finally:
        server.stop()
