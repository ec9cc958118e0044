"""The anonymous surface.  Every rule here must also be an exact exception in apache/."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..delivery_reports import sendgrid
from ..http import AppRequest, body_limit, public
from ..people import consent_page, suppression, unsubscribe
from ..people.consent import CONSENT_PATH, WITHDRAWAL_PATH, ConsentError
from ..people.unsubscribe import UNSUBSCRIBE_PATH
from ..tracking import clicks, tokens
from ..tracking.image import GIF, GIF_HEADERS, TRACK_ACCESS_PATH, token_of_query
from ..tracking.tracker import Tracker

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

IMAGE_METHODS = frozenset({"GET", "HEAD"})
_BODY = (GIF,)
_NO_BODY = ()


def serve_image(tracker: Tracker, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Always the same GIF: good, bad, missing token or database down alike.

    A bare WSGI function, which the application calls for the image's path before building any
    request, URL map match or response: the image is loaded far more often than any page.  The
    ``t`` query argument (or coreBOS's image arguments) and the client's address are read as
    Werkzeug's request reads them.
    """
    if environ["REQUEST_METHOD"] != "GET":
        start_response("200 OK", list(GIF_HEADERS))
        return _NO_BODY  # HEAD: the headers only, and nothing counted
    token = token_of_query(tracker.secret, environ.get("QUERY_STRING", ""))
    tracker.hit(token, environ.get("REMOTE_ADDR") or "", environ.get("HTTP_USER_AGENT", ""))
    start_response("200 OK", list(GIF_HEADERS))  # a copy: a server may add to the list it is given
    return _BODY


@public
def track_access(request: AppRequest) -> Response:
    """The image's rule, for the URL map's listings; the application answers the path itself
    (serve_image), so this is reached only by a caller of ``wsgi_app``."""
    return Response.from_app(partial(serve_image, request.app.tracker), request.environ)


@public
@body_limit(sendgrid.MAX_BODY_BYTES)
def sendgrid_events(request: AppRequest) -> Response:
    """SendGrid's Event Webhook: 403 for anything it did not sign just now (no detail), decided from
    the headers and the key before the body is read; 413 past MAX_BODY_BYTES; 400 for a signed body
    that is not a list of events; 204 once its well-formed events are stored (a malformed one is
    skipped and logged); else SendGrid retries."""
    try:
        signature = sendgrid.signature_of(request.headers.get(sendgrid.SIGNATURE_HEADER, ""),
                                          request.headers.get(sendgrid.TIMESTAMP_HEADER, ""))
        settings = request.app.settings(request.db)
        key = settings.get("sendgrid_webhook_key")
        if not key:
            raise sendgrid.Refused
        body = request.read_body()  # at most MAX_BODY_BYTES, chunked or not (413 past it)
        sendgrid.receive(request.db, request.app.config.secret_key(), key, signature,
                         request.headers[sendgrid.TIMESTAMP_HEADER], body, settings.soft_bounce_rule())
    except sendgrid.Refused:
        return Response("forbidden\n", 403, mimetype="text/plain")
    except sendgrid.Malformed as exc:
        return Response(f"{exc}\n", 400, mimetype="text/plain")
    except RequestEntityTooLarge:
        return Response(f"at most {sendgrid.MAX_BODY_BYTES} bytes may be posted here\n", 413, mimetype="text/plain")
    except IntegrityError:
        # The same events stored by a concurrent delivery of this batch: nothing of this one was kept.
        request.db.rollback()
        return Response("stored meanwhile by another request; retry\n", 409, mimetype="text/plain")
    except DBAPIError:
        request.db.rollback()
        return Response("the database is unavailable; retry later\n", 503, mimetype="text/plain")
    stored = Response(status=204)
    del stored.headers["Content-Type"]  # no content, so no type (CoreTrack.wsgi_app adds none to a 204)
    return stored


def _unsubscribe_page(request: AppRequest, state: str, status: int = 200) -> Response:
    # "invalid" for a forged, mangled, missing or unknown token alike: a stranger learns nothing.
    return request.render("public/unsubscribe.html", status=status, state=state, token=request.args.get("t", ""))


