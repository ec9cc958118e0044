"""Each user's own page: their preferences (today the time zone pages are shown in)."""

from __future__ import annotations

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import localtime
from ..http import AppRequest


def render_account(request: AppRequest, status: int = 200, errors: dict[str, str] | None = None,
                   chosen: str | None = None) -> Response:
    return request.render(
        "account/index.html", status, section="account", zones=localtime.zone_names(),
        chosen=request.user.time_zone if chosen is None else chosen,
        install_zone=request.app.settings(request.db).get("time_zone"), errors=errors or {},
    )


def account_page(request: AppRequest) -> Response:
    return render_account(request)


def save_account(request: AppRequest) -> Response:
    chosen = (request.form.get("time_zone") or "").strip()
    if chosen:
        try:
            localtime.zone(chosen)
        except ValueError as exc:
            return render_account(request, 400, {"time_zone": str(exc)}, chosen)
    request.user.time_zone = chosen
    request.db.commit()
    return request.redirect_to("account.account_page", notice="Saved.")


rules = [
    Rule("/account", endpoint="account.account_page", methods=["GET"]),
    Rule("/account", endpoint="account.save_account", methods=["POST"]),
]
