"""Counting the image hits Apache logged (hitlog.py), each exactly once.

``coretrack ingest`` reads the hit log's files in order and counts the hits through
``counting.count_hits``.  One transaction per batch counts the batch and moves this front-end's
position (``hit_log_positions``: one row per front-end, named by ``CORETRACK_NODE`` and owned by the
data directory's front-end id) to the byte after the batch's last line: a crash or a restart resumes
exactly there, so no line is counted twice or skipped.  While the database is down the hits simply
wait in the log.  Stopped, it first counts what the log holds: stopped after Apache and its logger,
that is every hit Apache answered.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..db import make_engine
from ..models import utcnow
from .counting import count_hits, write_transaction
from .hitlog import Backlog, HitLog, IngestError, Position, parse_line
from .hits import Hit

log = logging.getLogger(__name__)

# Lines per transaction.  Under load the same recipients recur within a batch, and each costs one
# update however many of its loads the batch holds: a larger batch counts a backlog faster (on a
# saturated 2-core machine, 10,000 lines a batch counted ~40% more lines a second than 2,000, and kept
# up with Apache), while none holds SQLite's write lock for more than a fraction of a second and
# every statement stays far below SQLite's 32,766 parameters.
BATCH_LINES = 10_000
# How often an idle ingester looks for new lines: a hit is counted well within a second.
POLL_INTERVAL = 0.2
# How long it waits before trying again while the database is unavailable.
RETRY_INTERVAL = 1.0
# Told to stop, it first counts what the log holds (Apache and its logger have stopped before it,
# so that is every answered hit) for at most this long; what is left waits in the log.
DRAIN_SECONDS = 30.0


class _Moved(Exception):
    """This node's position is not where this process last saw it."""


# Compare-and-set, as the batch's first statement: it takes the row's lock (PostgreSQL) or the
# write lock (SQLite) and proves that nobody moved this node's position since it was read.
_MOVE_POSITION = text(
    "UPDATE hit_log_positions SET file = :file, byte_offset = :offset, updated_at = :now "
    "WHERE node = :node AND owner = :owner AND file = :old_file AND byte_offset = :old_offset"
)
_POSITION_OF_OWNER = text("SELECT node, file, byte_offset FROM hit_log_positions WHERE owner = :owner")
_OWNER_OF_NODE = text("SELECT owner, updated_at FROM hit_log_positions WHERE node = :node")
_NEW_POSITION = text(
    "INSERT INTO hit_log_positions (node, file, byte_offset, updated_at, owner) "
    "VALUES (:node, '', 0, :now, :owner) ON CONFLICT (node) DO NOTHING"
)
# A position from before positions had owners: the first front-end to claim it keeps it.
_ADOPT_POSITION = text("UPDATE hit_log_positions SET owner = :owner WHERE node = :node AND owner IS NULL")


@dataclass(frozen=True)
class Claim:
    """The name this front-end counts under, and how far it has counted."""

    node: str
    position: Position


def claim_node(connection: Connection, owner: str, asked: str | None) -> Claim:
    """This front-end's place in the database, made or taken the first time, in the caller's
    transaction.  ``owner`` is the data directory's front-end id; ``asked`` the name CORETRACK_NODE
    gives, if any (else the name counted under before, or the host name).  IngestError when the
    name is another front-end's, or when CORETRACK_NODE renames a front-end that has counted under
    another name: either would make two logs share one place, and one of them would be lost."""
    mine = connection.execute(_POSITION_OF_OWNER, {"owner": owner}).first()
    if mine is not None:
        if asked is not None and asked != mine[0]:
            raise IngestError(
                f"this front-end counts its hit log under the name {mine[0]!r}, but CORETRACK_NODE says {asked!r}: "
                f"set CORETRACK_NODE={mine[0]} (or leave it unset) — a new name would count the log's lines again")
        return Claim(mine[0], Position(mine[1], mine[2]))
    node = asked or socket.gethostname()
    values = {"node": node, "owner": owner, "now": utcnow()}
    connection.execute(_NEW_POSITION, values)  # a name nobody counts under yet
    connection.execute(_ADOPT_POSITION, values)  # or a place kept from before positions had owners
    mine = connection.execute(_POSITION_OF_OWNER, values).first()
    if mine is None:
        taken = connection.execute(_OWNER_OF_NODE, values).first()
        since = f" (last counted at {str(taken[1])[:16]} UTC)" if taken else ""
        raise IngestError(
            f"the node name {node!r} is another front-end's on this database{since}: two front-ends counting "
            f"under one name would lose each other's hits.  Give this one its own name: set CORETRACK_NODE "
            f"(in {'its environment or ' if asked else ''}the env file its services read) and start it again")
    return Claim(mine[0], Position(mine[1], mine[2]))


def read_position(connection: Connection, owner: str) -> Position:
    row = connection.execute(_POSITION_OF_OWNER, {"owner": owner}).first()
    return Position(row[1], row[2]) if row else Position()


