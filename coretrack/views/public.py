"""The anonymous surface.  Every rule here must also be an exact exception in apache/."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, public
from ..tracking import GIF, GIF_HEADERS, TRACK_ACCESS_PATH, Tracker, token_of_query

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


rules = [Rule(TRACK_ACCESS_PATH, endpoint="public.track_access", methods=sorted(IMAGE_METHODS))]
