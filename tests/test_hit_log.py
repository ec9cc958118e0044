"""The hit log path on a real Apache: Apache answers the image itself, no Python runs for it, and
'coretrack ingest' counts every hit exactly once (load, restarts, rotation, outages), on SQLite
and on PostgreSQL."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.apache import STAFF_PASSWORD, ApacheServer
from support.hit_load import PATH, LoadResult, counted, fire, make_recipients, plan_hits, wait_until
from support.postgres import PostgresServer, can_stop_postgresql
from test_apache import tricky_path_failures

from coretrack.doctor import check_hit_log
from coretrack.models import AccessEvent, HitLogPosition, Recipient
from coretrack.tracking import tokens
from coretrack.tracking.image import GIF

pytestmark = pytest.mark.slow

# mod_wsgi-express sizes Apache itself by --processes and --threads (2 x 5 here): more keep-alive
# clients than that and Apache closes idle ones, which a client may be reusing at that moment.
EXPRESS_CLIENTS = 8
FORMS = [(form, prefix) for form in ("site", "express") for prefix in ("", "/crm")]
GIF_HEADERS = {"content-type": "image/gif", "cache-control": "no-store, no-cache, must-revalidate, private",
               "pragma": "no-cache", "expires": "0", "content-length": str(len(GIF))}


@contextmanager
def running(server: ApacheServer):
    """'coretrack ingest' beside the server, as its systemd unit runs it."""
    ingest = server.start_service("ingest")
    try:
        yield ingest
    finally:
        ingest.stop()


@pytest.fixture(scope="module", params=FORMS, ids=[f"{form}{prefix or '-root'}" for form, prefix in FORMS])
def apache(request):
    form, prefix = request.param
    server = ApacheServer(form, prefix, hit_log=True)
    try:
        yield server.start()
    finally:
        server.stop()


def recipient_counts(server: ApacheServer, recipients=None) -> dict[int, int]:
    """The count per recipient id (of these recipients only, when given)."""
    with server.session() as session:
        counts = dict(counted(session)[0])
    return counts if recipients is None else {key: value for key, value in counts.items()
                                              if key in {recipient.id for recipient in recipients}}


def test_the_generated_config_passes_apache_configtest(apache):
    result = apache.configtest()
    assert result.returncode == 0, result.stdout + result.stderr


def test_apache_answers_the_gif_with_its_headers_and_the_ingester_counts_only_good_gets(apache):
    with apache.session() as session:
        good, other = make_recipients(session, apache.config.secret_key(), 2)
    endpoint = apache.prefix + PATH
    requests = {
        "good": ("GET", f"{endpoint}?t={good.token}", {}),
        "good, asking for a validator and a range": ("GET", f"{endpoint}?t={good.token}&x=1",
                                                     {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT",
                                                      "If-None-Match": "*", "Range": "bytes=0-3"}),
        "forged": ("GET", f"{endpoint}?t={tokens.new_token(b'another key')}", {}),
        "missing": ("GET", endpoint, {}),
        "garbage": ("GET", f"{endpoint}?t=%00%ff../x", {}),
        "HEAD": ("HEAD", f"{endpoint}?t={other.token}", {}),
    }
    for what, (method, path, headers) in requests.items():
        reply = apache.request(method, path, headers=headers)
        assert reply.status == 200, what
        assert {name: reply.headers.get(name) for name in GIF_HEADERS} == GIF_HEADERS, what
        assert "last-modified" not in reply.headers and "etag" not in reply.headers, what
        assert reply.body == (b"" if method == "HEAD" else GIF), what
    # Apache answered all of it: nothing is counted until the ingester reads the log.
    assert recipient_counts(apache) == {}
    apache.run("ingest", "--once")
    assert recipient_counts(apache) == {good.id: 2}
    with apache.session() as session:
        events = session.scalars(select(AccessEvent)).all()
        assert all(len(event.hit_id) >= 24 for event in events)  # mod_unique_id's
    # Tokens stay out of Apache's own logs: only the hit log holds them.
    assert good.token not in apache.logs()


def test_tricky_anonymous_paths_still_reach_nothing_but_the_image(apache):
    assert tricky_path_failures(apache) == []
    # Longer paths stay with the application, behind the login.
    for suffix in ("/x", "/anything/else"):
        assert apache.request("GET", apache.prefix + PATH + suffix).status == 401
        reply = apache.request("GET", apache.prefix + PATH + suffix, user=("sam", STAFF_PASSWORD))
        assert reply.status == 404 and reply.from_app


def wsgi_daemons(server: ApacheServer) -> list[int]:
    """mod_wsgi's daemon processes of this Apache (their process title starts with "(wsgi:")."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
            group = os.getpgid(int(entry))
        except (OSError, ProcessLookupError):
            continue
        if group == server.process.pid and title.startswith(b"(wsgi:"):
            found.append(int(entry))
    return found


