"""The image endpoint: always the same GIF, counts only good tokens, exactly, and loses nothing."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import event, func, select
from support.hit_load import commits, wait_until
from werkzeug.serving import make_server

from coretrack.db import make_engine
from coretrack.models import AccessEvent, Email, Recipient, Setting, utcnow
from coretrack.tracking import tokens
from coretrack.tracking.counting import EVENTS_PER_RECIPIENT_PER_MINUTE, count_hits, write_transaction
from coretrack.tracking.hits import Hit
from coretrack.tracking.image import GIF
from coretrack.tracking.spool import Spool
from coretrack.tracking.tracker import REPLAY_BATCH
from coretrack.tracking.verdicts import classify, store_ip

PATH = "/modules/Emails/TrackAccess.php"
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}


@pytest.fixture
def recipient(app, db, users):
    email = Email(subject="Hello", html_body="<p>hi</p>", sender_id=users["sam"].id, from_address="crm@example.test")
    email.recipients = [
        Recipient(address="ann@example.test", token=tokens.new_token(app.secret), status="sent"),
        Recipient(address="bob@example.test", token=tokens.new_token(app.secret), status="sent"),
    ]
    db.add(email)
    db.commit()
    return email.recipients[0]


def counts(db, recipient):
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    # The loads the events stand for (a row stands for more than one past the per-minute bound).
    loads = func.coalesce(func.sum(AccessEvent.hits), 0)
    events = db.scalar(select(loads).where(AccessEvent.recipient_id == recipient.id))
    return row.access_count, events


def assert_is_the_gif(response):
    assert response.status_int == 200
    assert response.content_type == "image/gif"
    assert response.body == GIF
    for name, value in NO_CACHE.items():
        assert response.headers[name] == value


def test_the_image_is_a_valid_transparent_1x1_gif():
    image = Image.open(io.BytesIO(GIF))
    assert image.format == "GIF"
    assert image.size == (1, 1)
    assert image.convert("RGBA").getpixel((0, 0))[3] == 0


def test_a_good_token_returns_the_gif_and_counts_one_access_with_its_event(anon, db, recipient):
    response = anon.get(PATH, {"t": recipient.token},
                        headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115"},
                        extra_environ={"REMOTE_ADDR": "203.0.113.77"})
    assert_is_the_gif(response)
    wait_until(lambda: counts(db, recipient) == (1, 1), "the hit to be counted", seconds=10)
    row = db.get(Recipient, recipient.id)
    assert row.first_access is not None and row.first_access == row.last_access
    access = db.scalar(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id))
    assert access.ip == "203.0.113.0"  # truncated by default
    assert access.verdict == "human"
    assert "Thunderbird" in access.user_agent


def test_each_hit_counts_and_only_for_its_own_recipient(anon, db, recipient):
    other = db.scalars(select(Recipient).where(Recipient.id != recipient.id)).one()
    for _ in range(3):
        anon.get(PATH, {"t": recipient.token})
    wait_until(lambda: counts(db, recipient) == (3, 3), "the hits to be counted", seconds=10)
    assert counts(db, other) == (0, 0)


def tampered(token: str) -> str:
    flipped = "A" if token[5] != "A" else "B"
    return token[:5] + flipped + token[6:]


@pytest.mark.parametrize(
    "make_query",
    [
        pytest.param(lambda t: {"t": tampered(t)}, id="tampered"),
        pytest.param(lambda t: {"t": t[:-1]}, id="truncated"),
        pytest.param(lambda t: {"t": t + "A"}, id="extended"),
        pytest.param(lambda t: {"t": tokens.new_token(b"another install's key")}, id="signed-by-another-key"),
        pytest.param(lambda t: {"t": "x" * 22 + "." + "y" * 22}, id="random"),
        pytest.param(lambda t: {}, id="missing"),
        pytest.param(lambda t: {"t": ""}, id="empty"),
        pytest.param(lambda t: {"t": t * 200}, id="oversized"),
        pytest.param(lambda t: {"t": "' OR 1=1 --"}, id="sql"),
        pytest.param(lambda t: {"t": "\u00e9" * 45}, id="non-ascii"),
        pytest.param(lambda t: {"record": "1", "mailid": "1", "app_key": "x"}, id="reference-style"),
    ],
)
def test_bad_tokens_get_the_same_gif_and_count_nothing(anon, db, recipient, make_query):
    response = anon.get(PATH, make_query(recipient.token))
    assert_is_the_gif(response)
    assert counts(db, recipient) == (0, 0)
    assert db.scalar(select(func.sum(Recipient.access_count))) == 0


def test_head_returns_the_headers_and_counts_nothing(anon, db, recipient):
    response = anon.head(PATH, {"t": recipient.token})
    assert response.status_int == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert counts(db, recipient) == (0, 0)


def test_with_tracking_disabled_old_images_still_load_but_count_nothing(app, anon, db, recipient):
    db.add(Setting(key="tracking_disabled", value="true"))
    db.commit()
    written = commits(app.tracker.engine)
    assert_is_the_gif(anon.get(PATH, {"t": recipient.token}))
    wait_until(lambda: written, "the hit's batch to be written", seconds=10)
    assert counts(db, recipient) == (0, 0)


def test_the_token_is_the_first_t_argument_wherever_it_stands_in_the_query(anon, db, recipient):
    assert_is_the_gif(anon.get(f"{PATH}?utm_source=mail&t={recipient.token}&t=ignored"))
    assert_is_the_gif(anon.get(f"{PATH}?t=&t={recipient.token}"))  # the first one, empty, counts nothing
    wait_until(lambda: counts(db, recipient) == (1, 1), "the first hit to be counted", seconds=10)


def test_under_a_prefix_and_in_standalone_mode_the_image_counts_without_identity(app, standalone, db, recipient):
    import webtest

    assert_is_the_gif(webtest.TestApp(app).get(PATH, {"t": recipient.token}, extra_environ={"SCRIPT_NAME": "/crm"}))
    assert_is_the_gif(standalone.get(PATH, {"t": recipient.token}))
    wait_until(lambda: counts(db, recipient) == (2, 2), "both hits to be counted", seconds=10)


def test_other_methods_on_the_image_path_are_refused_as_before(anon, db, recipient):
    response = anon.post(PATH, {"t": recipient.token}, status=401)
    assert "WWW-Authenticate" in response.headers
    assert counts(db, recipient) == (0, 0)


def test_the_endpoint_needs_no_identity_and_sets_no_cookie(anon, recipient):
    response = anon.get(PATH, {"t": recipient.token})
    assert "Set-Cookie" not in response.headers
    assert "WWW-Authenticate" not in response.headers


def test_a_path_below_the_endpoint_is_not_the_endpoint(anon, recipient):
    anon.get(PATH + "/extra", {"t": recipient.token}, status=401)


def test_two_hundred_concurrent_hits_count_exactly_two_hundred(app, db, recipient):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}{PATH}?t={recipient.token}"

    def fetch(_):
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()

    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(fetch, range(200)))
    finally:
        server.shutdown()
    assert results == [(200, GIF)] * 200
    wait_until(lambda: counts(db, recipient) == (200, 200), "the hits to be counted", seconds=10)


def test_with_the_database_down_the_gif_is_served_and_the_hit_spooled_then_counted_once_it_is_back(
    app, anon, db, recipient
):
    working_engine = app.tracker.engine
    app.tracker.engine = make_engine("sqlite:////nonexistent-directory/coretrack.db")
    try:
        for _ in range(3):
            assert_is_the_gif(anon.get(PATH, {"t": recipient.token}))
        wait_until(lambda: app.tracker.spool.state().hits == 3, "the hits to be spooled", seconds=10)
    finally:
        app.tracker.engine.dispose()
        app.tracker.engine = working_engine
    # No further hit: the process's replay thread counts the spool once the database is back.
    wait_until(lambda: counts(db, recipient) == (3, 3), "the spooled hits to be counted", seconds=30)
    wait_until(lambda: not app.tracker.spool.pending(), "the spool to be emptied", seconds=30)
    assert app.tracker.replay_spool() == 0
    assert counts(db, recipient) == (3, 3)


def test_a_spool_file_replayed_before_a_crash_is_not_counted_again(app, db, recipient, tmp_path):
    app.tracker.spool.append([Hit.now(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox")])
    (path,) = list(app.tracker.spool.claim())
    kept = tmp_path / path.name
    shutil.copy(path, kept)
    for hits in app.tracker.spool.read(path, REPLAY_BATCH):
        app.tracker.record(hits)
    app.tracker.spool.done(path)
    # The crash: the file was replayed and committed but is still on disk.
    shutil.copy(kept, path)
    assert counts(db, recipient) == (1, 1)
    app.tracker.replay_spool()
    assert counts(db, recipient) == (1, 1)
    assert not app.tracker.spool.pending()


def test_hits_another_process_spooled_are_counted_once_a_hit_shows_this_process_the_spool(app, anon, db, recipient):
    app.tracker.spool.append([Hit.now(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox")])
    anon.get(PATH, {"t": recipient.token})
    wait_until(lambda: counts(db, recipient) == (2, 2), "the spooled hit to be counted", seconds=30)


def test_the_worker_counts_a_spool_left_by_processes_that_have_ended(app, db, recipient):
    from click.testing import CliRunner

    from coretrack.cli import main

    app.tracker.spool.append([Hit.now(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox") for _ in range(4)])
    environ = {"CORETRACK_HOME": str(app.config.home), "CORETRACK_DATABASE_URL": app.config.database_url,
               "CORETRACK_CONFIG": ""}
    result = CliRunner().invoke(main, ["worker", "--once"], env=environ)
    assert result.exit_code == 0, result.output
    assert counts(db, recipient) == (4, 4)
    assert not app.tracker.spool.pending()


def test_a_burst_of_concurrent_hits_counts_exactly_in_far_fewer_transactions_than_requests(app, db, recipient):
    # A request does not wait for its hit's transaction: one transaction takes every hit queued
    # meanwhile, however many request threads there are.
    written = commits(app.tracker.engine)
    threads, each = 8, 100
    start = threading.Barrier(threads)

    def load_many(_):
        start.wait()
        for _ in range(each):
            app.tracker.hit(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(load_many, range(threads)))
    wait_until(lambda: counts(db, recipient) == (threads * each, threads * each), "the hits to be counted", seconds=30)
    # Were each request to wait for its own batch, a batch could hold no more hits than threads.
    assert len(written) < each, len(written)


# A process made of mod_wsgi's entry point, making hits and exiting normally, as a daemon process
# does on Apache's graceful restart.
HITS_THEN_EXIT = """
import sys
from werkzeug.test import Client
from coretrack.wsgi import application
client = Client(application)
for _ in range(int(sys.argv[2])):
    assert client.get("/modules/Emails/TrackAccess.php", query_string={"t": sys.argv[1]}).status_code == 200
