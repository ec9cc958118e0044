"""The WSGI application: one object, one declarative URL map, thin dispatch.

Handlers are plain functions ``handler(request, **url_values) -> Response``
beside their rules in ``coretrack.views.*``; a rule's endpoint names its
handler, module and function ("emails.show_email"), and pages and redirects
build every URL from those names.  Dispatch does what every handler would
otherwise repeat: identity and roles, CSRF on state-changing forms, errors
as HTML (or JSON under ``/api/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
    Unauthorized,
)
from werkzeug.middleware.shared_data import SharedDataMiddleware
from werkzeug.routing import IntegerConverter, Map, Rule
from werkzeug.wrappers import Response

from . import csrf, localtime
from .auth import BasicAuthMiddleware, Htpasswd
from .config import Config
from .db import MAX_ID, make_engine, make_session_factory
from .delivery_reports import classes as bounce_classes
from .http import APP_REFUSAL_HEADER, AppRequest, has_nul, json_response, max_body
from .models import User
from .notifications import unread_count
from .sending import limits, merge_fields
from .settings import SettingsService
from .tracking.image import TRACK_ACCESS_PATH
from .tracking.tracker import Tracker
from .views import (
    account,
    api,
    api_segments,
    email_reports,
    email_templates,
    emails,
    erasure,
    guardrails,
    notifications,
    public,
    received,
    records,
    reports,
    segments,
    suppressions,
    users,
    webhooks,
)
from .views import settings as settings_views

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent
# Installed wheels carry the templates inside the package; a checkout has them at the top.
TEMPLATES_DIR = next(
    path for path in (PACKAGE_DIR / "templates", PACKAGE_DIR.parent / "templates") if path.is_dir()
)
STATIC_DIR = PACKAGE_DIR / "static"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# On every response but the public endpoints' (the image stays exactly what mail clients expect).
# No inline script anywhere.  Inline styles and https images are allowed because the sandboxed
# srcdoc previews of email bodies inherit this policy and an email's HTML is made of them;
# sandbox="" already keeps any script in a body from running.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# Every page, download and API answer behind the login holds private data: no browser or proxy keeps a copy.
PRIVATE_HEADERS = {"Cache-Control": "no-store"}

class DatabaseId(IntegerConverter):
    """``<int:...>`` in our URLs: an id the database can hold; a larger number is no route (404)."""

    regex = r"[0-9]+"  # Werkzeug's \d+ takes any script's digits: /emails/١ was email 1

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


VIEWS = (public, emails, received, email_templates, records, segments, reports, email_reports, settings_views, users,
         account, notifications, erasure, suppressions, webhooks, guardrails, api, api_segments)
# Built once per process: a Map is read-only after construction and rules bind to one map.
URL_MAP = Map(
    [
        *(rule for views in VIEWS for rule in views.rules),
        # Served by Apache's Alias or SharedDataMiddleware, never by the application: only for building URLs.
        Rule("/static/<path:filename>", endpoint="static", build_only=True),
    ],
    converters={"int": DatabaseId},
)


# A handler translates one request into one response: handler(request, **url_values).
Handler = Callable[..., Response]


def _handler(endpoint: str) -> Handler:
    """"emails.show_email" is show_email in coretrack.views.emails (a misspelt name fails at import)."""
    module, _, name = endpoint.partition(".")
    handler: Handler = getattr(import_module(f"{__package__}.views.{module}"), name)
    return handler


HANDLERS = {rule.endpoint: _handler(rule.endpoint) for rule in URL_MAP.iter_rules() if not rule.build_only}


@pass_context
def url_for(context: Context, endpoint: str, **values: Any) -> str:
    """Templates' one way to a URL: from the map, under the prefix of the request being answered."""
    request: AppRequest = context["request"]
    return request.url_for(endpoint, **values)


@pass_context
def unread_notifications(context: Context) -> int:
    """The menu's count of the user's unread notifications; 0 before anyone is identified, or when
    the database cannot say (the page is still shown)."""
    user: User | None = context.get("user")
    if user is None:
        return 0
    request: AppRequest = context["request"]
    try:
        return unread_count(request.db, user)
    except SQLAlchemyError:
        return 0


