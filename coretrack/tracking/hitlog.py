"""Apache's hit log: the image hits Apache answered by itself, one line each, and how to read them.

In the site and express forms Apache serves the GIF for the public image path without running
any Python, and writes one line per hit through ``rotatelogs`` into ``$CORETRACK_HOME/hitlog/``
(files named by the UTC time they were started, so their names sort in writing order).  This
module reads those files and their lines; ingester.py counts them, each exactly once.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .hits import Hit, clean_agent
from .image import countable, token_of_query

# One line per request: tab-separated, every field escaped by Apache (no tab or line break can
# appear inside one), the user agent last.  apache.py puts this format into the configs.
LOG_FORMAT = r"%{usec}t\t%m\t%>s\t%a\t%{UNIQUE_ID}e\t%q\t%{User-Agent}i"
FIELDS = 7
# rotatelogs' file names: the prefix and the UTC time the file was started (%Y%m%d%H%M%S).
FILE_PREFIX = "hits."
_FILE_NAME = re.compile(r"hits\.[0-9]{14}")
# mod_unique_id's ids: 24 characters of [A-Za-z0-9@-] (the event table's hit_id holds 32).
_UNIQUE_ID = re.compile(r"[A-Za-z0-9@_-]{16,32}")
# Apache's escapes in logged values (ap_escape_logitem): \" \\ \n \t ... and \xhh.
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_ESCAPES = {b'"': b'"', b"\\": b"\\", b"n": b"\n", b"t": b"\t", b"r": b"\r", b"b": b"\b", b"v": b"\v", b"f": b"\f"}
_PLAIN_TOKEN_QUERY = re.compile(rb"\?t=[A-Za-z0-9_.-]*")
_EPOCH = datetime(1970, 1, 1)

# Bytes a batch of lines holds at most, beside its number of lines (ingester.BATCH_LINES): long
# user agents must not make a batch large in memory.
BATCH_BYTES = 4 * 2**20
# A line longer than this (Apache caps the request line and each header at 8 kB, escaping at
# most quadruples them) is not one of Apache's: it is skipped.
MAX_LINE = 256 * 1024


class IngestError(RuntimeError):
    pass


def _unescape(value: bytes) -> str:
    if b"\\" not in value:
        return value.decode("utf-8", errors="replace")  # most values: nothing was escaped

    def replace(match: re.Match[bytes]) -> bytes:
        escape = match[1]
        if escape[:1] == b"x" and len(escape) == 3:
            return bytes([int(escape[1:], 16)])
        return _ESCAPES.get(escape, escape)

    return _ESCAPE.sub(replace, value).decode("utf-8", errors="replace")


# A recipient's loads repeat its token (mail clients and proxies reload images): each distinct
# token's HMAC is worked out once while it stays among the recent ones.
_countable = functools.lru_cache(maxsize=2**16)(countable)


def _token(query: bytes, secret: bytes) -> str:
    """The token of the logged query string, as the application reads it (image.token_of_query)."""
    if _PLAIN_TOKEN_QUERY.fullmatch(query):  # "?t=<token>", what the mail carries: no decoding to do
        return query[3:].decode("ascii")
    return token_of_query(secret, _unescape(query).removeprefix("?"))


def parse_line(line: bytes, secret: bytes) -> Hit | None:
    """The hit a line of the log stands for, or None: HEAD or another method, an answer other
    than 200, a token this install did not sign (or none), or a line that is not Apache's."""
    fields = line.rstrip(b"\n").split(b"\t")
    if len(fields) != FIELDS:
        return None
    usec, method, status, ip, unique_id, query, agent = fields
    if method != b"GET" or status != b"200" or not usec.isdigit():
        return None
    hit_id = unique_id.decode("ascii", errors="replace")
    if not _UNIQUE_ID.fullmatch(hit_id):
        return None
    token = _token(query, secret)
    if not _countable(secret, token):
        return None
    try:
        at = _EPOCH + timedelta(microseconds=int(usec))
    except OverflowError:
        return None
    return Hit(token, at, _unescape(ip)[:45], _user_agent(agent), hit_id=hit_id)


@functools.lru_cache(maxsize=1024)
def _user_agent(agent: bytes) -> str:
    """A logged user agent as the application would keep it.  Cached: a few agents make most loads."""
    return "" if agent == b"-" else clean_agent(_unescape(agent))


@dataclass(frozen=True)
class Position:
    """The file being read and the byte after its last counted line; ("", 0) before any file."""

    file: str = ""
    offset: int = 0


@dataclass(frozen=True)
class Backlog:
    files: int
    bytes: int


class HitLog:
    """The folder of rotatelogs' files."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def files(self) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.directory) if _FILE_NAME.fullmatch(entry.name))
        except FileNotFoundError:
            return []

    def _size(self, name: str) -> int:
        try:
            return (self.directory / name).stat().st_size
        except FileNotFoundError:
            return 0

    def backlog(self, position: Position) -> Backlog:
        """What is written and not yet counted."""
        files = size = 0
        for name in self.files():
            if name < position.file:
                continue  # counted; removed with the next batch
            waiting = self._size(name) - (position.offset if name == position.file else 0)
            if waiting > 0:
                files, size = files + 1, size + waiting
        return Backlog(files, size)

    def lines(self, name: str, offset: int, limit: int) -> tuple[list[bytes], int]:
        """Up to ``limit`` whole lines from ``offset`` on, and the offset after them.  A last line
        without its line break is still being written: it is left for a later read."""
        lines: list[bytes] = []
        end = offset
        with open(self.directory / name, "rb") as handle:
            handle.seek(offset)
            while len(lines) < limit and end - offset < BATCH_BYTES:
                line = handle.readline(MAX_LINE)
                if line.endswith(b"\n"):
                    lines.append(line)
                    end += len(line)
                    continue
                if len(line) < MAX_LINE:
                    break  # the end, or a line still being written
                # Far too long for one of Apache's lines: skipped up to its end (when it has one).
                skipped = len(line)
                while line and not line.endswith(b"\n"):
                    line = handle.readline(MAX_LINE)
                    skipped += len(line)
                if not line.endswith(b"\n"):
                    break
                lines.append(b"")
                end += skipped
        return lines, end

    def remove(self, name: str) -> None:
        (self.directory / name).unlink(missing_ok=True)

    def lock(self) -> int:
        """An exclusive lock on the folder's ingesting, held until the descriptor is closed: two
        ingesters of one log would each count its lines once."""
        fd = os.open(self.directory / ".ingest.lock", os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IngestError(f"another 'coretrack ingest' is reading {self.directory}") from None
        return fd


