"""Sending survives a misbehaving mail server: refusals, a connection dropped in the middle of a
batch, slow or silent answers.  The send finishes or can be resumed, every recipient ends sent
or failed with the reason, and nobody gets a message twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from support.smtp_sink import SmtpSink

from coretrack.models import Recipient
from coretrack.sending import smtp
from coretrack.sending.status import retry_failed
from coretrack.sending.worker import run_worker

ADDRESSES = [f"r{number:02}@example.test" for number in range(20)]
DROPPED = "the connection to the mail server was lost; delivery unknown"


@dataclass
class FaultySink(SmtpSink):
    """An SMTP server that misbehaves on purpose, for the message numbers (1, 2, ...) it is told."""

    drop_before_storing: set[int] = field(default_factory=set)  # connection cut, message not taken
    drop_after_storing: set[int] = field(default_factory=set)  # message taken, connection cut before "250"
    closing_on_mail: set[int] = field(default_factory=set)  # "421 closing" instead of accepting MAIL FROM
    delay: float = 0.0  # seconds before each DATA reply
    messages: int = 0  # DATA commands seen
    mails: int = 0  # MAIL FROM commands seen

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mails += 1
        if self.mails in self.closing_on_mail:
            server.transport.close()
            return "421 4.4.2 closing connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        await asyncio.sleep(self.delay)
        if self.messages in self.drop_before_storing:
            server.transport.abort()
            return "451 never seen"
        reply = await super().handle_DATA(server, session, envelope)
        if self.messages in self.drop_after_storing:
            server.transport.abort()
        return reply


@pytest.fixture
def smtp_sink():
    """Overrides conftest's: the real aiosmtpd server of smtp_server gets the faulty handler."""
    return FaultySink()


@pytest.fixture
def sink(smtp_sink):
    return smtp_sink


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": list(ADDRESSES), "subject": "Faults", "html": "<p>Hello</p>"}


def outcome(db, email_id) -> dict[str, tuple[str, str]]:
    db.expire_all()
    rows = db.scalars(select(Recipient).where(Recipient.email_id == email_id))
    return {row.address: (row.status, row.reply) for row in rows}


def received(sink) -> Counter:
    return Counter(address for mail in sink.received for address in mail.rcpt_tos)


def assert_finished(db, email_id) -> dict[str, tuple[str, str]]:
    """Every recipient sent or failed, a failure always with its reason."""
    result = outcome(db, email_id)
    assert {status for status, _ in result.values()} <= {"sent", "failed"}
    assert all(reply for status, reply in result.values() if status == "failed")
    return result


def test_refused_recipients_fail_with_the_reply_the_rest_are_sent_once(app, db, users, smtp_settings, sink, send):
    sink.refuse = {ADDRESSES[3]: "550 5.1.1 No such user", ADDRESSES[11]: "452 4.2.2 Mailbox full"}
    email = send.compose().email

    assert run_worker(app.Session, app.config, once=True) == 20
    result = assert_finished(db, email.id)

    assert result[ADDRESSES[3]] == ("failed", "550 5.1.1 No such user")
    assert result[ADDRESSES[11]] == ("failed", "452 4.2.2 Mailbox full")
    assert received(sink) == Counter(set(ADDRESSES) - {ADDRESSES[3], ADDRESSES[11]})

    sink.refuse = {}  # the mailbox was emptied: retrying sends the two, once
    assert retry_failed(db, email.id) == 2
    run_worker(app.Session, app.config, once=True)
    assert {status for status, _ in assert_finished(db, email.id).values()} == {"sent"}
    assert received(sink) == Counter(ADDRESSES)


def test_a_connection_dropped_before_the_server_took_a_message_fails_only_that_one(app, db, users, smtp_settings,
                                                                                  sink, send):
    sink.drop_before_storing = {5, 12}
    email = send.compose().email

    run_worker(app.Session, app.config, once=True)
    result = assert_finished(db, email.id)

    failed = {address for address, (status, _) in result.items() if status == "failed"}
    assert failed == {ADDRESSES[4], ADDRESSES[11]}
    assert all(result[address][1].startswith(DROPPED) for address in failed)
    # The sender reconnected after each drop and finished the batch.
    assert received(sink) == Counter(set(ADDRESSES) - failed)

    assert retry_failed(db, email.id) == 2
    run_worker(app.Session, app.config, once=True)
    assert received(sink) == Counter(ADDRESSES)


def test_a_message_taken_before_the_connection_dropped_is_never_resent_automatically(app, db, users, smtp_settings,
                                                                                     sink, send):
    sink.drop_after_storing = {7}
    email = send.compose().email

    run_worker(app.Session, app.config, once=True)
    run_worker(app.Session, app.config, once=True)  # a second pass, as after a restart: nothing to resend
    result = assert_finished(db, email.id)

    # The server has it, but coretrack cannot know: failed, "delivery unknown", left for a person.
    assert result[ADDRESSES[6]][0] == "failed" and result[ADDRESSES[6]][1].startswith(DROPPED)
    assert received(sink) == Counter(ADDRESSES)  # everyone exactly once


def test_a_server_that_closes_the_connection_between_messages_is_reconnected(app, db, users, smtp_settings, sink, send):
    sink.closing_on_mail = {4, 9}
    email = send.compose().email

    run_worker(app.Session, app.config, once=True)

    assert {status for status, _ in assert_finished(db, email.id).values()} == {"sent"}
    assert received(sink) == Counter(ADDRESSES)


def test_a_slow_server_still_gets_every_message_once(app, db, users, smtp_settings, sink, send):
    sink.delay = 0.05
    email = send.compose(to=ADDRESSES[:8]).email

    run_worker(app.Session, app.config, once=True)

    assert {status for status, _ in assert_finished(db, email.id).values()} == {"sent"}
    assert received(sink) == Counter(ADDRESSES[:8])


def test_a_server_slower_than_the_timeout_fails_with_the_reason_and_a_retry_finishes(app, db, users, smtp_settings,
                                                                                    sink, monkeypatch, send):
    monkeypatch.setattr(smtp.SmtpSender, "timeout", 0.5)
    sink.delay = 1.0
    email = send.compose(to=ADDRESSES[:2]).email

    run_worker(app.Session, app.config, once=True)
    result = assert_finished(db, email.id)

    # coretrack cannot know whether the server took them: delivery unknown, not resent automatically.
    assert {status for status, _ in result.values()} == {"failed"}
    assert all(reply.startswith(DROPPED) and "timed out" in reply for _, reply in result.values())
    run_worker(app.Session, app.config, once=True)
    assert sink.messages == 2  # not resent

    sink.delay = 0.0
    assert retry_failed(db, email.id) == 2
    run_worker(app.Session, app.config, once=True)
    assert {status for status, _ in assert_finished(db, email.id).values()} == {"sent"}
    assert received(sink) == Counter(ADDRESSES[:2])
