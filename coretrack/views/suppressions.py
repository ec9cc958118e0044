"""The suppression list (people/suppression_list.py): every staff user may search, page and export
it and read an address's evidence; admins reinstate an address with a reason and import a CSV."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import paging
from ..http import AppRequest, admin_only, download, json_response
from ..models import Address
from ..paging import page_number, paginate
from ..people import suppression, suppression_list
from ..people.suppression_list import ReinstateError


def _filters(request: AppRequest) -> tuple[str, str]:
    category = request.args.get("category", "")
    return request.args.get("q", "").strip()[:254], category if category in suppression.CATEGORIES else ""


def _list_page(request: AppRequest, status: int = 200, search: str | None = None, **context: Any) -> Response:
    """The list as the query asks (``search``: the address an erasure's reinstatement was refused for)."""
    asked, category = _filters(request)
    search = asked if search is None else search
    page = paginate(request.db, suppression_list.statement(search, category), page_number(request.args.get("page")),
                    request.app.settings(request.db).get("page_size"))
    context.setdefault("import_result", None)
    context.setdefault("error", "")
    return request.render("suppressions/list.html", status, section="suppressions", page=page, search=search,
                          category=category, categories=suppression.CATEGORIES,
                          erasures=suppression_list.erasures(request.db, request.app.secret, search),
                          evidence=lambda row: suppression_list.evidence(request.db, row), **context)


def suppressions_page(request: AppRequest) -> Response:
    return _list_page(request)


def _detail_page(request: AppRequest, found: Address, status: int = 200, error: str = "", reason: str = "") -> Response:
    return request.render("suppressions/detail.html", status, section="suppressions", address=found,
                          evidence=suppression_list.evidence(request.db, found),
                          history=suppression.history(request.db, found.address), categories=suppression.CATEGORIES,
                          needs_confirmation=bool(suppression_list.confirmation_needed(request.db, found)),
                          error=error, reason=reason)


def show_suppression(request: AppRequest, address_id: int) -> Response:
    return _detail_page(request, request.get_or_404(Address, address_id, f"no address {address_id}"))


@admin_only
def reinstate(request: AppRequest) -> Response:
    """An admin lets email reach an address again, saying why (a complaint or an erasure: confirmed too)."""
    address, reason = request.form.get("address", "").strip(), request.form.get("reason", "")
    try:
        category = suppression_list.reinstate(request.db, request.app.secret, address, request.user.name, reason,
                                              request.form.get("confirm") == "yes")
    except ReinstateError as exc:
        found = suppression.state(request.db, address)
        if found is not None and found.opted_out_at is not None:
            return _detail_page(request, found, 400, str(exc), reason)
        return _list_page(request, 400, search=address, error=str(exc), reason=reason)
    return request.redirect_to("suppressions.suppressions_page",
                               notice=f"Reinstated {address} ({suppression.CATEGORIES.get(category, category)}): "
                                      "email to it is sent again.")


def export_csv(request: AppRequest) -> Response:
    search, category = _filters(request)
    return download(suppression_list.csv_lines(request.app.Session, search, category), "suppressions.csv",
                    "text/csv")


@admin_only
def import_suppressions(request: AppRequest) -> Response:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _list_page(request, 400, error="choose a CSV file to import")
    try:
        result = suppression_list.import_csv(request.db, upload.stream, request.user.name)
    except ValueError as exc:
        request.db.rollback()
        return _list_page(request, 400, error=str(exc))
    return _list_page(request, import_result=result)


def api_list(request: AppRequest) -> Response:
    """GET /api/suppressions: ?q= (part of the address), ?category=, ?page=, ?per_page=."""
    errors: dict[str, str] = {}
    per_page = paging.per_page(request.args.get("per_page"), errors)
    if request.args.get("category", "") not in ("", *suppression.CATEGORIES):
        errors["category"] = f"one of {', '.join(suppression.CATEGORIES)}"
    if errors:
        return json_response({"error": "invalid parameters", "fields": errors, "status": 400}, 400)
    search, category = _filters(request)
    page = paginate(request.db, suppression_list.statement(search, category), page_number(request.args.get("page")),
                    per_page)
    return json_response({"suppressions": [suppression_list.as_json(request.db, row) for row in page.items],
                          "page": page.number, "pages": page.pages, "total": page.total})


@admin_only
def api_reinstate(request: AppRequest) -> Response:
    """POST /api/suppressions/reinstate {"address", "reason", "confirm"}: 200, or 400 saying what is missing."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("address"), str) \
            or not isinstance(body.get("reason", ""), str):
        raise BadRequest('the body must be a JSON object with "address" and "reason"')
    try:
        category = suppression_list.reinstate(request.db, request.app.secret, body["address"], request.user.name,
                                              body.get("reason", ""), body.get("confirm") is True)
    except ReinstateError as exc:
        return json_response({"error": str(exc), "status": 400}, 400)
    return json_response({"address": suppression.key(body["address"]), "reinstated": category})


rules = [
    Rule("/suppressions", endpoint="suppressions.suppressions_page", methods=["GET"]),
    Rule("/suppressions.csv", endpoint="suppressions.export_csv", methods=["GET"]),
    Rule("/suppressions/import", endpoint="suppressions.import_suppressions", methods=["POST"]),
    Rule("/suppressions/reinstate", endpoint="suppressions.reinstate", methods=["POST"]),
    Rule("/suppressions/<int:address_id>", endpoint="suppressions.show_suppression", methods=["GET"]),
    Rule("/api/suppressions", endpoint="suppressions.api_list", methods=["GET"]),
    Rule("/api/suppressions/reinstate", endpoint="suppressions.api_reinstate", methods=["POST"]),
]
