"""What each recipient received: their message built again on demand from the stored email, shown
in the sandboxed preview; looking at it counts nothing."""

from __future__ import annotations

from werkzeug.exceptions import Conflict, NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest
from ..models import Email, Recipient
from ..sending.mime import MessageError
from ..sending.received import received


def show_received(request: AppRequest, email_id: int, recipient_id: int) -> Response:
    email = request.get_or_404(Email, email_id, f"there is no email with id {email_id}")
    recipient = request.db.get(Recipient, recipient_id)
    if recipient is None or recipient.email_id != email.id:
        raise NotFound(f"email {email_id} has no recipient with id {recipient_id}")
    if recipient.erased:
        raise NotFound("this recipient was erased on request: what they received is not kept")
    try:
        message = received(request.db, request.app.config, email, recipient)
    except (MessageError, OSError) as exc:
        raise Conflict(f"the message cannot be built again: {exc}") from None
    return request.render("emails/received.html", section="emails", email=email, recipient=recipient,
                          message=message)


rules = [
    Rule("/emails/<int:email_id>/recipients/<int:recipient_id>", endpoint="received.show_received",
         methods=["GET"]),
]
