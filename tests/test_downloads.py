"""Nothing uploaded is served as something a browser runs: every attachment downloads (Content-Disposition:
attachment), under its own type only when that type is inert, else application/octet-stream, and with
X-Content-Type-Options: nosniff — whatever type the uploader claimed."""


from __future__ import annotations

import pytest

from coretrack.models import Attachment
from coretrack.sending.compose import compose, prepare

ACTIVE_TYPES = [
    "text/javascript", "application/javascript", "text/html", "image/svg+xml", "application/xhtml+xml", "text/xml",
    "application/xml", "application/x-shockwave-flash", "text/ecmascript", "application/pdf+xml",
    "Text/JavaScript; charset=utf-8", "TEXT/HTML;charset=utf-8", " image/SVG+xml ", "text/plain+html",
]
BODY = b"<script>alert(document.domain)</script>"


def attached(app, db, users, content_type: str) -> str:
    """The download URL of a file uploaded as ``content_type``, stored exactly so (as rows written
    before uploads' types were cleaned are)."""
    prepared = prepare(db, to=["ann@example.test"], subject="Files", html="<p>Hi</p>",
                       attachments=[("file.js", content_type, BODY)])
    email = compose(db, app.config, users["sam"], prepared).email
    attachment = db.get(Attachment, email.attachments[0].id)
    attachment.content_type = content_type
    db.commit()
    return f"/emails/{email.id}/attachments/{attachment.id}"


def assert_a_download(response, served_type: str) -> None:
    assert response.body == BODY
    assert response.content_type == served_type
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("content_type", ACTIVE_TYPES)
def test_an_active_type_is_served_as_an_inert_download(staff, app, db, users, content_type):
    assert_a_download(staff.get(attached(app, db, users, content_type)), "application/octet-stream")


@pytest.mark.parametrize(("content_type", "served"), [("application/pdf", "application/pdf"),
                                                      ("Image/PNG; name=x.png", "image/png")])
def test_a_harmless_type_keeps_its_type_and_still_downloads(staff, app, db, users, content_type, served):
    assert_a_download(staff.get(attached(app, db, users, content_type)), served)
