"""The spool: hits the database could not take, on disk until they are replayed."""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .hits import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpoolState:
    hits: int
    size: int


class Spool:
    """Append-only files of hits the database could not take, at most ``max_bytes`` in all.

    Writers append whole lines under an exclusive lock to ``hits.jsonl``; a
    replayer takes the lock and renames the file to ``claimed-<time>-<uuid>.jsonl``,
    so no line is written after it was read.  A claimed file is deleted only
    after all its hits were replayed.
    """

    ACTIVE = "hits.jsonl"

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def append(self, hits: list[Hit]) -> int:
        """Writes the hits that fit under the size bound; returns how many."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / self.ACTIVE
        lines = [hit.as_line().encode("utf-8") for hit in hits]
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A replayer may have renamed the file while we waited for the lock.
                try:
                    same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same_file = False
                if same_file:
                    room = self.max_bytes - self.state(count_hits=False).size
                    kept = []
                    for line in lines:
                        room -= len(line)
                        if room < 0:
                            break
                        kept.append(line)
                    if kept:
                        os.write(fd, b"".join(kept))
                        os.fsync(fd)
                    return len(kept)
            finally:
                os.close(fd)

    def _files(self) -> list[Path]:
        try:
            return sorted(Path(entry.path) for entry in os.scandir(self.directory) if entry.name.endswith(".jsonl"))
        except FileNotFoundError:
            return []

    def pending(self) -> bool:
        return self.state(count_hits=False).size > 0

    def state(self, count_hits: bool = True) -> SpoolState:
        hits = size = 0
        for path in self._files():
            try:
                size += path.stat().st_size
                if count_hits:
                    with open(path, "rb") as handle:
                        hits += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue  # replayed meanwhile
        return SpoolState(hits, size)

    def claim(self) -> Iterator[Path]:
        """Yields each spooled file, renamed away from writers and locked against other
        replayers while the caller reads it, oldest claims first."""
        active = self.directory / self.ACTIVE
        if active.exists():
            fd = os.open(active, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                claimed = self.directory / f"claimed-{int(time.time()):012d}-{uuid.uuid4().hex}.jsonl"
                try:
                    os.rename(active, claimed)
                except FileNotFoundError:
                    pass
            finally:
                os.close(fd)
        for path in sorted(self.directory.glob("claimed-*.jsonl")):
            try:
                lock = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                # Another replayer holding this file: leave it to that one.
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if path.exists():
                    yield path
            finally:
                os.close(lock)

    @staticmethod
    def read(path: Path, batch: int) -> Iterator[list[Hit]]:
        """The file's hits, ``batch`` at a time, read as they are needed."""
        hits: list[Hit] = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    hits.append(Hit.from_line(line))
                except (ValueError, KeyError, TypeError):
                    # Only a torn last line after a crash can look like this; it cannot be counted.
                    log.error("spool file %s line %d unreadable, skipped", path.name, number)
                    continue
                if len(hits) == batch:
                    yield hits
                    hits = []
        if hits:
            yield hits

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)
