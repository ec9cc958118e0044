"""Several front-ends on one PostgreSQL: two Apaches, each with its own send worker (and, with the
log path, its own ingester), sharing only the database and secret.key.  Counts and claims are
atomic in the database, so hits split between the hosts count exactly, and a bulk email both
workers send at once reaches every recipient exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from sqlalchemy import select
from support.apache import STAFF_PASSWORD, ApacheServer
from support.hit_load import PATH, LoadResult, counted, fire, make_recipients, plan_hits, spooled, wait_until
from support.postgres import PostgresServer, needs_postgresql
from support.scripts import Run, start_run, stop
from support.smtp_sink import SmtpSink

from coretrack.cli import main as cli
from coretrack.config import Config
from coretrack.db import make_engine, make_session_factory
from coretrack.models import HitLogPosition, Recipient
from coretrack.settings import SettingsService

pytestmark = [pytest.mark.slow, needs_postgresql]

HITS = 2000
RECIPIENTS = 150
BULK = 300
# The log path: Apache answers the image itself and logs the hit, 'coretrack ingest' counts it.
LOG_PATH = "ingest" in cli.commands


@pytest.fixture
def front_ends():
    """``start(hit_log)``: two front-ends of one install on a new PostgreSQL database, each running
    what its host runs beside Apache: the send worker and, with the hit log, the ingester."""
    with ExitStack() as cleanup:
        def start(hit_log: bool = False) -> tuple[ApacheServer, ApacheServer]:
            url = cleanup.enter_context(PostgresServer.new_database())
            options = {"hit_log": True} if hit_log else {}
            first = ApacheServer("site", database_url=url, processes=2, threads=8, node="front-1", **options)
            second = ApacheServer("site", beside=first, processes=2, threads=8, node="front-2", **options)
            for server in (first, second):
                cleanup.callback(server.stop)
                server.start()
                # Short pauses between looks at the queue: both workers are at it when mail is queued.
                server.start_service("worker", "--interval", "0.2")
                if hit_log:
                    # Each host keeps its place in its own log: these two share a host name, so each
                    # was given its own (its env file carries it to the ingester, as to a systemd unit).
                    server.start_service("ingest")
            return first, second

        yield start


@pytest.mark.parametrize("hit_log", [
    pytest.param(False, id="wsgi-path"),
    pytest.param(True, id="log-path", marks=pytest.mark.skipif(not LOG_PATH, reason="no 'coretrack ingest' here")),
])
def test_hits_split_between_front_ends_count_exactly_once_each(front_ends, hit_log):
    first, second = front_ends(hit_log)
    assert first.config.secret_key() == second.config.secret_key()
    with first.session() as session:
        recipients = make_recipients(session, first.config.secret_key(), RECIPIENTS)
    hit_tokens, expected = plan_hits(recipients, HITS)

    # Every other hit to each host, both at once: the same recipients' rows from two hosts.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda server, share: fire(server.port, PATH, share, workers=16),
                                (first, second), (hit_tokens[0::2], hit_tokens[1::2])))

    assert [result.answers for result in results] == [{(200, True): HITS // 2}] * 2

    def all_counted() -> bool:
        with first.session() as session:
            return counted(session)[0] == expected

    wait_until(all_counted, "every hit counted")  # the WSGI path's writers and the ingesters count a little later
    with second.session() as session:
        counts, events = counted(session)
    assert counts == expected  # every recipient exactly its own hits, whichever host took them
    assert events == HITS
    assert spooled(first.config) == spooled(second.config) == 0


class SlowSink(SmtpSink):
    """Takes a few milliseconds a message, so that a bulk send lasts long enough for both workers
    to be sending it at the same time."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.005)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_sink():
    return SlowSink()