class Ingester:
    def __init__(self, engine: Engine, secret: bytes, hit_log: HitLog, owner: str, node: str | None = None,
                 batch: int = BATCH_LINES):
        self.engine = engine
        self.secret = secret
        self.hit_log = hit_log
        self.owner = owner
        self.asked_node = node
        self.node = node or ""  # the name counted under: known once claimed
        self.batch = batch
        # What the database holds for this front-end, as far as this process knows; None: read it again.
        self._position: Position | None = None
        self._next_warning = 0.0

    @classmethod
    def for_install(cls, config: Config, engine: Engine) -> Ingester:
        return cls(engine, config.secret_key(), HitLog(config.hit_log_dir), config.front_end_id(), config.node)

    def position(self) -> Position:
        if self._position is None:
            with write_transaction(self.engine) as connection:
                claim = claim_node(connection, self.owner, self.asked_node)
            self.node, self._position = claim.node, claim.position
        return self._position

    def step(self) -> int:
        """Counts one batch; how many lines it read (0: nothing new).  Raises on database errors."""
        position = self.position()
        files = self.hit_log.files()
        # Files before the position's are counted (a crash may have left them): removed.
        for name in files:
            if name < position.file:
                self.hit_log.remove(name)
        later = [name for name in files if name > position.file]
        if position.file in files:
            current, offset = position.file, position.offset
        elif later:
            current, offset = later.pop(0), 0
        else:
            return 0
        lines, end = self.hit_log.lines(current, offset, self.batch)
        if not lines:
            if later:
                # rotatelogs writes nothing more to a file once it has started a newer one, and the
                # listing above came after that: the file is read to its end (a torn last line,
                # if any, can never be completed).  The next step starts on the newer file.
                self.hit_log.remove(current)
            return 0
        hits = [hit for hit in (parse_line(line, self.secret) for line in lines) if hit is not None]
        self._commit(position, Position(current, end), hits)
        return len(lines)

    def _commit(self, old: Position, new: Position, hits: list[Hit]) -> None:
        values = {"node": self.node, "owner": self.owner, "file": new.file, "offset": new.offset, "now": utcnow(),
                  "old_file": old.file, "old_offset": old.offset}
        self._position = None  # until the commit is known to have happened
        try:
            with write_transaction(self.engine) as connection:
                if connection.execute(_MOVE_POSITION, values).rowcount != 1:
                    raise _Moved
                if hits:
                    count_hits(connection, hits)
        except _Moved:
            # Only this front-end's ingester moves its position, and the folder's lock keeps it to
            # one process: worth telling, and the batch is counted again from what the database says.
            log.warning("the hit log position of %r moved under this ingester; reading it again", self.node)
            return
        self._position = new

    def run(self, stop: threading.Event, *, once: bool = False, interval: float = POLL_INTERVAL,
            drain: float = DRAIN_SECONDS) -> int:
        """Counts until ``stop`` is set, then what the log still holds, for at most ``drain``
        seconds (``once``: until the log is read to its end); returns how many lines it read.
        With ``once``, a database error ends it (raised)."""
        if not self.hit_log.directory.is_dir():
            raise IngestError(f"no hit log folder {self.hit_log.directory}: run 'coretrack db upgrade'")
        lock = self.hit_log.lock()
        try:
            read = 0 if once else self._follow(stop, interval)
            # Then to the log's end: all of it with --once; at a stop, what Apache and its logger
            # wrote before they ended (scripts/run and the units stop them first), for a while.
            return read + self._read_to_end(None if once else time.monotonic() + drain)
        finally:
            os.close(lock)

    def _follow(self, stop: threading.Event, interval: float) -> int:
        """Counts new lines as they come until ``stop`` is set, riding out database errors."""
        read = 0
        while not stop.is_set():
            try:
                lines = self.step()
            except (SQLAlchemyError, OSError) as exc:
                self._position = None
                if time.monotonic() >= self._next_warning:  # once a minute, not once a second
                    self._next_warning = time.monotonic() + 60
                    # The engines hide statement parameters: the message names no token.
                    what = "database unavailable" if isinstance(exc, SQLAlchemyError) else "log unreadable"
                    log.warning("hit log not counted (%s); the hits wait in %s", what, self.hit_log.directory,
                                exc_info=True)
                stop.wait(RETRY_INTERVAL)
                continue
            read += lines
            if lines == 0 and not self._more_to_read():
                stop.wait(interval)
        return read

    def _read_to_end(self, deadline: float | None) -> int:
        """Counts what the log holds until it is read to its end.  With no deadline (--once) an
        error is raised; past the deadline, or on an error, what is left waits in the log."""
        read = 0
        while deadline is None or time.monotonic() < deadline:
            try:
                lines = self.step()
            except (SQLAlchemyError, OSError):
                self._position = None
                if deadline is None:
                    raise
                log.warning("stopping with hits not yet counted; they wait in %s", self.hit_log.directory,
                            exc_info=True)
                break
            read += lines
            if lines == 0 and not self._more_to_read():
                break
        return read

    def _more_to_read(self) -> bool:
        """Whether a file is left to move on to (a step that read nothing may have just finished one)."""
        if self._position is None:
            return True  # unknown: the next step reads it (and handles the database's errors)
        return any(name > self._position.file for name in self.hit_log.files())


def backlog(config: Config) -> Backlog:
    """This node's backlog; all of the log when the database cannot say how far it was counted."""
    position = Position()
    try:
        owner = config.front_end_id_path.read_text().strip()  # none yet: nothing counted
        engine = make_engine(config.database_url)
        try:
            with engine.connect() as connection:
                position = read_position(connection, owner)
        finally:
            engine.dispose()
    except Exception:
        log.debug("position unknown: counting the whole hit log as backlog", exc_info=True)
    return HitLog(config.hit_log_dir).backlog(position)
