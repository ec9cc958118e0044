"""Erasing a person on request (admins): a preview of what goes, then the erasure, and its history."""

from __future__ import annotations

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, admin_only
from ..people import erasure
from ..sending.status import refresh_status


def _page(request: AppRequest, address: str, status: int = 200, error: str = "") -> Response:
    preview = None
    if address and not error:
        try:
            preview = erasure.preview(request.db, address)
        except ValueError as exc:
            error, status = str(exc), 400
    return request.render("erasure/index.html", status, section="users", address=address, preview=preview,
                          error=error, history=erasure.history(request.db), erased_address=erasure.ERASED_ADDRESS)


@admin_only
def erase_page(request: AppRequest) -> Response:
    return _page(request, request.args.get("address", "").strip())


@admin_only
def erase_person(request: AppRequest) -> Response:
    address = request.form.get("address", "").strip()
    if request.form.get("confirm") != "yes":
        return _page(request, address, 400, "tick the box to confirm: an erasure cannot be undone")
    try:
        counts = erasure.erase(request.db, request.app.secret, address, request.user.name)
    except ValueError as exc:
        return _page(request, address, 400, str(exc))
    for email_id in counts.emails:
        refresh_status(request.db, email_id)  # an email whose last pending recipient was cancelled
    return request.redirect_to(
        "erasure.erase_page", notice=f"Erased: {counts.records} record(s), {counts.recipients} recipient address(es), "
                                     f"{counts.events} access event(s).")


rules = [
    Rule("/erase", endpoint="erasure.erase_page", methods=["GET"]),
    Rule("/erase", endpoint="erasure.erase_person", methods=["POST"]),
]
