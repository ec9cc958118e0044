"""'coretrack ingest': Apache's hit log counted line by line, each hit exactly once, on both databases."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from support.hit_load import counted, make_recipients, wait_until
from support.hit_log import T0, ingest, line, write_log

from coretrack.cli.common import set_up
from coretrack.config import Config
from coretrack.db import make_engine, make_session_factory
from coretrack.doctor import check_hit_log
from coretrack.models import AccessEvent, HitLogPosition
from coretrack.tracking import tokens
from coretrack.tracking.hitlog import IngestError, parse_line
from coretrack.tracking.ingester import Ingester


@pytest.fixture
def recipients(app, db, users):
    return make_recipients(db, app.config.secret_key(), 5)


def counts(db) -> dict[int, int]:
    return dict(counted(db)[0])


def test_a_logged_get_of_a_signed_token_counts_once_and_nothing_else_counts(config, db, recipients):
    one, two = recipients[0], recipients[1]
    forged = tokens.new_token(b"another install's key")
    write_log(config, "20261129100000", [
        line(one.token, agent='Thunderbird \\"128\\" \\xc3\\xa9', ip="203.0.113.77"),
        line(one.token, at=T0 + timedelta(seconds=5)),
        line(two.token),
        line(two.token, method="HEAD"),      # a HEAD loads no image
        line(two.token, status=404),         # not answered with the image
        line(two.token, status=304),
        line(two.token, method="POST"),
        line(forged),                        # not signed by this install
        line(one.token[:-1] + ("B" if one.token.endswith("A") else "A")),  # tampered
        line(None),                          # no token
        line(two.token, hit_id="-"),         # no unique id: not a line of the shipped config
        "garbage without tabs\n",
        "\t".join(["x"] * 9) + "\n",
        "\n",
    ])
    ingest(config)
    assert counts(db) == {one.id: 2, two.id: 1}
    event = db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == one.id).order_by(AccessEvent.at)).first()
    assert (event.at, event.ip, event.user_agent) == (T0, "203.0.113.0", 'Thunderbird "128" é')
    assert event.hit_id.startswith("Aw")
    # Read again: the position says it was all counted.
    ingest(config)
    assert counts(db) == {one.id: 2, two.id: 1}


def test_a_last_line_without_its_line_break_waits_for_the_rest(config, db, recipients):
    whole = line(recipients[0].token)
    path = write_log(config, "20261129100000", [line(recipients[1].token), whole[:30]])
    ingest(config)
    assert counts(db) == {recipients[1].id: 1}
    with open(path, "a") as handle:
        handle.write(whole[30:])
    ingest(config)
    assert counts(db) == {recipients[0].id: 1, recipients[1].id: 1}


def test_a_restart_at_any_point_counts_every_line_once(config, db, recipients):
    """Each batch commits its hits and the position together: a new process resumes exactly there."""
    lines = [line(recipients[n % 5].token, at=T0 + timedelta(seconds=n)) for n in range(103)]
    write_log(config, "20261129100000", lines)
    engine = make_engine(config.database_url)
    try:
        for steps in (1, 3, 2):  # three processes in turn, each stopped after a few batches
            ingester = Ingester.for_install(config, engine)
            ingester.batch = 7
            for _ in range(steps):
                ingester.step()
        db.expire_all()
        assert sum(counts(db).values()) == 6 * 7
    finally:
        engine.dispose()
    ingest(config)
    assert counts(db) == {recipient.id: 21 - (n >= 3) for n, recipient in enumerate(recipients)}
    assert counted(db)[1] == 103


def test_ingest_once_says_so_when_the_database_is_unavailable_and_moves_nothing(tmp_path):
    home = tmp_path / "home"
    Config.from_env({"CORETRACK_HOME": str(home)}).prepare_home()
    (home / "hitlog" / "hits.20261129100000").write_text(line(None))
    result = subprocess.run([str(Path(sys.prefix) / "bin" / "coretrack"), "ingest", "--once"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "CORETRACK_HOME": str(home),
                                            "CORETRACK_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert result.returncode != 0 and "database unavailable" in result.stderr
    assert (home / "hitlog" / "hits.20261129100000").exists()


def test_the_hits_wait_in_the_log_while_the_database_is_locked_and_count_once_it_is_free(config, db, recipients):
    write_log(config, "20261129100000", [line(recipient.token) for recipient in recipients])
    stop = threading.Event()
    engine = make_engine(config.database_url)
    ingester = Ingester.for_install(config, engine)
    blocker = make_engine(config.database_url)
    connection = blocker.connect()
    if config.sqlite_path:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.execute(text("LOCK TABLE recipients IN EXCLUSIVE MODE"))
    thread = threading.Thread(target=ingester.run, args=(stop,))
    thread.start()
    try:
        threading.Event().wait(1.5)
        assert sum(counts(db).values()) == 0
        connection.rollback()
        connection.close()
        wait_until(lambda: counts(db) == {recipient.id: 1 for recipient in recipients}, "the hits counted", 30)
    finally:
        stop.set()
        thread.join()
        engine.dispose()
        blocker.dispose()


def test_rotated_files_are_read_in_order_and_removed_once_counted(config, db, recipients):
    token = recipients[0].token
    for second in range(4):
        write_log(config, f"2026112910000{second}", [line(token, at=T0 + timedelta(seconds=second))])
    write_log(config, "20261129100002", [line(token)[:20]])  # a torn last line in a finished file
    ingest(config)
    assert counts(db) == {recipients[0].id: 4}
    # The newest file stays: rotatelogs may still write to it.
    assert sorted(path.name for path in config.hit_log_dir.glob("hits.*")) == ["hits.20261129100003"]
    write_log(config, "20261129100003", [line(token)])
    write_log(config, "20261129100004", [line(token)])
    ingest(config)
    assert counts(db) == {recipients[0].id: 6}
    assert sorted(path.name for path in config.hit_log_dir.glob("hits.*")) == ["hits.20261129100004"]


def test_each_front_end_keeps_its_own_place_in_its_own_log(config, db, recipients, tmp_path):
    other_home = tmp_path / "other"
    other = dataclasses.replace(Config.from_env({"CORETRACK_HOME": str(other_home),
                                                 "CORETRACK_DATABASE_URL": config.database_url}), node="front-2")
    other.prepare_home()
    (other_home / "secret.key").write_bytes(config.secret_key_path.read_bytes())
    mine = dataclasses.replace(config, node="front-1")
    write_log(mine, "20261129100000", [line(recipients[0].token) for _ in range(3)])
    write_log(other, "20261129100000", [line(recipients[0].token) for _ in range(2)])
    for _ in range(2):
        ingest(mine)
        ingest(other)
    assert counts(db) == {recipients[0].id: 5}
    assert {row.node: row.byte_offset > 0 for row in db.scalars(select(HitLogPosition))} == {
        "front-1": True, "front-2": True}


def front_end(config: Config, home: Path, node: str | None) -> Config:
    """Another front-end of the same install: its own data directory, the same database and secret.key."""
    other = dataclasses.replace(Config.from_env({"CORETRACK_HOME": str(home),
                                                 "CORETRACK_DATABASE_URL": config.database_url}), node=node)
    other.prepare_home()
    (home / "secret.key").write_bytes(config.secret_key_path.read_bytes())
    return other


def test_a_second_front_end_given_a_name_already_counted_under_is_refused_and_its_log_waits(
        config, db, recipients, tmp_path):
    first = dataclasses.replace(config, node="front-1")
    second = front_end(config, tmp_path / "second", "front-1")  # the same name, by mistake
    write_log(first, "20261129100000", [line(recipients[0].token) for _ in range(3)])
    # The second's file sorts after the first's position: before, it removed the first's files.
    write_log(second, "20261129100005", [line(recipients[1].token) for _ in range(2)])
    ingest(first)
    with pytest.raises(IngestError, match="'front-1' is another front-end's on this database.*CORETRACK_NODE"):
        ingest(second)
    write_log(first, "20261129100010", [line(recipients[0].token)])
    ingest(first)
    assert counts(db) == {recipients[0].id: 4}
    assert [path.name for path in second.hit_log_dir.glob("hits.*")] == ["hits.20261129100005"]
    # Given its own name, it counts its log from the start.
    ingest(dataclasses.replace(second, node="front-2"))
    assert counts(db) == {recipients[0].id: 4, recipients[1].id: 2}


def test_a_front_end_keeps_its_name_when_a_later_start_does_not_give_it_and_refuses_another(
        config, db, recipients):
    named = dataclasses.replace(config, node="front-1")
    write_log(named, "20261129100000", [line(recipients[0].token) for _ in range(3)])
    ingest(named)
    write_log(named, "20261129100000", [line(recipients[0].token)])
    ingest(dataclasses.replace(config, node=None))  # CORETRACK_NODE forgotten: its place is found by its id
    assert counts(db) == {recipients[0].id: 4}
    with pytest.raises(IngestError, match="counts its hit log under the name 'front-1', but CORETRACK_NODE says"):
        ingest(dataclasses.replace(config, node="front-9"))  # a new name would count the log again
    assert db.scalars(select(HitLogPosition.node)).all() == ["front-1"]


def test_a_place_kept_before_front_ends_had_ids_is_taken_by_the_first_to_start(config, db, recipients):
    lines = [line(recipients[0].token) for _ in range(4)]
    write_log(config, "20261129100000", lines)
    db.add(HitLogPosition(node=socket.gethostname(), file="hits.20261129100000",
                          byte_offset=len("".join(lines[:3])), updated_at=T0))
    db.commit()
    ingest(config)
    assert counts(db) == {recipients[0].id: 1}  # only the line after the kept place
    db.expire_all()
    assert db.scalars(select(HitLogPosition.owner)).one() == config.front_end_id()


def test_stopping_counts_what_the_log_holds_before_the_ingester_ends(config, db, recipients):
    """Stopped after Apache and its logger (scripts/run, the units' order), it counts every line
    they wrote, rather than leaving the last ones for a next start."""
    write_log(config, "20261129100000", [line(recipient.token) for recipient in recipients])
    write_log(config, "20261129100001", [line(recipients[0].token)])
    stop = threading.Event()
    stop.set()  # told to stop before its first look
    engine = make_engine(config.database_url)
    try:
        assert Ingester.for_install(config, engine).run(stop) == 6
    finally:
        engine.dispose()
    assert counts(db) == {recipient.id: 1 + (recipient is recipients[0]) for recipient in recipients}


def test_doctor_reports_the_hit_log_backlog_and_fails_past_its_bound(config, db, recipients):
    bounded = dataclasses.replace(config, hit_log_max_bytes=4096)
    check = list(check_hit_log(bounded))[-1]
    assert check.ok and "0 file(s)" in check.what
    write_log(config, "20261129100000", [line(recipients[0].token) for _ in range(20)])
    write_log(config, "20261129100001", [line(recipients[1].token) for _ in range(20)])
    check = list(check_hit_log(bounded))[-1]
    assert not check.ok and "2 file(s)" in check.what and "coretrack ingest" in check.fix
    ingest(config)
    check = list(check_hit_log(bounded))[-1]
    assert check.ok and "0 file(s), 0 kB" in check.what


def test_apache_escapes_are_undone_and_a_missing_user_agent_is_empty():
    secret = b"k" * 32
    token = tokens.new_token(secret)
    hit = parse_line(line(token, agent="-").encode(), secret)
    assert hit is not None and hit.user_agent == "" and hit.token == token
    # The first t counts, as in the application; an escaped query is still read.
    hit = parse_line(line(None).replace("\t\t", f"\t?x=1&t={token}&t=other\t").encode(), secret)
    assert hit is not None and hit.token == token
    assert parse_line(line(token).replace("\t200\t", "\t200 \t").encode(), secret) is None


@pytest.mark.slow
def test_a_million_hits_are_counted_in_bounded_memory(tmp_path):
    """The ingester's peak memory does not grow with the log: a million counted hits take what
    20,000 do, well under 200 MB."""
    def peak_kb(lines: int) -> int:
        home = tmp_path / f"home-{lines}"
        config = Config.from_env({"CORETRACK_HOME": str(home)})
        set_up(config)
        engine = make_engine(config.database_url)
        with make_session_factory(engine)() as session:
            hit_tokens = [recipient.token for recipient in make_recipients(session, config.secret_key(), 1000)]
        # Each recipient loads the image again and again within a minute or two: past the
        # per-minute bound, most of its loads are folded into that minute's last event.
        written = 0
        with open(config.hit_log_dir / "hits.20261129100000", "wb") as handle:
            for _ in range(lines // 1000):
                written += handle.write("".join(line(token, at=T0 + timedelta(seconds=number // 10))
                                                for number, token in enumerate(hit_tokens)).encode())
        process = subprocess.Popen([str(Path(sys.prefix) / "bin" / "coretrack"), "ingest", "--once"],
                                   env={"PATH": "/usr/bin:/bin", "CORETRACK_HOME": str(home)},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # VmHWM, not wait4's ru_maxrss: that one also counts this process's memory, which the
        # child had before it exec'd coretrack.
        peak = 0
        while process.poll() is None:
            with contextlib.suppress(OSError):
                status_lines = Path(f"/proc/{process.pid}/status").read_text().splitlines()
                peak = max([peak] + [int(entry.split()[1]) for entry in status_lines if entry.startswith("VmHWM:")])
            time.sleep(0.05)
        output = process.stdout.read().decode()
        assert process.returncode == 0 and f"read {lines} lines" in output, output
        with make_session_factory(engine)() as session:
            position = session.scalars(select(HitLogPosition)).one()
            assert position.byte_offset == written
            counts, events = counted(session)
            assert sum(counts.values()) == events == lines
        engine.dispose()
        return peak

    small, large = peak_kb(20_000), peak_kb(1_000_000)
    assert large < small + 10_000, (small, large)
    assert large < 200 * 1024, large
