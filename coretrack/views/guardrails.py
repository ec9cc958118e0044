"""A mass send paused by the guardrails (sending/guardrails.py): an admin resumes it.  Cancelling it
is the email page's own cancel (views/emails.py), which ends the pause too."""

from __future__ import annotations

from werkzeug.exceptions import Conflict
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, admin_only
from ..models import Email
from ..sending import guardrails


@admin_only
def resume_send(request: AppRequest, email_id: int) -> Response:
    email = request.get_or_404(Email, email_id, f"there is no email with id {email_id}")
    try:
        guardrails.resume(request.db, request.user, email)
    except guardrails.NotPaused as exc:
        raise Conflict(f"Nothing was resumed: {exc}.") from None
    return request.redirect_to("emails.show_email", email_id=email_id,
                               notice="Resumed: the rest of this send goes out, and the guardrails no longer "
                                      "pause it.")


rules = [
    Rule("/emails/<int:email_id>/resume", endpoint="guardrails.resume_send", methods=["POST"]),
]
