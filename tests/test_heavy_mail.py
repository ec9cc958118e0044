"""Heavy email: what no mail client would show is refused when it is composed (form, API, command
line: one check), an email at the limits composes and builds in time linear in its size and links,
and one heavy email holds up the emails queued after it by one turn of the worker at most."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from support.constants import PUBLIC_URL
from support.smtp_sink import SmtpSink

from coretrack.cli import main as cli_main
from coretrack.models import Email, Recipient
from coretrack.sending import delivery, limits
from coretrack.sending.compose import compose, prepare
from coretrack.sending.messages import message_template
from coretrack.sending.mime import MessageTemplate
from coretrack.sending.worker import run_worker
from coretrack.tracking import clicks

TEXT = "Our products this month, with prices and what customers say about them. "


def newsletter(links: int, size: int = 0) -> str:
    """HTML with this many links, padded with text to about ``size`` bytes."""
    items = [f'<p><a href="https://shop.example.test/item/{number}">Item {number}</a></p>\n' for number in range(links)]
    padding = max(0, size - sum(map(len, items)) - 100) // max(links, 1)
    return ("<html><body>" + "".join(item.replace("</p>", (TEXT * (padding // len(TEXT) + 1))[:padding] + "</p>")
                                     for item in items) + "</body></html>")


def email_count(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(Email))


# -- linear ----------------------------------------------------------------------------------


def build_seconds(app, db, users, links: int) -> float:
    """Prepare, compose (which builds the message to check it), the worker's build and one
    recipient's message of an email with this many links, in proportion to the limits' size."""
    html = newsletter(links, limits.MAX_BODY_BYTES * links // limits.MAX_LINKS - 2_000)
    gc.collect()
    gc.disable()  # a collection that happens to fall into one run is not that run's work
    try:
        started = time.process_time()  # this process's own: the other processes' load does not count
        prepared = prepare(db, to=["ann@example.test"], subject="Heavy", html=html)
        result = compose(db, app.config, users["sam"], prepared)
        template = message_template(db, app.config, result.email)
        token = db.scalar(select(Recipient.token).where(Recipient.email_id == result.email.id))
        message = template.render("ann@example.test", "Ann", token)
        seconds = time.process_time() - started
    finally:
        gc.enable()
    html_sent = message_from_bytes(message, policy=policy.default).get_body(("html",)).get_content()
    assert html_sent.count(clicks.CLICK_PATH) == links  # every link tracked
    db.query(Email).delete()
    db.commit()
    return seconds


def test_an_email_at_the_limits_composes_and_builds_in_time_linear_in_its_links_and_size(app, db, users):
    # Eight times the links and size take about eight times as long (less: some work is the same
    # for any email), not sixty-four.  The best of three each, in one run: a ratio, so the
    # machine's speed does not matter; twice linear still passes, so its load does not either.
    at_the_limit = min(build_seconds(app, db, users, limits.MAX_LINKS) for _ in range(3))
    eighth = min(build_seconds(app, db, users, limits.MAX_LINKS // 8) for _ in range(3))

    assert at_the_limit / eighth < 16, (at_the_limit, eighth)


def template_seconds(links: int) -> float:
    """The CPU time of building the MIME of an email with this many links (and 500 bytes each)."""
    html = newsletter(links, 500 * links)
    stored = clicks.trackable_links(html, PUBLIC_URL)
    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Heavy", html=html,
                        public_url=PUBLIC_URL, links=stored, secret=b"s" * 32, unsubscribe_url=PUBLIC_URL)
        return time.process_time() - started
    finally:
        gc.enable()


def test_the_message_is_built_in_time_linear_in_its_links_beyond_the_limits_too():
    # The builder is not what keeps the limits: eight times the links take about eight times as long
    # (a search of the whole message per link made it sixty-four).
    many = min(template_seconds(limits.MAX_LINKS * 4) for _ in range(2))
    eighth = min(template_seconds(limits.MAX_LINKS // 2) for _ in range(2))

    assert many / eighth < 16, (many, eighth)


# -- the limits, refused at compose ----------------------------------------------------------

TOO_MANY_LINKS = newsletter(limits.MAX_LINKS + 1)
TOO_LARGE = newsletter(10, limits.MAX_BODY_BYTES + 1_000)


def test_an_email_over_the_limits_is_refused_by_the_api_naming_the_limit(staff, db):
    many = staff.post_json("/api/emails", {"to": ["ann@example.test"], "subject": "s", "html": TOO_MANY_LINKS},
                           status=400).json
    large = staff.post_json("/api/emails", {"to": ["ann@example.test"], "subject": "s", "html": TOO_LARGE},
                            status=400).json
    text = staff.post_json("/api/emails", {"to": ["ann@example.test"], "subject": "s", "html": "<p>Hi</p>",
                                           "text": "x" * (limits.MAX_BODY_BYTES + 1)}, status=400).json

    assert "1,001 links" in many["fields"]["html"] and "at most 1,000" in many["fields"]["html"]
    assert f"at most {limits.MAX_BODY_BYTES:,}" in large["fields"]["html"]
    assert f"at most {limits.MAX_BODY_BYTES:,}" in text["fields"]["text"]
    assert email_count(db) == 0


def test_an_email_over_the_limits_is_refused_by_the_form_next_to_the_field(staff, db):
    for html, limit in ((TOO_MANY_LINKS, "at most 1,000"), (TOO_LARGE, f"at most {limits.MAX_BODY_BYTES:,}")):
        form = staff.get("/emails/new").forms["compose"]
        form["to"], form["subject"], form["html"] = "ann@example.test", "s", html
        response = form.submit("action", value="send", expect_errors=True)

        assert response.status_int == 400
        assert limit in response.html.select_one("#e-html").text
    assert email_count(db) == 0


def test_an_email_over_the_limits_is_refused_by_the_command_line(app, db, users, monkeypatch):
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)

    result = CliRunner().invoke(cli_main, ["send", "--from-user", "sam", "--to", "ann@example.test",
                                           "--subject", "s", "--html", TOO_MANY_LINKS])

    assert result.exit_code != 0
    assert "html: the HTML body has 1,001 links; an email may have at most 1,000" in result.output
    assert email_count(db) == 0


def test_a_template_over_the_limits_is_refused_as_an_email_is(admin, db):
    form = admin.get("/templates/new").forms["template-form"]
    form["name"], form["subject"], form["html"] = "Heavy", "s", TOO_MANY_LINKS
    response = form.submit(expect_errors=True)

    assert response.status_int == 400
    assert "at most 1,000" in response.text


# -- fairness ---------------------------------------------------------------------------------


@dataclass
class SlowSink(SmtpSink):
    """Takes ``delay`` seconds over each message."""

    delay: float = 0.0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_sink():
    return SlowSink()


def test_a_normal_email_queued_after_a_heavy_one_goes_while_the_heavy_one_is_still_sending(
        app, db, users, smtp_settings, monkeypatch):
    sink: SlowSink = smtp_settings[0]
    sink.delay = 0.05  # each message takes a moment: the heavy email takes several turns
    monkeypatch.setattr(delivery, "TURN_SECONDS", 0.5)
    heavy_to = [f"h{number:03}@example.test" for number in range(40)]
    normal_to = [f"n{number:02}@example.test" for number in range(12)]
    heavy = compose(db, app.config, users["sam"], prepare(
        db, to=heavy_to, subject="Heavy", html=newsletter(limits.MAX_LINKS, limits.MAX_BODY_BYTES - 2_000))).email.id
    normal = compose(db, app.config, users["sam"], prepare(
        db, to=normal_to, subject="Normal", html="<p>Hello</p>")).email.id

    run_worker(app.Session, app.config, once=True)

    arrived = [mail.rcpt_tos[0] for mail in sink.received]
    assert Counter(arrived) == Counter(heavy_to + normal_to)  # everyone, once
    last_normal = max(arrived.index(address) for address in normal_to)
    last_heavy = max(arrived.index(address) for address in heavy_to)
    assert last_normal < last_heavy, "the normal email waited for the whole heavy one"
    db.expire_all()
    assert db.get(Email, heavy).status == db.get(Email, normal).status == "sent"
