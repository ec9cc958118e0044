"""Exact counts under load: thousands of concurrent hits through the real Apache (several mod_wsgi
daemon processes, each with several threads), on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from support.apache import ApacheServer
from support.hit_load import PATH, counted, fire, make_recipients, plan_hits, spooled, wait_until

pytestmark = pytest.mark.slow

HITS = 3000
RECIPIENTS = 150


@pytest.fixture
def apache(empty_database_url):
    server = ApacheServer("site", "/crm", database_url=empty_database_url, processes=3, threads=8).start()
    yield server
    server.stop()


def test_thousands_of_concurrent_hits_count_exactly_once_each(apache):
    with apache.session() as session:
        recipients = make_recipients(session, apache.config.secret_key(), RECIPIENTS)
    hit_tokens, expected = plan_hits(recipients, HITS)

    result = fire(apache.port, apache.prefix + PATH, hit_tokens, workers=32)
    in_spool = spooled(apache.config)

    assert result.answers == {(200, True): HITS}
    # Concurrent hits share transactions: even SQLite's single writer keeps up, nothing waits in the spool.
    assert in_spool == 0, apache.error_log()

    def every_hit_counted() -> bool:
        with apache.session() as session:
            return sum(counted(session)[0].values()) >= HITS

    wait_until(every_hit_counted, "every hit to be counted", seconds=30)
    assert "spooled" not in apache.logs(), apache.error_log()
    with apache.session() as session:
        counts, events = counted(session)
    assert sum(counts.values()) == HITS
    assert counts == expected  # every recipient exactly its own hits
    assert events == HITS  # one event row per hit
    assert spooled(apache.config) == 0
