"""Apache's hit log as the tests write it, and 'coretrack ingest --once' over it."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta
from pathlib import Path

from coretrack.config import Config
from coretrack.db import make_engine
from coretrack.tracking.ingester import Ingester

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0"
T0 = datetime(2026, 11, 29, 10, 0, 0)
_ids = itertools.count()


def line(token: str | None, *, method: str = "GET", status: int = 200, at: datetime = T0,
         agent: str = AGENT, ip: str = "203.0.113.9", hit_id: str | None = None) -> str:
    """A line as the shipped LogFormat writes it (see coretrack.tracking.hitlog.LOG_FORMAT)."""
    usec = (at - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    query = "" if token is None else f"?t={token}"
    return f"{usec}\t{method}\t{status}\t{ip}\t{hit_id or f'Aw{next(_ids):022d}'}\t{query}\t{agent}\n"


def write_log(config: Config, name: str, lines: list[str], mode: str = "a") -> Path:
    path = config.hit_log_dir / f"hits.{name}"
    with open(path, mode, encoding="ascii") as handle:
        handle.write("".join(lines))
    return path


def ingest(config: Config, **options) -> int:
    """What 'coretrack ingest --once' does: counts what the hit log holds, then returns."""
    engine = make_engine(config.database_url)
    try:
        return Ingester.for_install(config, engine).run(threading.Event(), once=True, **options)
    finally:
        engine.dispose()
