"""Reports on chosen emails: one email's clicks per link (with its click map), and two to four emails
compared; each as a page, a CSV file and JSON.  ``?loads=all`` counts every load and click in the rates."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, download, json_response
from ..models import Email, utcnow
from ..reports import compare as comparing
from ..reports import links as link_report
from ..reports.catalog import REPORTS
from ..reports.chart import line_chart
from ..reports.click_map import click_map
from ..reports.export import csv_table, json_rows
from ..reports.filters import parse_loads
from ..reports.rates import email_rates
from ..sending.merge_fields import readable


def _email(request: AppRequest, email_id: int) -> Email:
    return request.get_or_404(Email, email_id, f"there is no email with id {email_id}")


def email_parts(request: AppRequest, email: Email) -> dict[str, Any]:
    """What the email's page and its links page show of it: rates (``?loads=all``: every load and click;
    a bad value counts likely-human ones), its links' rows and its click map."""
    rows = link_report.link_rows(request.db, email.id)
    return {"rows": rows, "columns": link_report.COLUMNS, "click_map": click_map(email.html_body, rows),
            "rates": email_rates(request.db, [email.id], parse_loads(request.args, {}))[email.id]}


def show_links(request: AppRequest, email_id: int) -> Response:
    email = _email(request, email_id)
    return request.render("reports/links.html", section="reports", email=email, **email_parts(request, email))


def export_links(request: AppRequest, email_id: int) -> Response:
    email = _email(request, email_id)
    body = csv_table(link_report.COLUMNS, link_report.link_rows(request.db, email.id), request.time_zone)
    return download(body, f"coretrack-email-{email.id}-links-{utcnow():%Y%m%d-%H%M}.csv", "text/csv")


def api_links(request: AppRequest, email_id: int) -> Response:
    email = _email(request, email_id)
    errors: dict[str, str] = {}
    all_loads = parse_loads(request.args, errors)
    if errors:
        return json_response({"error": "invalid arguments", "fields": errors}, 400)
    rows = link_report.link_rows(request.db, email.id)
    return json_response({"email_id": email.id, "subject": readable(email.subject),
                          "columns": [{"key": column.key, "label": column.label} for column in link_report.COLUMNS],
                          "links": [{column.key: row[column.key] for column in link_report.COLUMNS} for row in rows],
                          "rates": email_rates(request.db, [email.id], all_loads)[email.id].row()})


def _comparison(request: AppRequest) -> tuple[comparing.Comparison | None, dict[str, str]]:
    errors: dict[str, str] = {}
    all_loads = parse_loads(request.args, errors)
    try:
        ids = comparing.parse_ids(request.args.getlist("email"))
        return comparing.compare(request.db, ids, all_loads), errors
    except comparing.CompareError as exc:
        return None, {**errors, "email": str(exc)}


def show_compare(request: AppRequest) -> Response:
    comparison, errors = _comparison(request)
    chosen = request.args.getlist("email")
    asked = any(value.strip() for value in chosen)
    return request.render(
        "reports/compare.html", status=400 if errors and asked else 200, section="reports",
        reports=REPORTS.values(), comparison=comparison, errors=errors if asked else {},
        chosen=[*chosen, *[""] * comparing.MAX_EMAILS][:comparing.MAX_EMAILS],
        choices=comparing.recent_emails(request.db),
        chart=line_chart(comparison.series, comparison.labels) if comparison else None, columns=comparing.COLUMNS,
    )


def export_compare(request: AppRequest) -> Response:
    comparison, errors = _comparison(request)
    if comparison is None or errors:
        return Response("; ".join(f"{key}: {message}" for key, message in errors.items()), status=400,
                        mimetype="text/plain")
    body = csv_table(comparing.COLUMNS, comparison.rows(), request.time_zone)
    return download(body, f"coretrack-compare-{utcnow():%Y%m%d-%H%M}.csv", "text/csv")


def api_compare(request: AppRequest) -> Response:
    comparison, errors = _comparison(request)
    if comparison is None or errors:
        return json_response({"error": "invalid arguments", "fields": errors}, 400)
    return json_response({
        "loads": "all" if comparison.all_loads else "human",
        "emails": json_rows(comparison.rows()),
        "opens_by_day": [{"email_id": email.id, "days": series}
                         for email, series in zip(comparison.emails, comparison.series, strict=True)],
    })


rules = [
    Rule("/reports/emails/<int:email_id>/links", endpoint="email_reports.show_links", methods=["GET"]),
    Rule("/reports/emails/<int:email_id>/links.csv", endpoint="email_reports.export_links", methods=["GET"]),
    Rule("/api/reports/emails/<int:email_id>/links", endpoint="email_reports.api_links", methods=["GET"]),
    Rule("/reports/compare", endpoint="email_reports.show_compare", methods=["GET"]),
    Rule("/reports/compare.csv", endpoint="email_reports.export_compare", methods=["GET"]),
    Rule("/api/reports/compare", endpoint="email_reports.api_compare", methods=["GET"]),
]
