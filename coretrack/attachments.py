"""Files someone uploaded (an email's or a template's attachments): kept under a random name in the
attachments folder, written all or nothing with their rows, and served back.

Serving is always as a download, under a type no browser runs, so nothing uploaded can execute in the
application's origin.

The type an upload claims is the uploader's to choose, so it is trusted only when it is a known inert
one; anything else (HTML, SVG, XML, script, Flash, and every type not listed) goes out as
application/octet-stream.  ``Content-Disposition: attachment`` makes the browser save rather than
show, and ``nosniff`` stops it guessing a type from the bytes."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from werkzeug.http import parse_options_header
from werkzeug.utils import send_file
from werkzeug.wrappers import Response

from .config import Config
from .models import StoredFile

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

INERT = "application/octet-stream"
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")


@dataclass(frozen=True)
class AttachmentData:
    filename: str
    content_type: str
    data: bytes


def clean_filename(name: str) -> str:
    """The base name of an uploaded file, without path parts or control characters."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(char for char in name if char.isprintable()).strip().lstrip(".")
    return name[:200] or "attachment"


def attachment_data(filename: str, content_type: str, data: bytes) -> AttachmentData:
    """An uploaded file as it is kept and sent: a safe file name, and a plain content type (else
    application/octet-stream)."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not _CONTENT_TYPE.match(content_type):
        content_type = "application/octet-stream"
    return AttachmentData(clean_filename(filename), content_type, bytes(data))


@contextmanager
def files_or_nothing(session: Session) -> Iterator[list[Path]]:
    """A transaction that writes attachment files (store_file, into the list yielded): if it fails
    it is rolled back and the files are removed, so no file is left without its row."""
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        session.rollback()
        for path in written:
            path.unlink(missing_ok=True)
        raise


def store_file(config: Config, data: bytes, written: list[Path]) -> str:
    """Write an attachment's bytes into the attachments folder under a new random name (never the
    uploaded one), appended to ``written`` for the caller to remove if its transaction fails."""
    config.attachments_dir.mkdir(parents=True, exist_ok=True)
    storage_name = secrets.token_hex(16)
    path = config.attachments_dir / storage_name
    with open(path, "xb") as handle:
        written.append(path)
        handle.write(data)
    return storage_name


def attachment_path(config: Config, attachment: StoredFile) -> Path:
    return config.attachments_dir / attachment.storage_name


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
