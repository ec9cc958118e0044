"""Sending in batches: a batch of recipients is claimed in one transaction and its outcomes are
recorded in one, over SMTP connections kept open from batch to batch.  Workers in several
processes never send a recipient twice, a worker killed mid-batch leaves at most that batch
"delivery unknown", and the number of connections is a setting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from support.smtp_sink import SmtpSink

from coretrack.models import Email, Recipient, User, utcnow
from coretrack.sending import delivery
from coretrack.sending.claims import INTERRUPTED, STALE_AFTER, claim_batch
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import BATCH_SIZE, deliver
from coretrack.sending.measuring import Measuring
from coretrack.sending.status import cancel_unsent
from coretrack.sending.worker import run_worker
from coretrack.settings import SettingsService
from coretrack.tracking import tokens

EVERYONE_MEASURED = Measuring(tracking=True, policy="everyone")

CORETRACK = str(Path(sys.prefix) / "bin" / "coretrack")


@dataclass
class PeerSink(SmtpSink):
    """Keeps every message with the client connection (peer address) it came over; ``delay``
    seconds before each reply to DATA make a send take long enough to overlap or interrupt."""

    peers: list[tuple[str, int]] = field(default_factory=list)
    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        with self.lock:
            self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_sink():
    return PeerSink()


def queue(app, db, users, count: int, subject: str = "Batches") -> int:
    """An email to ``count`` recipients, queued for the worker."""
    addresses = [f"r{number:05}@example.test" for number in range(count)]
    prepared = prepare(db, to=addresses, subject=subject, html="<p>Hello</p>")
    return compose(db, app.config, users["sam"], prepared).email.id


def statuses(db, email_id: int) -> Counter:
    db.expire_all()
    rows = db.execute(select(Recipient.status, func.count()).where(Recipient.email_id == email_id)
                      .group_by(Recipient.status))
    return Counter(dict(rows.all()))


def received(sink) -> Counter:
    return Counter(address for mail in sink.received for address in mail.rcpt_tos)


def worker_process(app, *arguments: str) -> subprocess.Popen:
    """``coretrack worker`` in its own process, on this test's data directory and database."""
    env = {**os.environ, "CORETRACK_HOME": str(app.config.home), "CORETRACK_PUBLIC_URL": app.config.public_url}
    return subprocess.Popen([CORETRACK, "worker", "--interval", "0.2", *arguments], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- claims ---------------------------------------------------------------------------------


def test_concurrent_batch_claims_never_take_a_recipient_twice(app, db, users):
    email_id = queue(app, db, users, 500)
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        with app.Session() as session:
            while batch := claim_batch(session, email_id, 30, EVERYONE_MEASURED):
                with lock:
                    claimed.extend(recipient_id for recipient_id, *_ in batch)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(claimed) == len(set(claimed)) == 500
    assert statuses(db, email_id) == {"sending": 500}
    db.expire_all()
    assert db.get(Email, email_id).status == "sending"


def test_a_claim_takes_at_most_the_batch_size(app, db, users):
    email_id = queue(app, db, users, 25)
    with app.Session() as session:
        assert len(claim_batch(session, email_id, 10, EVERYONE_MEASURED)) == 10
    assert statuses(db, email_id) == {"sending": 10, "pending": 15}


def test_two_worker_processes_send_each_recipient_once(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    sink.delay = 0.008  # long enough a send for both workers to be at it together
    email_id = queue(app, db, users, 600)

    workers = [worker_process(app, "--once") for _ in range(2)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    processed = [int(output.rsplit("processed ", 1)[1].split()[0]) for output in outputs]
    assert sum(processed) == 600 and min(processed) > 0, processed  # both took part
    assert received(sink) == Counter(f"r{number:05}@example.test" for number in range(600))
    assert statuses(db, email_id) == {"sent": 600}


def test_a_worker_killed_mid_batch_leaves_at_most_that_batch_delivery_unknown(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    sink.delay = 0.01
    count = 3 * BATCH_SIZE
    email_id = queue(app, db, users, count)

    worker = worker_process(app)
    wait_for(lambda: len(sink.received) >= BATCH_SIZE + 20)  # early in the second batch
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)

    after_crash = statuses(db, email_id)
    assert 0 < after_crash["sending"] <= BATCH_SIZE
    assert after_crash["sent"] >= BATCH_SIZE  # the first batch was recorded
    # Once the claim is stale, a worker fails what the dead one held and sends the rest.
    db.execute(update(Recipient).where(Recipient.status == "sending")
               .values(claimed_at=utcnow() - STALE_AFTER - timedelta(seconds=1)))
    db.commit()
    run_worker(app.Session, app.config, once=True)

    final = statuses(db, email_id)
    assert final == {"sent": count - after_crash["sending"], "failed": after_crash["sending"]}
    db.expire_all()
    unknown = set(db.scalars(select(Recipient.address).where(Recipient.email_id == email_id,
                                                              Recipient.status == "failed")))
    assert {reply for reply in db.scalars(select(Recipient.reply).where(Recipient.status == "failed"))} == {
        INTERRUPTED}
    # Nobody received a message twice; everyone recorded as sent received it.
    assert max(received(sink).values()) == 1
    assert set(received(sink)) >= {f"r{number:05}@example.test" for number in range(count)} - unknown


def test_a_stopped_worker_gives_the_rest_of_its_batch_back(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    sink.delay = 0.01
    email_id = queue(app, db, users, BATCH_SIZE)

    worker = worker_process(app)
    wait_for(lambda: len(sink.received) >= 10)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    after_stop = statuses(db, email_id)
    assert after_stop["sending"] == 0 and after_stop["sent"] == len(sink.received)
    assert after_stop["pending"] == BATCH_SIZE - len(sink.received) > 0
    run_worker(app.Session, app.config, once=True)
    assert statuses(db, email_id) == {"sent": BATCH_SIZE}
    assert max(received(sink).values()) == 1


def test_a_batch_slower_than_the_hold_gives_back_what_it_has_not_sent(app, db, users, smtp_settings, monkeypatch):
    sink, _ = smtp_settings
    sink.delay = 0.05
    monkeypatch.setattr(delivery, "HOLD_CLAIM_SECONDS", 0.01)  # shorter than one message
    email_id = queue(app, db, users, 4)

    run_worker(app.Session, app.config, once=True)

    # One message per batch, the rest given back each time (no attempt counted for them): all sent once.
    assert statuses(db, email_id) == {"sent": 4}
    assert received(sink) == Counter(f"r{number:05}@example.test" for number in range(4))
    assert set(db.scalars(select(Recipient.attempts).where(Recipient.email_id == email_id))) == {1}


def test_while_the_mail_server_is_slow_the_worker_holds_nothing_in_the_database(app, db, users, smtp_settings,
                                                                                 database):
    """Between messages no transaction of the worker's stays open: an upgrade's schema change (which
    waits for every open transaction on its table, and makes all others wait behind it) and the
    database's own clean-up (VACUUM; SQLite's checkpoint) go ahead while a send is in progress."""
    sink, _ = smtp_settings
    sink.delay = 0.5
    email_id = queue(app, db, users, 4, subject="$contacts-firstname$, hello")  # merge fields: records read too
    db.commit()
    worker = threading.Thread(target=run_worker, args=(app.Session, app.config), kwargs={"once": True})
    worker.start()
    try:
        wait_for(lambda: len(sink.received) >= 1)
        with app.engine.connect() as connection:
            if database == "postgresql":
                connection.execute(text("SET lock_timeout = '250ms'"))
                connection.execute(text("LOCK TABLE recipients, emails, contacts IN ACCESS EXCLUSIVE MODE"))
            else:
                busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
                assert busy == 0  # no reader held an old snapshot
            connection.rollback()
    finally:
        worker.join(60)
    assert statuses(db, email_id) == {"sent": 4}


# -- connections ----------------------------------------------------------------------------


def test_one_connection_by_default_kept_open_across_batches_and_emails(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    first = queue(app, db, users, BATCH_SIZE * 2 + 10)
    second = queue(app, db, users, 20, subject="Second")

    assert SettingsService(db, app.config).get("smtp_connections") == 1
    run_worker(app.Session, app.config, once=True)

    assert statuses(db, first) == {"sent": BATCH_SIZE * 2 + 10}
    assert statuses(db, second) == {"sent": 20}
    assert len(set(sink.peers)) == 1  # three batches and two emails over one connection


def test_several_connections_send_at_once_each_recipient_once(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    sink.delay = 0.002
    SettingsService(db, app.config).update({"smtp_connections": "3"}, user_name="admin")
    count = BATCH_SIZE * 5
    email_id = queue(app, db, users, count)

    assert run_worker(app.Session, app.config, once=True) == count

    assert len(set(sink.peers)) == 3  # five batches over three connections, each kept open
    assert received(sink) == Counter(f"r{number:05}@example.test" for number in range(count))
    assert statuses(db, email_id) == {"sent": count}
    db.expire_all()
    assert db.get(Email, email_id).status == "sent"


def test_a_cancel_stops_every_connections_batch(app, db, users, smtp_settings):
    sink, _ = smtp_settings
    SettingsService(db, app.config).update({"smtp_connections": "3"}, user_name="admin")
    email_id = queue(app, db, users, BATCH_SIZE * 4)
    at_cancel: list[int] = []  # messages the server had when the cancel was made

    def cancel_after_five(_):
        if len(sink.received) >= 5 and not at_cancel:
            at_cancel.append(len(sink.received))
            with app.Session() as other:
                cancel_unsent(other, email_id, "admin")

    deliver(app.Session, app.config, email_id, on_progress=cancel_after_five)

    # Each connection checks its claimed recipients one by one: at most the message it had in hand
    # when the cancel came still went out.
    after = statuses(db, email_id)
    assert set(after) == {"sent", "cancelled"} and after["sent"] <= at_cancel[0] + 3
    assert max(received(sink).values()) == 1 and sum(received(sink).values()) == after["sent"]
    db.expire_all()
    assert db.get(Email, email_id).status == "cancelled"


def test_the_connections_setting_sits_with_the_outgoing_mail_settings(admin, db, app):
    page = admin.get("/settings")
    field = page.html.find(id="f-smtp_connections")
    assert field.find_parent("fieldset").legend.get_text(strip=True) == "Outgoing mail"
    assert (field["type"], field["min"], field["max"], field["value"]) == ("number", "1", "10", "1")

    form = page.forms["settings-form"]
    form["smtp_connections"] = "4"
    form.submit(status=303)
    assert SettingsService(db, app.config).get("smtp_connections") == 4


# -- memory ---------------------------------------------------------------------------------


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(field_name)


@dataclass
class CountingSink:
    """Counts messages without keeping them (100,000 of them would fill this process)."""

    count: int = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 Message accepted"


@pytest.mark.slow
@pytest.mark.parametrize("smtp_sink", [CountingSink()], ids=["counting"])
def test_a_worker_sending_to_100000_recipients_stays_under_200_mb(app, db, users, smtp_settings, smtp_sink):
    """The worker streams recipients batch by batch: nothing grows with the size of the send."""
    smtp_sink.count = 0  # one sink for both databases' runs
    total = 100_000
    owner = db.scalar(select(User.id).where(User.name == "sam"))
    email = Email(subject="Large", html_body="<p>" + "Hello. " * 800 + "</p>", sender_id=owner,
                  from_address="crm@example.test", status="queued")
    db.add(email)
    db.commit()
    secret = app.config.secret_key()
    for start in range(0, total, 20_000):
        db.execute(insert(Recipient), [
            {"email_id": email.id, "address": f"r{number:06}@example.test", "token": tokens.new_token(secret),
             "status": "pending"} for number in range(start, start + 20_000)])
        db.commit()

    worker = worker_process(app)
    try:
        wait_for(lambda: smtp_sink.count >= 2_000, timeout=60)
        early = _status_kb(worker.pid, "VmRSS")
        # Progress, not a clock, decides when to look again: a slow machine sends fewer a second.
        wait_for(lambda: worker.poll() is not None or smtp_sink.count >= 8_000, timeout=300)
        assert worker.poll() is None, worker.communicate()[0]
        peak = _status_kb(worker.pid, "VmHWM")
        late = _status_kb(worker.pid, "VmRSS")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    sent = statuses(db, email.id)["sent"]
    assert sent >= 6_000, sent
    assert peak < 200 * 1024, f"peak RSS {peak} kB"
    # After the first 2,000 messages the worker's memory stays flat while thousands more go out.
    assert late - early < 10 * 1024, f"RSS grew from {early} kB to {late} kB over {sent - 2_000} messages"
