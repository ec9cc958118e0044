"""The anonymous surface.  Every rule here must also be an exact exception in apache/."""

from __future__ import annotations

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, public
from ..tracking import GIF, GIF_HEADERS, TRACK_ACCESS_PATH


@public
def track_access(request: AppRequest) -> Response:
    """Always the same GIF: good, bad, missing token or database down alike."""
    if request.method == "GET":
        request.app.tracker.hit(
            request.args.get("t", ""),
            request.remote_addr or "",
            request.headers.get("User-Agent", ""),
        )
    return Response(GIF, status=200, headers=GIF_HEADERS)


rules = [Rule(TRACK_ACCESS_PATH, endpoint="public.track_access", methods=["GET", "HEAD"])]
