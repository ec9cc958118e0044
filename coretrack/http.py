"""HTTP plumbing shared by the application and its handlers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.routing import MapAdapter
from werkzeug.utils import cached_property, redirect
from werkzeug.wrappers import Request, Response

from . import csrf, localtime
from .models import User

if TYPE_CHECKING:
    from .app import CoreTrack

Handler = TypeVar("Handler", bound=Callable[..., Response])
Row = TypeVar("Row")

# Set on the 401 the application gives by itself (no REMOTE_USER arrived): under Apache it means
# Apache's Basic auth is missing.  'coretrack doctor' looks for it.
APP_REFUSAL_HEADER = "X-Coretrack-Refused"
# The API's bodies nest two deep.  Parsing and walking JSON recurse: a body nested thousands deep
# would exhaust Python's stack (a 500) before anything could refuse it.
MAX_JSON_DEPTH = 20
# Long enough to follow a redirect; too short for a link with one user's words to be sent around.
NOTICE_MAX_AGE = 10 * 60
_NOTICE_SIGNATURE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{32})")
# A request body is read in pieces of this size (AppRequest.read_body).
_PIECE = 64 * 1024
# Query arguments no link carries on: a notice belongs to the page a redirect led to.
ONE_OFF_ARGS = ("notice", "ns")


def _notice_mac(secret: bytes, user: str, path: str, text: str, issued: int) -> str:
    message = json.dumps(["coretrack-notice", user, path, issued, text]).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def sign_notice(secret: bytes, user: str, path: str, text: str, now: float | None = None) -> str:
    """The ``ns`` argument: the notice bound to the user who acted, the page's path and its issue time."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_notice_mac(secret, user, path, text, issued)}"


def check_notice(secret: bytes, user: str, path: str, text: str, signature: str, now: float | None = None) -> bool:
    match = _NOTICE_SIGNATURE.fullmatch(signature)
    if match is None:
        return False
    issued = int(match[1])
    if not 0 <= (time.time() if now is None else now) - issued <= NOTICE_MAX_AGE:
        return False
    return hmac.compare_digest(_notice_mac(secret, user, path, text, issued), match[2])



def public(handler: Handler) -> Handler:
    """Mark a handler as reachable without identity (each one also listed in the Apache exceptions)."""
    handler.public = True  # type: ignore[attr-defined]  # a mark dispatch reads with getattr
    return handler


def body_limit(limit: int) -> Callable[[Handler], Handler]:
    """Mark the most a public handler reads of a request body, in bytes.  Dispatch refuses a POST
    that declares more (413) before the handler runs, and reading past it (a chunked body, which
    declares no length) raises 413; a public handler without a mark reads no body at all.  Apache
    refuses the same at the door (apache.py:public_body_limits)."""

    def mark(handler: Handler) -> Handler:
        handler.max_body = limit  # type: ignore[attr-defined]  # a mark dispatch reads with getattr
        return handler

    return mark


def max_body(handler: object) -> int:
    """The body a public handler may read (0: none), as body_limit marked it."""
    return int(getattr(handler, "max_body", 0))


def admin_only(handler: Handler) -> Handler:
    """Mark a handler as reserved to admins; checked on the server for every request."""
    handler.admin_only = True  # type: ignore[attr-defined]  # a mark dispatch reads with getattr
    return handler


def access(handler: object) -> str:
    """Who may reach a handler, as dispatch decides it: "public", "admin" or "staff" (any active user)."""
    if getattr(handler, "public", False):
        return "public"
    return "admin" if getattr(handler, "admin_only", False) else "staff"