def test_the_image_never_reaches_the_application(apache):
    """With every mod_wsgi daemon frozen, pages hang but the image is answered, and counted."""
    with apache.session() as session:
        recipients = make_recipients(session, apache.config.secret_key(), 20)
    hit_tokens, expected = plan_hits(recipients, 300)
    daemons = wsgi_daemons(apache)
    assert daemons, "no mod_wsgi daemon found"
    for pid in daemons:
        os.kill(pid, signal.SIGSTOP)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", apache.port, timeout=2)
        credentials = base64.b64encode(f"sam:{STAFF_PASSWORD}".encode()).decode()
        connection.request("GET", apache.prefix + "/emails", headers={"Authorization": f"Basic {credentials}"})
        with pytest.raises(TimeoutError):
            connection.getresponse()  # the application cannot answer
        connection.close()
        result = fire(apache.port, apache.prefix + PATH, hit_tokens, workers=EXPRESS_CLIENTS)
        assert result.answers == {(200, True): 300}
        with running(apache) as ingest:
            wait_until(lambda: recipient_counts(apache, recipients) == dict(expected),
                       lambda: f"the hits counted: {recipient_counts(apache, recipients)}\n{ingest.output()}\n"
                               f"{apache.error_log()}", 30)
    finally:
        for pid in daemons:
            os.kill(pid, signal.SIGCONT)


# -- counting exactly, whatever happens ---------------------------------------------------------------


@pytest.fixture
def server(empty_database_url):
    server = ApacheServer("site", "/crm", database_url=empty_database_url, processes=2, threads=5, hit_log=True,
                          hit_log_rotation="2K")
    try:
        yield server.start()
    finally:
        server.stop()


def assert_exact(server: ApacheServer, expected, hits: int) -> None:
    with server.session() as session:
        counts, events = counted(session)
    assert counts == expected
    assert sum(counts.values()) == events == hits


def test_concurrent_load_through_apache_counts_every_hit_once(server):
    with server.session() as session:
        recipients = make_recipients(session, server.config.secret_key(), 150)
    (late,) = make_recipients_in(server, 1)
    hits = 3000
    hit_tokens, expected = plan_hits(recipients, hits)
    # How soon a hit is counted is scripts/bench-pixel's to measure (the machine may be slow or
    # shared); the waits here are deadlines against a stalled ingester, and the figures are printed.
    with running(server), server.session() as session:
        def total() -> int:
            session.rollback()  # a fresh snapshot
            return session.scalar(select(func.sum(Recipient.access_count))) or 0

        result = fire(server.port, server.prefix + PATH, hit_tokens, workers=32)
        done = time.monotonic()
        wait_until(lambda: total() >= hits, "every hit counted", 120)
        lag = time.monotonic() - done
        # One more, alone, once the load is counted: the ingester still follows the log.
        start = time.monotonic()
        assert server.request("GET", f"{server.prefix}{PATH}?t={late.token}").body == GIF
        wait_until(lambda: total() == hits + 1, "the last hit counted", 60)
        single = time.monotonic() - start
    assert result.answers == {(200, True): hits}
    expected[late.id] = 1
    assert_exact(server, expected, hits + 1)
    print(f"counted {hits} hits {lag:.2f}s after the load ended; a lone hit {single:.2f}s after its answer")


def make_recipients_in(server: ApacheServer, count: int):
    with server.session() as session:
        return make_recipients(session, server.config.secret_key(), count)


def test_an_ingester_killed_mid_way_and_restarted_counts_no_hit_twice(server):
    recipients = make_recipients_in(server, 100)
    hits = 6000  # enough to last several kills on a fast machine
    hit_tokens, expected = plan_hits(recipients, hits)
    result = LoadResult()
    load = threading.Thread(target=fire, args=(server.port, server.prefix + PATH, hit_tokens),
                            kwargs={"result": result, "workers": 16})
    load.start()
    kills = 0
    try:
        ingest = server.start_service("ingest")
        # Killed (SIGKILL: no clean-up at all) and restarted several times while hits keep coming.
        while result.done < hits and kills < 5:
            time.sleep(0.3)
            ingest.stop(signal.SIGKILL)
            kills += 1
            ingest = server.start_service("ingest")
    finally:
        load.join()
    try:
        wait_until(lambda: sum(recipient_counts(server).values()) >= hits, "every hit counted", 60)
    finally:
        ingest.stop()
    assert kills >= 2
    assert result.answers == {(200, True): hits}
    server.run("ingest", "--once")
    assert_exact(server, expected, hits)


