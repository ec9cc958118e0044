"""The JSON API's segments: the ones a user may see, creating one, and a segment's records today."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import paging
from ..http import AppRequest, json_response
from ..models import Record, Segment
from ..paging import page_number, paginate
from ..records import search, segments
from ..validation import ValidationError
from .segments import visible_or_404


def _segment(segment: Segment, count: int | None = None) -> dict[str, Any]:
    found = {"id": segment.id, "name": segment.name, "record_type": segment.record_type,
             "conditions": json.loads(segment.conditions), "shared": segment.shared,
             "owner": segment.owner.name if segment.owner else None}
    return found if count is None else {**found, "count": count}


def _record(record: Record) -> dict[str, Any]:
    return {"type": record.record_type, "id": record.id, "name": record.display_name, "email": record.email,
            "email_opt_out": record.email_opt_out}


def list_segments(request: AppRequest) -> Response:
    return json_response({"segments": [_segment(segment) for segment in
                                       segments.visible_segments(request.db, request.user)]})


def create_segment(request: AppRequest) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    shared = body.get("shared", True)
    try:
        if not isinstance(shared, bool):
            raise ValidationError({"shared": "must be true or false"})
        segment = segments.save(request.db, request.user, None, str(body.get("record_type", "")),
                                str(body.get("name", "")), body.get("conditions", []), shared)
    except ValidationError as error:
        request.db.rollback()
        return json_response({"error": str(error), "fields": error.errors}, 400)
    return json_response(_segment(segment, segments.count(request.db, segment)), 201)


def show_segment(request: AppRequest, segment_id: int) -> Response:
    segment = visible_or_404(request, segment_id)
    return json_response(_segment(segment, segments.count(request.db, segment)))


def segment_records(request: AppRequest, segment_id: int) -> Response:
    """Its records today, in the list's order, a page at a time (``page``, ``per_page``)."""
    segment = visible_or_404(request, segment_id)
    errors: dict[str, str] = {}
    per_page = paging.per_page(request.args.get("per_page"), errors)
    if errors:
        return json_response({"error": "invalid paging", "fields": errors}, 400)
    statement = search.Audience(segment.record_type, segment=segments.filter_of(segment)).statement()
    page = paginate(request.db, statement, page_number(request.args.get("page")), per_page)
    return json_response({"segment": _segment(segment), "records": [_record(record) for record in page.items],
                          "page": page.number, "pages": page.pages, "total": page.total})


rules = [
    Rule("/api/segments", endpoint="api_segments.list_segments", methods=["GET"]),
    Rule("/api/segments", endpoint="api_segments.create_segment", methods=["POST"]),
    Rule("/api/segments/<int:segment_id>", endpoint="api_segments.show_segment", methods=["GET"]),
    Rule("/api/segments/<int:segment_id>/records", endpoint="api_segments.segment_records", methods=["GET"]),
]
