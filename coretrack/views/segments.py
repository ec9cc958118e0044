"""Segments: the list, the form that builds one (conditions as rows of field, operator and value),
its page with its count, and deleting one.  Its records are the contacts, accounts or leads list
filtered by it (views/records.py, ?segment=<id>), and a mass send's audience from there."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import Forbidden, NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest
from ..models import Segment
from ..records import segments
from ..records.fields import NOUNS
from ..validation import ValidationError

SECTION_OF = {"contact": "contacts", "account": "accounts", "lead": "leads"}
# Empty condition rows the form offers below the filled ones ("Add a condition" adds one more).
SPARE_ROWS = 1


def visible_or_404(request: AppRequest, segment_id: int) -> Segment:
    segment = segments.visible_segment(request.db, request.user, segment_id)
    if segment is None:
        raise NotFound(f"there is no segment with id {segment_id}")
    return segment


def _changeable(request: AppRequest, segment_id: int) -> Segment:
    segment = visible_or_404(request, segment_id)
    if not segments.may_change(request.user, segment):
        raise Forbidden("only the segment's owner (and administrators, for a shared one) can change it")
    return segment


def list_segments(request: AppRequest) -> Response:
    found = segments.visible_segments(request.db, request.user)
    return request.render("segments/list.html", section="segments", segments=found, sections=SECTION_OF,
                          counts={segment.id: segments.count(request.db, segment) for segment in found},
                          described={segment.id: segments.describe(segment) for segment in found}, nouns=NOUNS)


def _rows(request: AppRequest) -> list[dict[str, str]]:
    """The form's condition rows as typed; a row without a field is an empty one, left out."""
    rows, number = [], 0
    while f"field-{number}" in request.form and number < segments.MAX_CONDITIONS + SPARE_ROWS + 1:
        rows.append({key: request.form.get(f"{key}-{number}", "") for key in ("field", "op", "value")})
        number += 1
    return rows


def _form(request: AppRequest, segment: Segment | None, record_type: str, values: dict[str, Any],
          errors: dict[str, str] | None = None, extra_rows: int = 0) -> Response:
    filled = [row for row in values["rows"] if row.get("field")]
    rows = [*filled, *({"field": "", "op": "", "value": ""} for _ in range(SPARE_ROWS + extra_rows))]
    # A row's error is keyed by its place among the filled rows, which stay first.
    return request.render("segments/form.html", 400 if errors else 200, section="segments", segment=segment,
                          record_type=record_type, nouns=NOUNS[record_type], values=values, rows=rows,
                          fields=segments.FIELDS[record_type], all_ops=segments.ALL_OPS, errors=errors or {},
                          max_conditions=segments.MAX_CONDITIONS)


def new_segment(request: AppRequest) -> Response:
    record_type = request.args.get("type", "contact")
    if record_type not in segments.FIELDS:
        raise NotFound("a segment is of contacts (type=contact), accounts (account) or leads (lead)")
    return _form(request, None, record_type, {"name": "", "shared": "on", "rows": []})


def edit_segment(request: AppRequest, segment_id: int) -> Response:
    segment = _changeable(request, segment_id)
    rows = [condition.as_dict() for condition in segments.conditions_of(segment)]
    return _form(request, segment, segment.record_type,
                 {"name": segment.name, "shared": "on" if segment.shared else "", "rows": rows})


def _save(request: AppRequest, segment: Segment | None, record_type: str) -> Response:
    rows = _rows(request)
    values: dict[str, Any] = {"name": request.form.get("name", ""), "shared": request.form.get("shared", ""),
                              "rows": rows}
    filled = [row for row in rows if row["field"]]
    if request.form.get("action") == "more":  # another row, nothing saved
        return _form(request, segment, record_type, values, extra_rows=1)
    try:
        saved = segments.save(request.db, request.user, segment, record_type, values["name"], filled,
                              bool(values["shared"]))
    except ValidationError as exc:
        request.db.rollback()
        return _form(request, segment, record_type, values, exc.errors)
    return request.redirect_to("segments.show_segment", segment_id=saved.id,
                               notice=f"Saved the segment “{saved.name}”.")


def create_segment(request: AppRequest) -> Response:
    record_type = request.form.get("record_type", "")
    if record_type not in segments.FIELDS:
        raise NotFound("a segment is of contacts, accounts or leads")
    return _save(request, None, record_type)


def update_segment(request: AppRequest, segment_id: int) -> Response:
    segment = _changeable(request, segment_id)
    return _save(request, segment, segment.record_type)


def show_segment(request: AppRequest, segment_id: int) -> Response:
    segment = visible_or_404(request, segment_id)
    return request.render("segments/detail.html", section="segments", segment=segment,
                          section_name=SECTION_OF[segment.record_type], nouns=NOUNS[segment.record_type],
                          count=segments.count(request.db, segment), described=segments.describe(segment),
                          may_change=segments.may_change(request.user, segment))


def delete_segment(request: AppRequest, segment_id: int) -> Response:
    segment = _changeable(request, segment_id)
    if request.form.get("confirm") != "yes":
        return request.redirect_to("segments.show_segment", segment_id=segment.id,
                                   notice="Nothing deleted: tick the box to confirm.")
    name = segment.name
    request.db.delete(segment)
    request.db.commit()
    return request.redirect_to("segments.list_segments", notice=f"Deleted the segment “{name}”.")


rules = [
    Rule("/segments", endpoint="segments.list_segments", methods=["GET"]),
    Rule("/segments/new", endpoint="segments.new_segment", methods=["GET"]),
    Rule("/segments/new", endpoint="segments.create_segment", methods=["POST"]),
    Rule("/segments/<int:segment_id>", endpoint="segments.show_segment", methods=["GET"]),
    Rule("/segments/<int:segment_id>/edit", endpoint="segments.edit_segment", methods=["GET"]),
    Rule("/segments/<int:segment_id>/edit", endpoint="segments.update_segment", methods=["POST"]),
    Rule("/segments/<int:segment_id>/delete", endpoint="segments.delete_segment", methods=["POST"]),
]
