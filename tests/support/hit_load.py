"""Firing many image hits at a real server: a plan of hits per recipient, many client threads.

Shared by the load and the outage tests.  Every request is bounded (a fixed list of hits, a
timeout per request) and goes to loopback only.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine, event, func, select

from coretrack.models import AccessEvent, Email, Recipient, User
from coretrack.tracking import tokens
from coretrack.tracking.image import GIF
from coretrack.tracking.spool import Spool

PATH = "/modules/Emails/TrackAccess.php"


@dataclass
class LoadResult:
    answers: Counter = field(default_factory=Counter)  # (status, is the GIF) -> how many
    answered: Counter = field(default_factory=Counter)  # token -> how many times it got 200 and the GIF
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, answer, token: str | None = None) -> None:
        with self.lock:
            self.answers[answer] += 1
            self.done += 1
            if token is not None and answer == (200, True):
                self.answered[token] += 1


def make_recipients(session, secret: bytes, count: int) -> list[Recipient]:
    """One sent email to ``count`` recipients, each with its own token."""
    sender = session.scalars(select(User).order_by(User.id)).first()
    email = Email(subject="Load", html_body="<p>load</p>", sender_id=sender.id, from_address="crm@example.test",
                  status="sent")
    email.recipients = [Recipient(address=f"r{number}@example.test", token=tokens.new_token(secret), status="sent")
                        for number in range(count)]
    session.add(email)
    session.commit()
    return list(email.recipients)


def plan_hits(recipients: list[Recipient], total: int) -> tuple[list[str], Counter]:
    """``total`` hits spread unevenly over the recipients (recipient i weighs i % 7 + 1),
    interleaved so concurrent requests hit the same rows; returns the tokens in firing order
    and the expected count per recipient id."""
    weights = [number % 7 + 1 for number in range(len(recipients))]
    cycle = [recipient for recipient, weight in zip(recipients, weights, strict=True) for _ in range(weight)]
    chosen = list(itertools.islice(itertools.cycle(cycle), total))
    return [recipient.token for recipient in chosen], Counter(recipient.id for recipient in chosen)


def fire(port: int, path: str, hit_tokens: list[str], *, workers: int = 24, result: LoadResult | None = None,
         user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/115.0") -> LoadResult:
    """Requests every token once, from ``workers`` threads each on its own keep-alive connection."""
    result = result or LoadResult()

    def worker(share: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        served = 0  # answers on this connection so far
        try:
            for token in share:
                for attempt in (1, 2):
                    try:
                        connection.request("GET", f"{path}?t={token}", headers={"User-Agent": user_agent})
                        response = connection.getresponse()
                        body = response.read()
                        result.count((response.status, body == GIF), token)
                        served += 1
                        if response.will_close:
                            connection.close()
                            served = 0
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        connection.close()
                        # A busy event MPM closes idle keep-alive connections: a request sent on one
                        # that had served others, refused without a byte of answer, was never
                        # handled, so it goes again on a new connection (as browsers and urllib3
                        # do).  Any other failure is counted.
                        closed_idle = served and isinstance(exc, (http.client.RemoteDisconnected,
                                                                  ConnectionResetError, BrokenPipeError))
                        served = 0
                        if not (closed_idle and attempt == 1):
                            result.count(("no answer", exc.__class__.__name__))
                            break
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, [hit_tokens[start::workers] for start in range(workers)]))
    return result


def counted(session) -> tuple[Counter, int]:
    """The count per recipient id, and how many loads the access events stand for."""
    session.expire_all()
    counts = Counter(dict(session.execute(select(Recipient.id, Recipient.access_count)).all()))
    events = session.scalar(select(func.coalesce(func.sum(AccessEvent.hits), 0)))
    return +counts, events


def spooled(config) -> int:
    """Hits waiting in the spool (every spool file, claimed or not)."""
    return Spool(config.spool_dir, config.spool_max_bytes).state().hits


def wait_until(condition, what, seconds: float = 120) -> None:
    """A bound for a test that would otherwise hang, not a performance assertion.  ``what``: a
    text, or a function giving one when the wait fails (say, a process's output by then)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what() if callable(what) else what}"
        time.sleep(0.02)


def commits(engine: Engine) -> list[int]:
    """The transactions the engine commits from now on: on the tracker's, one per batch of hits,
    which shows when a hit that counts nothing has been written."""
    committed: list[int] = []
    event.listen(engine, "commit", lambda connection: committed.append(1))
    return committed


def replay_spool(config) -> int:
    """``coretrack spool replay`` for this install; returns how many hits it replayed."""
    from click.testing import CliRunner

    from coretrack.cli import main

    environ = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
               "CORETRACK_CONFIG": ""}
    result = CliRunner().invoke(main, ["spool", "replay"], env=environ)
    assert result.exit_code == 0, result.output
    return int(result.output.split()[1])
