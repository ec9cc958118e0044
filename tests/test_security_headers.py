"""Security headers on every page the application serves, and none on the image endpoint."""

from __future__ import annotations

import re

from support.pages import assert_no_script

from coretrack.app import SECURITY_HEADERS
from coretrack.tracking.image import GIF_HEADERS
from coretrack.views.public import TRACK_ACCESS_PATH


def test_every_page_carries_the_security_headers_and_sets_no_cookie(admin, every_page):
    assert len(every_page) > 20
    for path in every_page:
        response = admin.get(path, status="*")
        assert response.status_int < 400, path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
        assert "Set-Cookie" not in response.headers, path


def test_error_pages_and_refusals_carry_them_too(admin, anon):
    for response in (admin.get("/emails/999999", status=404), anon.get("/emails", status=401),
                     admin.get("/api/emails/999999", status=404), admin.post("/settings", status=403)):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value


def test_the_policy_allows_no_inline_script_and_no_framing():
    policy = dict(part.strip().split(" ", 1) for part in SECURITY_HEADERS["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert "unsafe" not in policy["script-src"] and "unsafe" not in policy["default-src"]
    assert policy["frame-ancestors"] == "'none'" and SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    assert policy["object-src"] == "'none'"


def test_our_pages_carry_no_inline_script(admin, every_page):
    for path in every_page:
        response = admin.get(path, status="*")
        assert_no_script(response)


def test_the_email_preview_is_a_sandboxed_srcdoc_frame_without_scripts(admin, every_page, db):
    detail = next(path for path in every_page if re.fullmatch(r"/emails/\d+", path))
    frame = admin.get(detail).html.find("iframe")
    assert frame.has_attr("sandbox") and not frame["sandbox"]  # sandbox="": no allow-scripts, no same origin
    assert "<b>there</b>" in frame["srcdoc"]


def test_no_browser_or_proxy_keeps_a_copy_of_any_page_download_or_api_answer(admin, staff, every_page):
    kinds = set()
    for path in every_page:
        for client in (admin, staff):
            response = client.get(path, status="*")
            assert response.headers.get("Cache-Control") == "no-store", (path, response.headers.get("Cache-Control"))
            kinds.add(response.content_type)
    # Pages, JSON, the CSV exports and an attachment download are all among them.
    assert {"text/html", "application/json", "text/csv", "text/plain"} <= kinds


def test_redirects_errors_and_refusals_are_not_stored_either(admin, anon, staff):
    for response in (admin.get("/", status=303), admin.get("/emails/999999", status=404),
                     anon.get("/emails", status=401), staff.get("/settings", status=403),
                     admin.get("/api/emails/999999", status=404), admin.post("/settings", status=403)):
        assert response.headers.get("Cache-Control") == "no-store", response.request.path


def test_the_image_endpoint_carries_none_of_them(anon):
    response = anon.get(TRACK_ACCESS_PATH, {"t": "anything"})
    assert response.content_type == "image/gif"
    for name in (*SECURITY_HEADERS, "Set-Cookie", "WWW-Authenticate"):
        assert name not in response.headers
    # Only the GIF's own caching headers, exactly as mail clients and their proxies expect them.
    assert [(name, response.headers[name]) for name, _ in GIF_HEADERS] == list(GIF_HEADERS)
