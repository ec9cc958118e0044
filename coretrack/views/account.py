"""Each user's own page: their preferences (the time zone pages are shown in, their signature)."""

from __future__ import annotations

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import localtime, preferences
from ..http import AppRequest
from ..validation import ValidationError


def render_account(request: AppRequest, status: int = 200, errors: dict[str, str] | None = None,
                   values: dict[str, str] | None = None) -> Response:
    user = request.user
    return request.render(
        "account/index.html", status, section="account", zones=localtime.zone_names(),
        values=values or {"first_name": user.first_name, "last_name": user.last_name, "email": user.email,
                          "time_zone": user.time_zone, "signature_html": user.signature_html,
                          "notify_by_email": "on" if user.notify_by_email else "",
                          "notification_address": user.notification_address},
        install_zone=request.app.settings(request.db).get("time_zone"), errors=errors or {},
    )


def account_page(request: AppRequest) -> Response:
    return render_account(request)


def save_account(request: AppRequest) -> Response:
    values = {name: request.form.get(name) or "" for name in preferences.PREFERENCES}
    try:
        chosen = preferences.clean_preferences(values)
    except ValidationError as exc:
        return render_account(request, 400, exc.errors, values)
    preferences.save_preferences(request.db, request.user, chosen)
    return request.redirect_to("account.account_page", notice="Saved.")


rules = [
    Rule("/account", endpoint="account.account_page", methods=["GET"]),
    Rule("/account", endpoint="account.save_account", methods=["POST"]),
]