def test_rotated_hit_logs_are_counted_and_removed(server):
    recipients = make_recipients_in(server, 10)
    seen: set[str] = set()
    total = 0
    expected: dict[int, int] = {}
    with running(server):
        for _ in range(4):
            hit_tokens, planned = plan_hits(recipients, 60)
            fire(server.port, server.prefix + PATH, hit_tokens, workers=4)
            seen |= {path.name for path in server.config.hit_log_dir.glob("hits.*")}
            total += 60
            for key, value in planned.items():
                expected[key] = expected.get(key, 0) + value
            wait_until(lambda: sum(recipient_counts(server).values()) == total, "the burst counted", 30)  # noqa: B023
            time.sleep(1.1)  # rotatelogs names files by the second
        # Counted files go once a newer one exists: the newest alone remains.
        wait_until(lambda: len(list(server.config.hit_log_dir.glob("hits.*"))) == 1, "counted files removed", 30)
    assert len(seen) >= 4, seen
    assert_exact(server, expected, total)


@can_stop_postgresql
def test_hits_made_while_postgresql_is_down_wait_in_the_log_and_are_counted_when_it_is_back():
    with PostgresServer.new_database() as url:
        server = ApacheServer("express", "", database_url=url, hit_log=True).start()
        try:
            recipients = make_recipients_in(server, 30)
            hit_tokens, expected = plan_hits(recipients, 600)
            with running(server) as ingest:
                fire(server.port, PATH, hit_tokens[:200], workers=EXPRESS_CLIENTS)
                wait_until(lambda: sum(recipient_counts(server).values()) == 200, "the first hits counted", 30)
                PostgresServer.stop()
                try:
                    # Apache answers without the database; the hits wait in the log.
                    result = fire(server.port, PATH, hit_tokens[200:], workers=EXPRESS_CLIENTS)
                    assert result.answers == {(200, True): 400}
                    backlog = list(check_hit_log(server.config))[-1]
                    assert "0 file(s)" not in backlog.what, backlog.what
                    time.sleep(1.5)
                finally:
                    PostgresServer.start()
                wait_until(lambda: sum(recipient_counts(server).values()) >= 600, "the outage's hits counted", 30)
                assert "database unavailable" in ingest.output()
            assert_exact(server, expected, 600)
            folder, backlog = check_hit_log(server.config)
            assert folder.ok, folder.line()  # the ingester, as www-data, read root's files through the group
            assert backlog.ok and "0 kB" in backlog.what
            with server.session() as session:
                assert session.scalars(select(HitLogPosition.node)).all() == [socket.gethostname()]
        finally:
            server.stop()


@pytest.mark.parametrize("form, options, hit_log", [
    ("site", [], True), ("express", [], True), ("site", ["--no-hit-log"], False),
    ("express", ["--no-hit-log"], False), ("htaccess", [], False)])
def test_apache_config_writes_the_hit_log_path_unless_told_not_to(tmp_path, form, options, hit_log):
    from click.testing import CliRunner

    from coretrack.cli import main

    output = tmp_path / "out"
    result = CliRunner().invoke(main, ["apache-config", "--form", form, "--home", str(tmp_path / "home"),
                                       "--output", str(output), *options], env={"CORETRACK_CONFIG": ""})
    assert result.exit_code == 0, result.output
    configs = "".join(path.read_text() for path in output.rglob("*.conf")) + (
        (output / "www" / ".htaccess").read_text() if form == "htaccess" else "")
    assert ("AliasMatch" in configs) == hit_log
    assert ("hitlog/hits.%Y%m%d%H%M%S" in configs) == hit_log
    assert (output / "coretrack-ingest.service").exists() == hit_log
    assert (output / "tracking.gif").exists() == hit_log
    if hit_log:
        assert (output / "tracking.gif").read_bytes() == GIF
        assert "ExecStart=" in (output / "coretrack-ingest.service").read_text()
