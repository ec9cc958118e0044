"""The image endpoint: always the same GIF, counts only good tokens, exactly, and loses nothing."""

from __future__ import annotations

import io
import shutil
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from hit_load import wait_until
from PIL import Image
from sqlalchemy import func, select
from werkzeug.serving import make_server

from coretrack import tokens
from coretrack.db import make_engine
from coretrack.models import AccessEvent, Email, Recipient, Setting, utcnow
from coretrack.tracking import EVENTS_PER_RECIPIENT_PER_MINUTE, GIF, REPLAY_BATCH, Hit, Spool, classify, store_ip

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
    assert counts(db, recipient) == (1, 1)
    row = db.get(Recipient, recipient.id)
    assert row.first_access is not None and row.first_access == row.last_access
    event = db.scalar(select(AccessEvent).where(AccessEvent.recipient_id == recipient.id))
    assert event.ip == "203.0.113.0"  # truncated by default
    assert event.verdict == "human"
    assert "Thunderbird" in event.user_agent


def test_each_hit_counts_and_only_for_its_own_recipient(anon, db, recipient):
    other = db.scalars(select(Recipient).where(Recipient.id != recipient.id)).one()
    for _ in range(3):
        anon.get(PATH, {"t": recipient.token})
    assert counts(db, recipient) == (3, 3)
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


def test_with_tracking_disabled_old_images_still_load_but_count_nothing(anon, db, recipient):
    db.add(Setting(key="tracking_disabled", value="true"))
    db.commit()
    assert_is_the_gif(anon.get(PATH, {"t": recipient.token}))
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
    assert counts(db, recipient) == (200, 200)


def test_with_the_database_down_the_gif_is_served_and_the_hit_spooled_then_counted_once_it_is_back(
    app, anon, db, recipient
):
    working_engine = app.tracker.engine
    app.tracker.engine = make_engine("sqlite:////nonexistent-directory/coretrack.db")
    try:
        for _ in range(3):
            assert_is_the_gif(anon.get(PATH, {"t": recipient.token}))
        assert app.tracker.spool.pending()
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


def test_concurrent_hits_share_transactions_and_each_is_written_once():
    from coretrack.tracking import GroupCommit

    writes: list[list[Hit]] = []

    def slow_write(hits):
        writes.append(list(hits))
        time.sleep(0.05)  # a commit: the hits arriving meanwhile gather in the next batch

    group = GroupCommit(slow_write)
    hits = [Hit.now(f"token-{number}", "192.0.2.1", "agent") for number in range(32)]
    start = threading.Barrier(32)

    def submit(hit):
        start.wait()
        group.submit(hit)

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(submit, hits))
    written = [hit.hit_id for batch in writes for hit in batch]
    assert sorted(written) == sorted(hit.hit_id for hit in hits)
    assert len(writes) <= 4, [len(batch) for batch in writes]


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
        assert app.tracker.spool.state().hits == 5
    finally:
        app.tracker.engine.dispose()
        app.tracker.engine = working_engine
    assert caplog.text.count("the spool is full") == 3
    wait_until(lambda: counts(db, recipient) == (5, 5), "the kept hits to be counted", seconds=30)


def test_a_large_spool_is_replayed_in_several_short_transactions(app, db, recipient):
    from sqlalchemy import event

    start = datetime(2026, 11, 2, 9, 0)
    app.tracker.spool.append([Hit(recipient.token, start + timedelta(seconds=second), "192.0.2.1", "Mail")
                              for second in range(1200)])
    commits = []
    event.listen(app.tracker.engine, "commit", lambda connection: commits.append(1))
    assert app.tracker.replay_spool() == 1200
    assert len(commits) == 3  # 500 + 500 + 200
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
        ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "mail_proxy"),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "mail_proxy"),
        ("Mozilla/5.0", "privacy_prefetch"),
        ("", "privacy_prefetch"),
        ("python-requests/2.31", "scanner"),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "scanner"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", "human"),
    ],
)
def test_hits_are_classified_by_user_agent(agent, verdict):
    assert classify(agent) == verdict


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
    db.expire_all()
    latest = db.get(Recipient, recipient.id).last_access
    app.tracker.spool.append([Hit(recipient.token, earlier, "192.0.2.1", "Mozilla/5.0 Firefox")])
    app.tracker.replay_spool()
    db.expire_all()
    row = db.get(Recipient, recipient.id)
    assert (row.access_count, row.first_access, row.last_access) == (2, earlier, latest)