class CoreTrack:
    def __init__(self, config: Config):
        self.config = config
        self.secret = config.secret_key()
        self.engine = make_engine(config.database_url)
        self.Session = make_session_factory(self.engine)
        self.htpasswd = Htpasswd(config.htpasswd_path)
        # Its own engine with short timeouts: a hit the database cannot take at once is spooled.
        self.tracker = Tracker.for_install(config, make_engine(config.database_url, fail_fast=True))
        self.url_map = URL_MAP
        self.jinja = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.jinja.globals["url_for"] = url_for
        self.jinja.globals["time_zone"] = lambda: str(localtime.current())
        self.jinja.globals["unread_notifications"] = unread_notifications
        self.jinja.globals["bounce_labels"] = bounce_classes.LABELS
        self.jinja.filters["local"] = localtime.local
        self.jinja.filters["readable"] = merge_fields.readable

    def close(self) -> None:
        self.tracker.close()  # counts the hits still queued
        self.engine.dispose()
        self.tracker.engine.dispose()

    def settings(self, session: Session) -> SettingsService:
        return SettingsService(session, self.config)

    # -- dispatch ------------------------------------------------------------------

    def identify(self, request: AppRequest) -> None:
        """Sets request.user from REMOTE_USER (set by Apache or the standalone middleware)."""
        name = request.environ.get("REMOTE_USER")
        if not name:
            raise self._challenge()
        user = request.db.scalar(select(User).where(User.name == name))
        if user is None:
            raise Forbidden(f"the user {name!r} has no coretrack account")
        if not user.active:
            raise Forbidden(f"the account {name!r} is disabled")
        request.user = user

    def check_csrf(self, request: AppRequest) -> None:
        if request.is_api:
            # Browsers cannot send a cross-site JSON body without a CORS preflight, which we never allow.
            if request.mimetype != "application/json":
                raise BadRequest("API requests that change data must send Content-Type: application/json")
            return
        token = request.form.get("csrf_token", "")
        if not csrf.check_token(self.secret, request.user.name, token):
            raise Forbidden("the form has expired or did not come from coretrack; reload the page and try again")

    @staticmethod
    def _challenge() -> Unauthorized:
        return Unauthorized(www_authenticate=WWWAuthenticate("basic", {"realm": "coretrack"}))

    def dispatch(self, request: AppRequest) -> Response:
        try:
            endpoint, values = request.url_adapter.match()
        except HTTPException:
            # Strangers learn nothing about which routes exist.
            if not request.environ.get("REMOTE_USER"):
                raise self._challenge() from None
            raise
        request.endpoint, request.view_args = endpoint, dict(values)
        handler = HANDLERS[endpoint]
        if getattr(handler, "public", False):
            request.public = True
            # A stranger's body: refused before a byte is read when it declares more than the handler
            # has use for; a chunked one (no length declared) cannot be read past it either.
            request.max_content_length = max_body(handler)
            if request.method in UNSAFE_METHODS and (request.content_length or 0) > request.max_content_length:
                raise RequestEntityTooLarge(f"at most {request.max_content_length} bytes may be posted here")
            return handler(request, **values)
        self.identify(request)
        if getattr(handler, "admin_only", False) and not request.user.is_admin:
            raise Forbidden("only administrators can open this page")
        if request.method in UNSAFE_METHODS:
            self.check_csrf(request)
        if has_nul(request):
            # No text column of either database can hold one (PostgreSQL refuses it outright).
            raise BadRequest("NUL characters are not allowed in form fields, query arguments or JSON")
        return handler(request, **values)

    def error_response(self, request: AppRequest, error: HTTPException) -> Response:
        if request.is_api or request.accept_mimetypes.best == "application/json":
            response = json_response({"error": error.description, "status": error.code}, error.code or 500)
        elif error.code in (301, 302, 303, 307, 308):
            return error.get_response(request.environ)
        else:
            response = request.render("error.html", status=error.code or 500, error=error)
        for name, value in error.get_headers(request.environ):
            if name.lower() in ("www-authenticate", "allow", "location"):
                response.headers[name] = value
        if error.code == 401:
            response.headers[APP_REFUSAL_HEADER] = "no identity"
        return response

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = AppRequest(environ)
        request.app = self
        request.max_content_length = self.config.max_upload_bytes
        request.max_form_memory_size = limits.MAX_FORM_FIELD_BYTES
        try:
            try:
                response = self.dispatch(request)
            except HTTPException as error:
                if request.__dict__.get("db") is not None:
                    request.db.rollback()
                response = self.error_response(request, error)
            if "Content-Type" not in response.headers and response.status_code not in (204, 304):
                # Every answer says what it is: under mod_wsgi Apache fills a missing type from the
                # WSGI script's name (text/x-python for wsgi.py), a redirect's too.  A no-content
                # answer carries none (Apache removes one there, and PEP 3333's validator refuses it).
                response.headers["Content-Type"] = "text/plain; charset=utf-8"
            if not request.public or response.mimetype == "text/html":  # a public page too (unsubscribe)
                response.headers.update(SECURITY_HEADERS)
                response.headers.update(PRIVATE_HEADERS)
            return response(environ, start_response)
        finally:
            if request.__dict__.get("db") is not None:
                request.db.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == TRACK_ACCESS_PATH and environ.get("REQUEST_METHOD") in public.IMAGE_METHODS:
            return public.serve_image(self.tracker, environ, start_response)
        return self.wsgi_app(environ, start_response)

    def is_public_path(self, path: str) -> bool:
        if path == TRACK_ACCESS_PATH:  # the most requested path: no URL map needed to know
            return True
        adapter = self.url_map.bind("localhost")
        try:
            try:
                endpoint, _ = adapter.match(path, method="GET")
            except MethodNotAllowed:  # a public path that takes POST only (a webhook)
                endpoint, _ = adapter.match(path, method="POST")
        except HTTPException:
            return False
        return getattr(HANDLERS[endpoint], "public", False)


def create_app(config: Config | None = None) -> CoreTrack:
    """The bare application, as mod_wsgi serves it: identity must come from Apache."""
    return CoreTrack(config or Config.from_env())


def create_standalone_app(config: Config | None = None) -> tuple[WSGIApplication, CoreTrack]:
    """The application wrapped for Werkzeug's server: Basic auth and static files done in Python."""
    app = create_app(config)
    wrapped = BasicAuthMiddleware(app, app.htpasswd, app.is_public_path)
    return SharedDataMiddleware(wrapped, {"/static": str(STATIC_DIR)}), app
