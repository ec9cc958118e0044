"""Serving a file someone uploaded (an email's attachments): always as a download, under a type no
browser runs, so nothing uploaded can execute in the application's origin.

The type an upload claims is the uploader's to choose, so it is trusted only when it is a known inert
one; anything else (HTML, SVG, XML, script, Flash, and every type not listed) goes out as
application/octet-stream.  ``Content-Disposition: attachment`` makes the browser save rather than
show, and ``nosniff`` stops it guessing a type from the bytes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from werkzeug.http import parse_options_header
from werkzeug.utils import send_file
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

INERT = "application/octet-stream"

# Documents, images and archives people attach; none of them is script a browser runs in our origin.
INERT_TYPES = frozenset({
    INERT, "text/plain", "text/csv", "text/calendar", "application/pdf", "application/zip", "application/gzip",
    "image/png", "image/jpeg", "image/gif", "image/webp", "audio/mpeg", "video/mp4",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
})


def served_type(claimed: str) -> str:
    """The type to serve an upload under: its claimed type without parameters when that is inert,
    else application/octet-stream."""
    essence = parse_options_header(claimed)[0].strip().lower()
    return essence if essence in INERT_TYPES else INERT


def send_upload(environ: WSGIEnvironment, path: Path, filename: str, claimed_type: str) -> Response:
    """The file as a download named ``filename``."""
    response = send_file(path, environ, mimetype=served_type(claimed_type), as_attachment=True,
                         download_name=filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