def test_bulk_email_queued_once_is_sent_by_both_workers_once_per_recipient(front_ends, smtp_server):
    first, second = front_ends()
    sink, port = smtp_server
    with first.session() as session:
        SettingsService(session, first.config).update(
            {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
             "from_address": "crm@example.test", "from_name": "Example CRM"}, user_name="test-setup")
    addresses = [f"bulk{number}@example.test" for number in range(BULK)]

    reply = first.request("POST", "/api/emails", user=("sam", STAFF_PASSWORD),
                          headers={"Content-Type": "application/json"},
                          body=json.dumps({"to": addresses, "subject": "News", "html": "<p>Hello</p>"}).encode())

    assert reply.status == 201, reply.body
    sent = json.loads(reply.body)
    assert sent["delivery"] == "queued"

    def nothing_left() -> bool:
        with second.session() as session:
            statuses = session.scalars(select(Recipient.status).where(Recipient.email_id == sent["id"])).all()
        return set(statuses) <= {"sent", "failed"}

    wait_until(nothing_left, "the workers to finish the email")
    with first.session() as session:
        statuses = Counter(session.scalars(select(Recipient.status).where(Recipient.email_id == sent["id"])))
    assert statuses == {"sent": BULK}
    received = Counter(address for mail in sink.received for address in mail.rcpt_tos)
    assert received == Counter(addresses)  # each recipient once, no one twice
    assert len(sink.received) == BULK
    # Both hosts' workers took part: each says how many messages it processed when it stops.
    workers = [server.stop_services()[0] for server in (first, second)]
    processed = [sum(int(number) for number in re.findall(r"^processed (\d+) messages$", output, re.M))
                 for output in workers]
    assert all(processed) and sum(processed) == BULK, workers


def test_two_front_ends_started_with_scripts_run_count_every_hit_across_a_killed_ingester(root, smtp_server):
    """As docs/tracking.md's "Several front-ends" says: scripts/run on each, its own data directory, one
    PostgreSQL, the first's secret.key and htpasswd copied to the second, each its own CORETRACK_NODE.
    A second front-end given the first's name is refused at once; one whose ingester is killed
    mid-load loses nothing once started again."""
    smtp_port = smtp_server[1]
    with PostgresServer.new_database() as url:
        first = start_run(root, smtp_port, name="one", CORETRACK_DATABASE_URL=url, CORETRACK_NODE="front-1")
        runs = [first]
        try:
            (root / "two").mkdir(mode=0o750)
            for name in ("secret.key", "htpasswd"):
                shutil.copy2(first.home / name, root / "two" / name)

            clash = start_run(root, smtp_port, name="two", wait=False, CORETRACK_DATABASE_URL=url,
                              CORETRACK_NODE="front-1")
            runs.append(clash)
            assert clash.wait(180) != 0
            assert "'front-1' is another front-end's on this database" in clash.output(), clash.output()

            def start_second() -> Run:
                runs.append(start_run(root, smtp_port, name="two", CORETRACK_DATABASE_URL=url,
                                      CORETRACK_NODE="front-2"))
                return runs[-1]

            second = start_second()
            config = Config.from_env({"CORETRACK_HOME": str(first.home), "CORETRACK_DATABASE_URL": url})
            engine = make_engine(url)
            try:
                with make_session_factory(engine)() as session:
                    recipients = make_recipients(session, config.secret_key(), RECIPIENTS)
                hit_tokens, _ = plan_hits(recipients, 3000)
                load = LoadResult()

                def fire_at_both(share: list[str], second: Run) -> None:
                    with ThreadPoolExecutor(max_workers=2) as pool:
                        list(pool.map(lambda run, half: fire(port_of(run), PATH, half, workers=8, result=load),
                                      (first, second), (share[0::2], share[1::2])))

                # The second's ingester dies mid-load: scripts/run stops that front-end; its log keeps the hits.
                killer = threading.Timer(0.5, lambda: os.kill(
                    second.child(lambda argv: argv[-1:] == ["ingest"]), signal.SIGKILL))
                killer.start()
                fire_at_both(hit_tokens[:1500], second)
                killer.join()
                assert second.wait(120) != 0 and "the hit-log ingester ended" in second.output(), second.output()
                second = start_second()
                fire_at_both(hit_tokens[1500:], second)

                expected = Counter({recipient.id: load.answered[recipient.token] for recipient in recipients})
                assert sum(expected.values()) >= 1500  # the first front-end answered all of its half

                def counts() -> Counter:
                    with make_session_factory(engine)() as session:
                        return counted(session)[0]
                wait_until(lambda: counts() == +expected, lambda: f"every answered hit counted: {counts()}", 60)
                for run in (first, second):
                    os.kill(run.process.pid, signal.SIGTERM)
                    assert run.wait() == 0, run.output()
                    assert run.leftovers() == []
                with make_session_factory(engine)() as session:
                    assert counted(session) == (+expected, sum(expected.values()))
                    nodes = dict(session.execute(select(HitLogPosition.node, HitLogPosition.owner)).all())
                assert set(nodes) == {"front-1", "front-2"} and len(set(nodes.values())) == 2
            finally:
                engine.dispose()
        finally:
            for run in runs:
                stop(run)


def port_of(run: Run) -> int:
    return int(run.base.rsplit(":", 1)[1])