"""


def test_a_process_exiting_normally_first_counts_every_hit_it_answered(config, db, recipient):
    environ = {"CORETRACK_HOME": str(config.home), "CORETRACK_DATABASE_URL": config.database_url,
               "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", HITS_THEN_EXIT, recipient.token, "300"], env=environ, check=True,
                   timeout=60)
    # No waiting: the process counted its queue on its way out.
    assert counts(db, recipient) == (300, 300)
    assert not Spool(config.spool_dir, config.spool_max_bytes).pending()


def test_a_forked_child_counts_its_hits_with_a_writer_of_its_own(app, db, recipient):
    app.tracker.hit(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox")  # the parent's writer runs
    wait_until(lambda: counts(db, recipient) == (1, 1), "the parent's hit to be counted", seconds=10)
    child = os.fork()
    if child == 0:  # the child answers hits, sees them counted through an engine of its own, and stops
        status = 1
        try:
            for _ in range(5):
                app.tracker.hit(recipient.token, "192.0.2.2", "Mozilla/5.0 Firefox")
            with make_engine(app.config.database_url).connect() as connection:
                wait_until(lambda: connection.scalar(select(Recipient.access_count).where(
                    Recipient.id == recipient.id)) == 6, "the child's hits to be counted", seconds=10)
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counts(db, recipient) == (6, 6)


def test_one_recipient_adds_a_bounded_number_of_events_per_minute_and_the_count_stays_exact(app, db, recipient):
    minute = datetime(2026, 11, 2, 9, 30)
    flood = [Hit(recipient.token, minute + timedelta(seconds=second / 10), "192.0.2.1", "Mozilla/5.0 Firefox")
             for second in range(300)]
    app.tracker.record(flood[:150])
    app.tracker.record(flood[150:])
    app.tracker.record([Hit(recipient.token, minute + timedelta(minutes=1, seconds=second), "192.0.2.1", "Mail")
                        for second in range(3)])

    assert counts(db, recipient) == (303, 303)
    rows = db.scalars(select(AccessEvent.hits).where(AccessEvent.recipient_id == recipient.id)
                      .order_by(AccessEvent.at, AccessEvent.id)).all()
    # The minute's last event stands for the loads past the bound; the next minute starts afresh.
    assert rows == [1] * (EVENTS_PER_RECIPIENT_PER_MINUTE - 1) + [300 - EVENTS_PER_RECIPIENT_PER_MINUTE + 1] + [1] * 3
    other = db.scalars(select(Recipient).where(Recipient.id != recipient.id)).one()
    app.tracker.record([Hit(other.token, minute, "192.0.2.1", "Mozilla/5.0 Firefox")])
    assert counts(db, other) == (1, 1)


def test_the_spool_is_bounded_and_says_so_in_the_log_when_full(app, anon, db, recipient, caplog):
    one_line = len(Hit.now(recipient.token, "192.0.2.1", "").as_line().encode())
    app.tracker.spool = Spool(app.tracker.spool.directory, max_bytes=5 * one_line + one_line // 2)
    working_engine = app.tracker.engine
    app.tracker.engine = make_engine("sqlite:////nonexistent-directory/coretrack.db")
    try:
        for _ in range(8):
            assert_is_the_gif(anon.get(PATH, {"t": recipient.token}, headers={"User-Agent": ""},
                                       extra_environ={"REMOTE_ADDR": "192.0.2.1"}))
        wait_until(lambda: lost(caplog) == 3, "the hits past the bound to be reported lost", seconds=10)
        assert app.tracker.spool.state().hits == 5
    finally:
        app.tracker.engine.dispose()
        app.tracker.engine = working_engine
    wait_until(lambda: counts(db, recipient) == (5, 5), "the kept hits to be counted", seconds=30)


def lost(caplog) -> int:
    """The hits the log reports lost because the spool was full."""
    return sum(int(record.getMessage().split()[0]) for record in caplog.records
               if "the spool is full" in record.getMessage())


def test_a_large_spool_is_replayed_in_several_short_transactions(app, db, recipient):
    start = datetime(2026, 11, 2, 9, 0)
    app.tracker.spool.append([Hit(recipient.token, start + timedelta(seconds=second), "192.0.2.1", "Mail")
                              for second in range(1200)])
    written = commits(app.tracker.engine)
    assert app.tracker.replay_spool() == 1200
    assert len(written) == 3  # 500 + 500 + 200
    assert counts(db, recipient)[0] == 1200


def test_tokens_are_random_signed_and_fixed_length():
    secret = b"k" * 32
    made = {tokens.new_token(secret) for _ in range(1000)}
    assert len(made) == 1000
    assert {len(token) for token in made} == {tokens.TOKEN_LENGTH}
    assert all(tokens.verify(secret, token) for token in made)
    assert not any(tokens.verify(b"other" * 8, token) for token in made)


@pytest.mark.parametrize(
    "agent, verdict",
    [
        # Google's proxy fetches as the person opens (its delivery fetch has the prefetch agent below)
        ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "human"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/42.0.2311.135 "
         "Safari/537.36 Edge/12.246 Mozilla/5.0", "mail_proxy"),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "mail_proxy"),
        ("Mozilla/5.0", "privacy_prefetch"),
        ("", "privacy_prefetch"),
        ("python-requests/2.31", "scanner"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "scanner"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", "human"),
    ],
)
def test_hits_are_classified_by_user_agent(agent, verdict):
    assert classify(Hit("t", datetime(2026, 11, 2, 9, 30), "192.0.2.1", agent))[0] == verdict


@pytest.mark.parametrize(
    "policy, ip, stored",
    [
        ("truncated", "198.51.100.23", "198.51.100.0"),
        ("truncated", "2001:db8:abcd:12::1", "2001:db8:abcd::"),
        ("full", "198.51.100.23", "198.51.100.23"),
        ("none", "198.51.100.23", ""),
        ("full", "not an ip", ""),
    ],
)
def test_ip_addresses_are_kept_as_the_privacy_option_says(policy, ip, stored):
    assert store_ip(ip, policy) == stored


def test_a_hit_that_committed_before_it_was_also_spooled_is_counted_once(app, db, recipient):
    # The database took the hit, but its answer was lost on the way back: the hit went to the spool too.
    hit = Hit.now(recipient.token, "192.0.2.1", "Mozilla/5.0 Firefox")
    assert app.tracker.record([hit]) == 1
    app.tracker.spool.append([hit])
    app.tracker.replay_spool()
    assert counts(db, recipient) == (1, 1)
    assert not app.tracker.spool.pending()


def test_a_replayed_older_hit_never_moves_first_and_last_access_inwards(app, anon, db, recipient):
    earlier = utcnow() - timedelta(hours=3)
    anon.get(PATH, {"t": recipient.token})
    wait_until(lambda: counts(db, recipient) == (1, 1), "the hit to be counted", seconds=10)
    latest = db.get(Recipient, recipient.id).last_access
    app.tracker.spool.append([Hit(recipient.token, earlier, "192.0.2.1", "Mozilla/5.0 Firefox")])
    app.tracker.replay_spool()
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.first_access, row.last_access) == (2, earlier, latest)


# -- the counting rules, over batches ----------------------------------------------------------


def event_rows(db, recipient):
    return db.execute(select(AccessEvent.at, AccessEvent.hits).where(AccessEvent.recipient_id == recipient.id)
                      .order_by(AccessEvent.at, AccessEvent.id)).all()


def test_in_one_batch_unknown_tokens_and_hits_already_recorded_count_nothing_and_a_repeated_hit_counts_once(
    app, db, recipient
):
    other = db.scalars(select(Recipient).where(Recipient.id != recipient.id)).one()
    at = datetime(2026, 11, 2, 9, 30)
    recorded = Hit(recipient.token, at, "192.0.2.1", "Mail")
    assert app.tracker.record([recorded]) == 1
    repeated = Hit(other.token, at + timedelta(seconds=1), "192.0.2.2", "Mail")
    batch = [
        Hit(tokens.new_token(app.secret), at, "192.0.2.3", "Mail"),  # signed by this install, no recipient
        recorded,
        repeated,
        Hit(recipient.token, at + timedelta(seconds=2), "192.0.2.1", "Mail"),
        repeated,
        Hit(other.token, at + timedelta(seconds=3), "192.0.2.2", "Mail"),
    ]
    assert app.tracker.record(batch) == 3
    assert counts(db, recipient) == (2, 2)
    assert counts(db, other) == (2, 2)
    assert db.scalar(select(func.count()).select_from(AccessEvent)) == 4


def test_loads_past_the_bound_fold_into_the_minutes_last_event_within_a_batch_and_across_batches(app, db, recipient):
    minute = datetime(2026, 11, 2, 9, 30)

    def loads(*seconds):
        return [Hit(recipient.token, minute + timedelta(seconds=second), "192.0.2.1", "Mail") for second in seconds]

    bound = EVENTS_PER_RECIPIENT_PER_MINUTE
    app.tracker.record(loads(*range(bound - 2)))
    # Two more events, then three loads folded into the second of them, made in this same batch.
    app.tracker.record(loads(*range(bound - 2, bound + 3)))
    assert [hits for _, hits in event_rows(db, recipient)] == [1] * (bound - 1) + [4]
    # A later batch folds into the minute's last event, wherever in the minute the load is.
    app.tracker.record(loads(59, 1))
    rows = event_rows(db, recipient)
    assert [hits for _, hits in rows] == [1] * (bound - 1) + [6]
    assert rows[-1].at == minute + timedelta(seconds=bound - 1)
    # A batch spanning the minute's end: the next minute starts afresh.
    app.tracker.record(loads(58, 60, 61))
    assert [hits for _, hits in event_rows(db, recipient)] == [1] * (bound - 1) + [7, 1, 1]
    assert counts(db, recipient) == (bound + 3 + 2 + 3, bound + 3 + 2 + 3)


def test_first_and_last_access_only_move_outwards_whatever_the_order_of_a_batch(app, db, recipient):
    noon = datetime(2026, 11, 2, 12, 0)
    app.tracker.record([Hit(recipient.token, noon, "192.0.2.1", "Mail")])
    app.tracker.record([Hit(recipient.token, noon + timedelta(hours=hours), "192.0.2.1", "Mail")
                        for hours in (1, -2, 3, -1, 2)])
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.first_access, row.last_access) == (
        6, noon - timedelta(hours=2), noon + timedelta(hours=3))
    app.tracker.record([Hit(recipient.token, noon, "192.0.2.1", "Mail")])
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.first_access, row.last_access) == (noon - timedelta(hours=2), noon + timedelta(hours=3))


def test_a_batch_keeps_the_ip_storage_setting_and_the_verdict_of_each_hit(app, db, recipient):
    app.settings(db).update({"ip_storage": "full"}, "admin")
    at = datetime(2026, 11, 2, 9, 30)
    app.tracker.record([Hit(recipient.token, at, "198.51.100.23", "Mozilla/5.0"),
                        Hit(recipient.token, at + timedelta(seconds=1), "2001:db8::1", "python-requests/2.31")])
    rows = db.execute(select(AccessEvent.ip, AccessEvent.verdict).where(AccessEvent.recipient_id == recipient.id)
                      .order_by(AccessEvent.at)).all()
    assert rows == [("198.51.100.23", "privacy_prefetch"), ("2001:db8::1", "scanner")]


def test_a_batch_takes_the_same_number_of_statements_whatever_its_size(app, db, recipient):
    others = [Recipient(email_id=recipient.email_id, address=f"r{number}@example.test",
                        token=tokens.new_token(app.secret), status="sent") for number in range(20)]
    db.add_all(others)
    db.commit()
    statements = []
    event.listen(app.tracker.engine, "before_cursor_execute", lambda *args: statements.append(1))
    start = datetime(2026, 11, 2, 9, 30)
    app.tracker.record([Hit(recipient.token, start, "192.0.2.1", "Mail")])
    for_one = len(statements)
    statements.clear()
    app.tracker.record([Hit(others[number % 20].token, start + timedelta(seconds=number / 4), "192.0.2.1", "Mail")
                        for number in range(200)])
    assert len(statements) == for_one
    assert db.scalar(select(func.sum(Recipient.access_count))) == 201


def test_the_tracking_switch_counts_a_hit_by_its_own_time_even_when_it_is_counted_later(app, db, recipient):
    # The spool and the hit log are counted minutes or hours late: what matters is whether tracking
    # was on when the image was loaded, not when the hit reaches the database.
    service = app.settings(db)

    def load():
        hit = Hit.now(recipient.token, "192.0.2.1", "Mail")
        time.sleep(0.01)
        return hit

    before = load()
    (switched_off,) = service.update({"tracking_disabled": "on"}, "admin")
    after_off = utcnow()
    assert before.at < switched_off.at <= after_off  # the audit row, on the hits' clock
    while_off = load()
    assert app.tracker.record([before, while_off]) == 1
    assert counts(db, recipient) == (1, 1)

    (switched_on,) = service.update({"tracking_disabled": "false"}, "admin")
    assert switched_on.at > while_off.at
    after_on = load()
    later_while_off = Hit(recipient.token, while_off.at + (switched_on.at - while_off.at) / 2, "192.0.2.1", "Mail")
    assert app.tracker.record([after_on, later_while_off]) == 1
    assert counts(db, recipient) == (2, 2)
    db.expire_all()
    assert db.get(Recipient, recipient.id).last_access == after_on.at


def test_with_no_switch_ever_recorded_the_current_setting_decides(app, db, recipient):
    db.add(Setting(key="tracking_disabled", value="true"))
    db.commit()
    assert app.tracker.record([Hit(recipient.token, datetime(2020, 1, 1), "192.0.2.1", "Mail")]) == 0
    assert counts(db, recipient) == (0, 0)


def test_the_same_hit_counted_by_two_transactions_at_once_counts_once(app, db, recipient):
    # Two processes holding the same hit (a spool replayed while the first attempt still commits):
    # the second waits for the first, then finds the hit recorded.
    hit = Hit.now(recipient.token, "192.0.2.1", "Mail")
    second: list[int] = []
    with write_transaction(app.tracker.engine) as first:
        assert count_hits(first, [hit]) == 1
        other = threading.Thread(target=lambda: second.append(app.tracker.record([hit])))
        other.start()
        time.sleep(0.2)  # the other transaction is now waiting for this one
    other.join(timeout=30)
    assert second == [0]
    assert counts(db, recipient) == (1, 1)
