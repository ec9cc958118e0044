"""Reports: pages, CSV export and the JSON API, all from the same filters (see coretrack.reports.filters)."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import paging
from ..http import AppRequest, download, json_response
from ..models import RECIPIENT_STATUSES, RECORD_TYPES, utcnow
from ..paging import Page, page_number
from ..reports.activity import Activity, ActivityReport, activity_page
from ..reports.catalog import REPORTS, senders
from ..reports.chart import chart
from ..reports.export import csv_lines, json_rows
from ..reports.filters import Filters, parse_filters
from ..reports.report import Column, Report
from ..reports.tables import table_page

REPORT = "<any(emails, recipients, records, domains, activity):report>"


def index(request: AppRequest) -> Response:
    return request.redirect_to("reports.show_report", report="emails")


def _sort_url(request: AppRequest, report: Report, filters: Filters, column: Column) -> str:
    """The link of a column header: sorts by it, or reverses it when it is the current sort (from page 1)."""
    current = filters.sort or report.default_sort
    descending = not filters.descending if column.key == current else column.descending_first
    return request.url_with(drop=("page",), sort=column.key, order="desc" if descending else "asc")


def _page(request: AppRequest, report: Report, filters: Filters,
          per_page: int) -> tuple[Page[Any], Activity | None]:
    """(page, activity): activity is None for the table reports."""
    number = page_number(request.args.get("page"))
    if isinstance(report, ActivityReport):
        activity = report.activity(request.db, filters)
        return activity_page(activity, filters, number, per_page), activity
    return table_page(request.db, report, filters, number, per_page), None


def show_report(request: AppRequest, report: str) -> Response:
    definition = REPORTS[report]
    filters = parse_filters(request.args, request.time_zone, definition)
    page, activity = _page(request, definition, filters, request.app.settings(request.db).get("page_size"))
    return request.render(
        f"reports/{'activity' if activity else 'table'}.html", status=400 if filters.errors else 200,
        section="reports", report=definition, reports=REPORTS.values(), filters=filters, page=page,
        activity=activity, chart=chart(activity.rows, activity.by) if activity else None,
        senders=senders(request.db), record_types=RECORD_TYPES, statuses=RECIPIENT_STATUSES,
        sort_url=lambda column: _sort_url(request, definition, filters, column),
    )


def export_report(request: AppRequest, report: str) -> Response:
    definition = REPORTS[report]
    filters = parse_filters(request.args, request.time_zone, definition)
    if filters.errors:
        return Response("; ".join(f"{key}: {message}" for key, message in filters.errors.items()), status=400,
                        mimetype="text/plain")
    filename = f"coretrack-{report}-{utcnow():%Y%m%d-%H%M}.csv"
    return download(csv_lines(request.app.Session, definition, filters), filename, "text/csv")


def api_report(request: AppRequest, report: str) -> Response:
    definition = REPORTS[report]
    filters = parse_filters(request.args, report=definition)
    per_page = paging.per_page(request.args.get("per_page"), filters.errors)
    if filters.errors:
        return json_response({"error": "invalid filters", "fields": filters.errors}, 400)
    page, activity = _page(request, definition, filters, per_page)
    body = {
        "report": report, "filters": json_rows([filters.as_dict()])[0],
        "columns": [{"key": column.key, "label": column.label} for column in definition.columns],
        "rows": json_rows(page.items), "page": page.number, "pages": page.pages, "total": page.total,
    }
    if activity:
        body.update({"from": activity.start.isoformat(), "to": activity.end.isoformat(), "by": activity.by,
                     "total_accesses": activity.total_accesses, "unique_recipients": activity.unique_recipients,
                     "total_clicks": activity.total_clicks, "total_human_clicks": activity.total_human_clicks,
                     "anonymous_loads": activity.anonymous_loads})
    return json_response(body)


rules = [
    Rule("/reports", endpoint="reports.index", methods=["GET"]),
    Rule(f"/reports/{REPORT}", endpoint="reports.show_report", methods=["GET"]),
    Rule(f"/reports/{REPORT}.csv", endpoint="reports.export_report", methods=["GET"]),
    Rule(f"/api/reports/{REPORT}", endpoint="reports.api_report", methods=["GET"]),
]