class AppRequest(Request):
    """A request that knows its application, its database session and its user."""

    app: CoreTrack
    public = False  # set by dispatch for the anonymous endpoints
    _user: User | None = None

    @property
    def user(self) -> User:
        """The user dispatch identified: every handler but the public ones has one."""
        if self._user is None:
            raise RuntimeError("no user was identified for this request")
        return self._user

    @user.setter
    def user(self, user: User) -> None:
        self._user = user

    # What the URL map matched (set by dispatch; None when nothing did).
    endpoint: str | None = None
    view_args: dict[str, Any] | None = None

    @cached_property
    def db(self) -> Session:
        return self.app.Session()

    def get_or_404(self, model: type[Row], key: int, missing: str) -> Row:
        """The row of ``model`` with primary key ``key``; NotFound saying ``missing`` when there is none."""
        row = self.db.get(model, key)
        if row is None:
            raise NotFound(missing)
        return row

    def read_body(self) -> bytes:
        """The body, read within max_content_length (dispatch sets a public handler's body_limit):
        RequestEntityTooLarge past it, also for a chunked body, which declares no length (Werkzeug's
        read() stops silently at the limit; only a read after it says there was more, so a chunked
        body must stay under the limit)."""
        declared = self.content_length  # dispatch refused one past the limit
        pieces: list[bytes] = []
        size = 0
        while declared is None or size < declared:
            piece = self.stream.read(_PIECE if declared is None else min(_PIECE, declared - size))
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
        return b"".join(pieces)

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")

    def get_json(self, *args: Any, **kwargs: Any) -> Any:
        too_deep = BadRequest(f"the JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        try:
            value = super().get_json(*args, **kwargs)
        except RecursionError:
            raise too_deep from None
        if _json_depth(value) > MAX_JSON_DEPTH:
            raise too_deep
        return value

    def csrf_token(self) -> str:
        return csrf.make_token(self.app.secret, self._user_name)

    @cached_property
    def time_zone(self) -> ZoneInfo:
        """The zone this request shows times in: the user's choice, else the install's (UTC for a
        page shown before anyone is identified, or when the database cannot say)."""
        name = self._user.time_zone if self._user is not None else ""
        if not name and self._user is not None:
            try:
                name = self.app.settings(self.db).get("time_zone")
            except SQLAlchemyError:
                name = ""
        try:
            return localtime.zone(name)
        except ValueError:  # none, or a zone the system's tz database no longer has
            return localtime.zone(localtime.DEFAULT_ZONE)

    def uploads(self, field: str) -> list[tuple[str, str, bytes]]:
        """The files chosen in a form's file input, as (file name, content type, bytes)."""
        # A file input with nothing chosen still sends one empty part.
        return [(upload.filename, upload.mimetype, upload.read())
                for upload in self.files.getlist(field) if upload.filename]

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("notice", self.notice())
        localtime.use(self.time_zone)
        # An error page may be rendered before anyone is identified: the templates get None then.
        html = self.app.jinja.get_template(template).render(request=self, user=self._user, **context)
        return Response(html, status=status, mimetype="text/html")

    def redirect_to(self, endpoint: str, notice: str | None = None, **values: Any) -> Response:
        """303 to another page; ``notice`` is shown there, signed for this user and that page only, and
        for NOTICE_MAX_AGE: no one can forge one, nor carry one user's text onto another's page."""
        url = self.url_for(endpoint, **values)
        if notice:
            path = unquote(urlsplit(url).path)
            signature = sign_notice(self.app.secret, self._user_name, path, notice)
            url = self.url_for(endpoint, **values, notice=notice, ns=signature)
        return redirect(url, code=303)

    def notice(self) -> str | None:
        text = self.args.get("notice")
        signature = self.args.get("ns", "")
        if text and check_notice(self.app.secret, self._user_name, self.root_path + self.path, text, signature):
            return text
        return None

    @property
    def _user_name(self) -> str:
        return self._user.name if self._user else ""

    @cached_property
    def url_adapter(self) -> MapAdapter:
        """The URL map bound to this request: matches its path, builds URLs under its prefix (SCRIPT_NAME)."""
        return self.app.url_map.bind_to_environ(self.environ)

    def url_for(self, endpoint: str, **values: Any) -> str:
        """The path of an endpoint; values the rule does not take go into the query string."""
        return self.url_adapter.build(endpoint, values)

    def url_with(self, endpoint: str | None = None, drop: tuple[str, ...] = (), **args: Any) -> str:
        """This page's URL (or ``endpoint``'s with the same URL values) keeping its query arguments but
        ``drop`` and the one-off notice, with ``args`` set: pager, sort and download links."""
        query = {key: values for key, values in self.args.lists() if key not in (*drop, *ONE_OFF_ARGS, *args)}
        return self.url_adapter.build(endpoint or self.endpoint, {**query, **args, **(self.view_args or {})})


def json_response(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def download(body: bytes | Iterable[bytes], filename: str, mimetype: str) -> Response:
    """A file the browser saves as ``filename`` (a report's CSV, a consent history) rather than shows;
    its type as declared, never sniffed."""
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                                      "X-Content-Type-Options": "nosniff"})


def _json_depth(value: object) -> int:
    """How deep lists and objects nest in ``value`` (no deeper than MAX_JSON_DEPTH + 1: it stops there)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def _nul_in(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_nul_in(key) or _nul_in(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_nul_in(item) for item in value)
    return False


def has_nul(request: Request) -> bool:
    """Whether a query argument, a form field (not a file) or a JSON string holds a NUL character."""
    fields = [*request.args.items(multi=True)]
    if request.method != "GET":
        fields += request.form.items(multi=True)
    if any(_nul_in(key) or _nul_in(value) for key, value in fields):
        return True
    return request.is_json and _nul_in(request.get_json(silent=True))
