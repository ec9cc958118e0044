"""Several front-ends on one PostgreSQL: two Apaches, each with its own send worker (and, with the
log path, its own ingester), sharing only the database and secret.key.  Counts and claims are
atomic in the database, so hits split between the hosts count exactly, and a bulk email both
workers send at once reaches every recipient exactly once."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from apache_server import STAFF_PASSWORD, ApacheServer
from conftest import PostgresServer, SmtpSink, needs_postgresql
from hit_load import PATH, counted, fire, make_recipients, plan_hits, spooled, wait_until
from sqlalchemy import select

from coretrack.cli import main as cli
from coretrack.models import Recipient
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
            first = ApacheServer("site", database_url=url, processes=2, threads=8, **options)
            second = ApacheServer("site", beside=first, processes=2, threads=8, **options)
            for number, server in enumerate((first, second), 1):
                cleanup.callback(server.stop)
                server.start()
                # Short pauses between looks at the queue: both workers are at it when mail is queued.
                server.start_service("worker", "--interval", "0.2")
                if hit_log:
                    # Each host keeps its place in its own log under its name; these two share a host name.
                    server.start_service("ingest", environ={"CORETRACK_NODE": f"front-{number}"})
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
