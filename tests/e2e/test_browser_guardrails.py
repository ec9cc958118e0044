"""A mass send paused by the guardrails, in a real browser against coretrack under a real Apache with
its worker: the page says why with the figures, staff cannot resume it, an admin resumes it and the
worker sends the rest."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from coretrack.db import make_engine, make_session_factory
from coretrack.delivery_reports import classes, deliveries
from coretrack.models import Email, Recipient, User, utcnow
from coretrack.sending.compose import compose, prepare
from coretrack.sending.delivery import deliver
from coretrack.settings import SettingsService

pytestmark = [pytest.mark.browser]

# Beside the failure screenshots (tests/e2e/conftest.py); docs/images/paused-send.png is one.
PICTURE = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots" / "paused-send.png"
ADDRESSES = [f"reader{number:02}@example.test" for number in range(20)]


def paused_mass_send(apache) -> int:
    """A mass send to 20 whose first 8 went, one of them hard-bounced: its next turn pauses it."""
    engine = make_engine(apache.config.database_url)
    factory = make_session_factory(engine)
    try:
        with factory() as session:
            SettingsService(session, apache.config).update({"guardrail_minimum": "5"}, user_name="admin")
            sam = session.scalars(select(User).where(User.name == "sam")).one()
            prepared = prepare(session, to=ADDRESSES, subject="Spring offer", html="<p>Two for one.</p>")
            email = compose(session, apache.config, sam, prepared).email
            email.mass_send = True
            session.commit()
            email_id = email.id
        deliver(factory, apache.config, email_id, limit=8)
        with factory() as session:
            sent = select(Recipient.id).where(Recipient.email_id == email_id, Recipient.status == "sent")
            first = session.scalars(sent.order_by(Recipient.id)).first()
            deliveries.record_delivery(session, first, "bounced", "5.1.1 550 no such user", utcnow(), classes.HARD)
            session.commit()
        deliver(factory, apache.config, email_id, limit=8)
        with factory() as session:
            assert session.get_one(Email, email_id).status == "paused"
    finally:
        engine.dispose()
    return email_id


def test_an_admin_resumes_a_paused_mass_send_and_the_worker_sends_the_rest(apache, browser, smtp):
    email_id = paused_mass_send(apache)
    assert len([mail for mail in smtp.received if mail.rcpt_tos[0] in ADDRESSES]) == 8
    worker = apache.start_service("worker")
    try:
        sam = browser("sam", "sam")
        with sam.step("the sender sees why it was paused, and no resume button"):
            sam.open(f"/emails/{email_id}")
            assert "1 hard bounce of 8 handed over (12.5%)" in sam.find("#paused").text
            assert sam.find_all("#resume") == []
        admin = browser("admin", "admin")
        with admin.step("the admin sees the pause and the deliverability panel"):
            admin.open(f"/emails/{email_id}")
            assert "hard bounces reached 2%" in admin.find("#paused").text
            admin.screenshot(PICTURE, "#paused")
        with admin.step("resumed, the worker sends the rest"):
            admin.press("Resume sending")
            assert "Resumed: the rest of this send goes out" in admin.text
            deadline = time.monotonic() + 60
            while len([m for m in smtp.received if m.rcpt_tos[0] in ADDRESSES]) < 20 and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        worker.stop()
    assert sorted(mail.rcpt_tos[0] for mail in smtp.received if mail.rcpt_tos[0] in ADDRESSES) == ADDRESSES
    with apache.session() as session:
        assert session.get(Email, email_id).status == "sent"