@public
def unsubscribe_form(request: AppRequest) -> Response:
    """The link in the footer: a confirmation page with a button, and nothing changed (mail scanners
    and link previews follow links).  Only the signature is checked: the page needs no database."""
    if not tokens.verify(request.app.secret, request.args.get("t")):
        return _unsubscribe_page(request, "invalid", 400)
    return _unsubscribe_page(request, "confirm")


@public
@body_limit(unsubscribe.MAX_BODY_BYTES)
def unsubscribe_now(request: AppRequest) -> Response:
    """The confirmation button, and RFC 8058's one-click POST (body ``List-Unsubscribe=One-Click``) that
    mail providers send on the recipient's behalf without cookies: it opts out at once.

    The one public POST form, so no CSRF token (dispatch checks none for @public handlers): the mail
    provider's request cannot carry one, and the signed per-recipient token is the authority.  A
    forged request can only unsubscribe the address whose token it holds, which is what the token's
    owner can do anyway."""
    # The page's button says so; a mail provider's one-click POST carries RFC 8058's body alone.
    source = suppression.LINK if request.form.get("from") == "page" else suppression.ONE_CLICK
    try:
        done = unsubscribe.unsubscribe(request.db, request.app.secret, request.args.get("t"), source)
    except DBAPIError:
        request.db.rollback()
        return _unsubscribe_page(request, "unavailable", 503)
    return _unsubscribe_page(request, "done") if done else _unsubscribe_page(request, "invalid", 400)


# The consent and withdrawal pages: like the unsubscribe page, one POST form each without a CSRF token
# (dispatch checks none for @public handlers).  The signed per-recipient token in the query is the
# authority: a forged request can only decide for the address whose token it holds, which is what the
# token's owner can do anyway, and a mail provider's one-click POST (RFC 8058) carries no token of ours.


def _visitor(request: AppRequest) -> consent_page.Visitor:
    return consent_page.Visitor(request.environ.get("REMOTE_ADDR") or "", request.headers.get("User-Agent", ""))


def _person_page(request: AppRequest, template: str, state: str, status: int = 200,
                 visit: consent_page.Visit | None = None, **context: object) -> Response:
    # "invalid" for a forged, mangled, missing, unknown or erased person's token alike.
    if visit is not None:
        settings = request.app.settings(request.db)
        context.update(sender=settings.get("from_name") or settings.get("from_address"),
                       ip_policy=settings.get("ip_storage"))
    return request.render(template, status=status, state=state, token=request.args.get("t", ""), visit=visit,
                          **context)


@public
def consent_form(request: AppRequest) -> Response:
    """The consent link: the consent text, what is measured, by whom and how to withdraw, with Accept
    and Refuse (Withdraw once accepted).  Nothing changed: mail scanners and link previews follow links."""
    return _asking_page(request, "public/consent.html", "ask")


def _asking_page(request: AppRequest, template: str, state: str) -> Response:
    """A person's page before they answer: ``state`` for a good token, else the one invalid page."""
    try:
        visit = consent_page.visit(request.db, request.app.secret, request.args.get("t"))
        if visit is None:
            return _person_page(request, template, "invalid", 400)
        return _person_page(request, template, state, visit=visit)
    except DBAPIError:
        request.db.rollback()
        return _person_page(request, template, "unavailable", 503)


@public
@body_limit(consent_page.MAX_BODY_BYTES)
def consent_answer(request: AppRequest) -> Response:
    """The consent page's buttons: records the answer, with the consent text version the page showed
    (posted back), and shows it.  No CSRF token: see above."""
    token = request.args.get("t")
    if not tokens.verify(request.app.secret, token):
        return _person_page(request, "public/consent.html", "invalid", 400)  # its body unread
    try:
        recorded = consent_page.answer(request.db, request.app.secret, token, request.form.get("answer"),
                                       request.form.get("version"), _visitor(request),
                                       request.app.settings(request.db).get("ip_storage"))
        if recorded is None:
            return _person_page(request, "public/consent.html", "invalid", 400)
        return _person_page(request, "public/consent.html", recorded)
    except ConsentError as exc:
        # The page again, with the current text: nothing was recorded.
        request.db.rollback()
        visit = consent_page.visit(request.db, request.app.secret, token)
        return _person_page(request, "public/consent.html", "ask" if visit else "invalid", 400, visit=visit,
                            error=str(exc))
    except DBAPIError:
        request.db.rollback()
        return _person_page(request, "public/consent.html", "unavailable", 503)


