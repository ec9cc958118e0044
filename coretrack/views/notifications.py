"""The signed-in user's notifications: which of their emails were opened, and by whom."""

from __future__ import annotations

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import notifications
from ..http import AppRequest


def notifications_page(request: AppRequest) -> Response:
    return request.render("notifications/index.html", section="notifications",
                          notifications=notifications.latest(request.db, request.user),
                          shown=notifications.SHOWN)


def mark_read(request: AppRequest) -> Response:
    count = notifications.mark_read(request.db, request.user)
    return request.redirect_to("notifications.notifications_page",
                               notice=f"{count} notification{'' if count == 1 else 's'} marked as read.")


rules = [
    Rule("/notifications", endpoint="notifications.notifications_page", methods=["GET"]),
    Rule("/notifications/read", endpoint="notifications.mark_read", methods=["POST"]),
]
