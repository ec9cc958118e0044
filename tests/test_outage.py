"""No hit lost: with the database unavailable the image endpoint still answers at once with the
GIF and spools the hit; once the database is back, the spool is replayed exactly once."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time

import pytest
from sqlalchemy import text
from support.apache import ApacheServer
from support.hit_load import (
    PATH,
    LoadResult,
    counted,
    fire,
    make_recipients,
    plan_hits,
    replay_spool,
    spooled,
    wait_until,
)
from support.postgres import PostgresServer, can_stop_postgresql
from werkzeug.serving import make_server

from coretrack.app import CoreTrack
from coretrack.auth import Htpasswd, UserService
from coretrack.config import Config
from coretrack.db import make_engine
from coretrack.tracking import tracker


@pytest.fixture
def serving(app):
    """The app on a loopback port, with Werkzeug's threaded server (requests run concurrently)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def assert_every_hit_counted_once(session, expected, hits: int) -> None:
    counts, events = counted(session)
    assert counts == expected
    assert sum(counts.values()) == events == hits


@pytest.mark.slow
@can_stop_postgresql
def test_postgresql_stopped_in_the_middle_of_a_load_run_loses_no_hit():
    hits = 2400
    with PostgresServer.new_database() as url:
        apache = ApacheServer("site", "", database_url=url, processes=3, threads=8).start()
        try:
            with apache.session() as session:
                recipients = make_recipients(session, apache.config.secret_key(), 100)
            hit_tokens, expected = plan_hits(recipients, hits)
            result = LoadResult()
            load = threading.Thread(target=fire, args=(apache.port, PATH, hit_tokens), kwargs={"result": result})
            load.start()
            try:
                wait_until(lambda: result.done >= hits // 3, "the first third of the hits")
                PostgresServer.stop()
                try:
                    # These hits are answered while PostgreSQL is down: none waits for it to come back.
                    wait_until(lambda: result.done >= 2 * hits // 3, "the hits during the outage")
                finally:
                    PostgresServer.start()
            finally:
                load.join()

            assert result.answers == {(200, True): hits}
            assert "tracking hit(s) spooled" in apache.logs(), "the outage should have spooled hits"

            def every_hit_counted() -> bool:
                with apache.session() as session:
                    return counted(session)[0] == expected

            # Counted by the processes' writers and replay threads, also those still waiting when the load ended.
            wait_until(every_hit_counted, "every hit to be counted", seconds=15)
            wait_until(lambda: spooled(apache.config) == 0, "the spool to be emptied", seconds=15)
            assert replay_spool(apache.config) == 0
            with apache.session() as session:
                assert_every_hit_counted_once(session, expected, hits)
            assert not [token for token in set(hit_tokens) if token in apache.logs()]
        finally:
            apache.stop()


def hold_lock(config: Config):
    """A transaction elsewhere that keeps hits from writing: SQLite's write lock, or PostgreSQL's
    EXCLUSIVE lock on the recipients table (reads still pass, as with a long migration)."""
    engine = make_engine(config.database_url)
    connection = engine.connect()
    if engine.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
    else:
        connection.begin()
        connection.execute(text("LOCK TABLE recipients IN EXCLUSIVE MODE"))
    return engine, connection


def test_hits_during_a_lock_are_answered_at_once_and_counted_within_seconds_of_its_release_without_traffic(
    app, db, users, serving, caplog
):
    recipients = make_recipients(db, app.secret, 4)
    hit_tokens, expected = plan_hits(recipients, 36)
    engine, lock = hold_lock(app.config)
    try:
        result = fire(serving, PATH, hit_tokens, workers=24)
        # Every hit was answered while the lock was still held: spooled, not waiting for it.
        assert result.answers == {(200, True): 36}
        wait_until(lambda: spooled(app.config) == 36, "the hits to be spooled", seconds=10)
    finally:
        lock.rollback()
        lock.close()
        engine.dispose()

    # No further hit: the process's own replay thread counts the spool.
    wait_until(lambda: spooled(app.config) == 0, "the spool to be counted", seconds=10)
    assert_every_hit_counted_once(db, expected, 36)
    # The database's errors were logged, with their tracebacks, without the statement's parameters
    # (the tokens).  Only coretrack's records: this test's own server logs the requests it serves.
    logged = "\n".join(logging.Formatter().format(record) for record in caplog.records
                       if record.name.startswith("coretrack"))
    assert "tracking hit(s) spooled" in logged and "Traceback" in logged
    assert not [token for token in hit_tokens if token in logged]


def test_past_the_queues_bound_a_request_spools_its_hit_itself_and_every_hit_is_counted(
    app, db, users, monkeypatch
):
    monkeypatch.setattr(tracker, "QUEUE_MAX", 5)
    recipients = make_recipients(db, app.secret, 4)
    hit_tokens, expected = plan_hits(recipients, 40)
    engine, lock = hold_lock(app.config)
    try:
        for token in hit_tokens:
            app.tracker.hit(token, "192.0.2.1", "Mozilla/5.0 Firefox")
        # The writer waits for the lock holding at most one queue's worth, and as much is queued:
        # every other request wrote its hit to the spool before it was answered.
        assert spooled(app.config) >= 40 - 2 * 5
    finally:
        lock.rollback()
        lock.close()
        engine.dispose()

    def every_hit_counted() -> bool:
        return counted(db)[0] == expected

    wait_until(every_hit_counted, "every hit to be counted", seconds=15)
    wait_until(lambda: spooled(app.config) == 0, "the spool to be emptied", seconds=10)
    assert_every_hit_counted_once(db, expected, 40)


@pytest.mark.slow
def test_through_apache_a_locked_sqlite_database_spools_and_counts_within_seconds_without_traffic():
    apache = ApacheServer("site", "", processes=2, threads=10).start()
    try:
        with apache.session() as session:
            recipients = make_recipients(session, apache.config.secret_key(), 6)
        hit_tokens, expected = plan_hits(recipients, 36)
        engine, lock = hold_lock(apache.config)
        try:
            time_locked = time.monotonic()
            result = fire(apache.port, PATH, hit_tokens, workers=32)
            assert result.answers == {(200, True): 36}
            time.sleep(max(0.0, 3 - (time.monotonic() - time_locked)))
        finally:
            lock.rollback()
            lock.close()
            engine.dispose()
        wait_until(lambda: spooled(apache.config) == 0, "the spool to be counted", seconds=10)
        with apache.session() as session:
            assert_every_hit_counted_once(session, expected, 36)
        assert "tracking hit(s) spooled" in apache.logs()
        assert not [token for token in hit_tokens if token in apache.logs()]
    finally:
        apache.stop()


@pytest.fixture
def read_only_disk(tmp_path):
    """A file system of its own for the SQLite database, which the test can remount read-only."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
                      capture_output=True).returncode != 0:
        pytest.skip("needs root with the right to mount a tmpfs")

    def remount(mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)

    yield mount_point, remount
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_with_the_database_disk_read_only_hits_are_spooled_and_counted_once_it_is_writable(
    tmp_path, migrated_sqlite, read_only_disk
):
    mount_point, remount = read_only_disk
    shutil.copy(migrated_sqlite, mount_point / "coretrack.db")
    config = Config.from_env({"CORETRACK_HOME": str(tmp_path / "home"),
                              "CORETRACK_DATABASE_URL": f"sqlite:///{mount_point / 'coretrack.db'}"})
    config.prepare_home()
    app = CoreTrack(config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with app.Session() as session:
            UserService(session, Htpasswd(config.htpasswd_path)).add("sam", "pw-sam-1234", role="staff")
            recipients = make_recipients(session, app.secret, 3)
        hit_tokens, expected = plan_hits(recipients, 30)
        fire(server.server_port, PATH, hit_tokens[:10])

        # A disk the kernel remounted read-only after an error; the engines reconnect to it.
        app.close()
        remount("ro")
        try:
            result = fire(server.server_port, PATH, hit_tokens[10:])
            assert result.answers == {(200, True): 20}
            wait_until(lambda: spooled(config) == 20, "the hits to be spooled", seconds=10)
        finally:
            remount("rw")

        assert replay_spool(config) == 20
        with app.Session() as session:
            assert_every_hit_counted_once(session, expected, 30)
    finally:
        server.shutdown()
        app.close()