@public
def withdrawal_form(request: AppRequest) -> Response:
    """The "Stop measuring my reading" link of every measured message: asks, and changes nothing."""
    return _asking_page(request, "public/stop_measuring.html", "confirm")


@public
@body_limit(consent_page.MAX_BODY_BYTES)
def withdraw_now(request: AppRequest) -> Response:
    """The withdrawal page's button, and a one-click POST like RFC 8058's (any body or none): withdraws
    at once; with the page's "delete" box, also deletes what was measured.  No CSRF token: see above."""
    if not tokens.verify(request.app.secret, request.args.get("t")):
        return _person_page(request, "public/stop_measuring.html", "invalid", 400)  # its body unread
    try:
        done = consent_page.withdraw(request.db, request.app.secret, request.args.get("t"),
                                     request.form.get("delete") in ("on", "yes"), _visitor(request),
                                     request.app.settings(request.db).get("ip_storage"))
    except DBAPIError:
        request.db.rollback()
        return _person_page(request, "public/stop_measuring.html", "unavailable", 503)
    if done is None:
        return _person_page(request, "public/stop_measuring.html", "invalid", 400)
    return _person_page(request, "public/stop_measuring.html", "done", deleted=done.deleted is not None)


# One answer for every click that is not a good one (bad, tampered, missing token, unknown link):
# a stranger learns nothing of which tokens exist.
_NO_SUCH_LINK = ("<!doctype html><title>Link not found</title><p>This link is not valid.</p>\n", 404)


@public
def follow_link(request: AppRequest) -> Response:
    """A rewritten link: 302 to the URL stored for it, after recording the click.  A HEAD is
    recorded like a GET: mod_wsgi hands the application a HEAD as a GET, so the two cannot be told
    apart under Apache (the scanner rule judges it like any other click)."""
    parsed = clicks.parse(request.app.config.secret_key(), request.query_string.decode("latin-1"))
    if parsed is None:
        return Response(*_NO_SUCH_LINK, mimetype="text/html")
    try:
        found = clicks.target(request.db, *parsed)
        if found is None:
            return Response(*_NO_SUCH_LINK, mimetype="text/html")
        recipient, link = found
        settings = request.app.settings(request.db)
        if settings.tracking_enabled:
            clicks.record(request.db, recipient, link, request.environ.get("REMOTE_ADDR") or "",
                          request.headers.get("User-Agent", ""), settings.get("ip_storage") or "truncated")
    except DBAPIError:
        request.db.rollback()
        return Response("<!doctype html><title>Unavailable</title><p>This link cannot be followed just now; "
                        "try again in a minute.</p>\n", 503, mimetype="text/html", headers={"Retry-After": "60"})
    # No body, and a type of its own: Apache would give the answer the WSGI script's otherwise.
    return Response(status=302, mimetype="text/plain", headers={"Location": link.url, "Cache-Control": "no-store",
                                                                "Referrer-Policy": "no-referrer"})


rules = [
    Rule(TRACK_ACCESS_PATH, endpoint="public.track_access", methods=sorted(IMAGE_METHODS)),
    Rule(clicks.CLICK_PATH, endpoint="public.follow_link", methods=["GET", "HEAD"]),
    Rule("/webhooks/sendgrid", endpoint="public.sendgrid_events", methods=["POST"]),
    Rule(UNSUBSCRIBE_PATH, endpoint="public.unsubscribe_form", methods=["GET"]),  # and HEAD
    Rule(UNSUBSCRIBE_PATH, endpoint="public.unsubscribe_now", methods=["POST"]),
    Rule(CONSENT_PATH, endpoint="public.consent_form", methods=["GET"]),  # and HEAD
    Rule(CONSENT_PATH, endpoint="public.consent_answer", methods=["POST"]),
    Rule(WITHDRAWAL_PATH, endpoint="public.withdrawal_form", methods=["GET"]),  # and HEAD
    Rule(WITHDRAWAL_PATH, endpoint="public.withdraw_now", methods=["POST"]),
]
