"""Retention: access and click events older than the period are deleted (coretrack purge, the
worker's daily task) while the counts on recipients stay; the period is an audited setting."""


from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from support.constants import PUBLIC_URL

from coretrack.cli import main as cli_main
from coretrack.models import AccessEvent, DeliveryEvent, Recipient, SettingChange, WebhookDelivery, WebhookEvent, utcnow
from coretrack.sending.compose import compose, prepare
from coretrack.settings import SettingsService
from coretrack.tracking.retention import purge, watch_retention
from coretrack.validation import ValidationError
from coretrack.webhooks import endpoints


@pytest.fixture
def recipient(app, db, users) -> Recipient:
    """A recipient counted 3 times: loads 40 and 10 days ago and today, and SendGrid events then."""
    prepared = prepare(db, to=["ada@example.test"], subject="Hello", html="<p>Hi</p>")
    email = compose(db, app.config, users["sam"], prepared).email
    recipient = email.recipients[0]
    now = utcnow()
    for number, days in enumerate((40, 10, 0)):
        at = now - timedelta(days=days)
        db.add(AccessEvent(recipient_id=recipient.id, at=at, ip="192.0.2.0", user_agent="Mail"))
        db.add(DeliveryEvent(provider="sendgrid", event_id=f"sg-{number}", recipient_id=recipient.id, event="click",
                             at=at, detail="https://example.test/offer"))
    recipient.access_count, recipient.first_access, recipient.last_access = 3, now - timedelta(days=40), now
    db.commit()
    return recipient


def events(db, model) -> list:
    db.expire_all()
    return sorted((utcnow() - row.at).days for row in db.scalars(select(model)))


def keep_for(app, db, days: str) -> None:
    SettingsService(db, app.config).update({"retention_days": days}, user_name="admin")


def test_without_a_period_every_event_is_kept(app, db, recipient):
    assert purge(db, app.config) is None
    assert events(db, AccessEvent) == [0, 10, 40]
    assert events(db, DeliveryEvent) == [0, 10, 40]


def test_events_older_than_the_period_go_and_the_counts_stay(app, db, recipient):
    keep_for(app, db, "30")
    assert purge(db, app.config) == {"access_events": 1, "click_events": 0, "delivery_events": 1,
                                     "mail_reports": 0, "webhook_events": 0}
    assert events(db, AccessEvent) == [0, 10]
    assert events(db, DeliveryEvent) == [0, 10]
    db.refresh(recipient)
    assert recipient.access_count == 3
    assert (utcnow() - recipient.first_access).days == 40
    keep_for(app, db, "5")
    assert purge(db, app.config, batch=1) == {"access_events": 1, "click_events": 0, "delivery_events": 1,
                                              "mail_reports": 0, "webhook_events": 0}
    assert events(db, AccessEvent) == [0]


def test_the_webhooks_outbox_goes_with_the_events_it_reports_and_its_deliveries_with_it(app, db, users):
    endpoint = endpoints.create(db, app.secret, "https://hooks.example.test/in", ["email.delivered"], "admin")
    now = utcnow()
    for number, days in enumerate((40, 0)):
        event = WebhookEvent(event_id=f"evt_{number}", type="email.delivered", at=now - timedelta(days=days),
                             data='{"address": "ada@example.test"}', fanned_out=True)
        db.add(event)
        db.flush()
        db.add(WebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, status="delivered", attempts=1))
    db.commit()
    keep_for(app, db, "30")
    assert purge(db, app.config)["webhook_events"] == 1
    db.expire_all()
    assert [event.event_id for event in db.scalars(select(WebhookEvent))] == ["evt_1"]
    assert db.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_a_purge_larger_than_its_batch_takes_several(app, db, recipient):
    keep_for(app, db, "2")
    assert purge(db, app.config, batch=1) == {"access_events": 2, "click_events": 0, "delivery_events": 2,
                                              "mail_reports": 0, "webhook_events": 0}
    assert events(db, AccessEvent) == [0]
    assert events(db, DeliveryEvent) == [0]


def test_the_period_is_audited_and_refuses_what_is_not_a_number_of_days(app, db):
    settings = SettingsService(db, app.config)
    assert settings.retention_days() is None
    keep_for(app, db, "90")
    assert settings.retention_days() == 90
    keep_for(app, db, "")
    assert settings.retention_days() is None
    changes = db.scalars(select(SettingChange).where(SettingChange.key == "retention_days")
                         .order_by(SettingChange.id)).all()
    assert [(change.old_value, change.new_value, change.user_name) for change in changes] == \
        [("", "90", "admin"), ("90", "", "admin")]
    for bad in ("0", "1", "-3", "ten", "36501"):
        with pytest.raises(ValidationError) as raised:
            keep_for(app, db, bad)
        assert "retention_days" in raised.value.errors
    assert settings.retention_days() is None


def test_the_settings_page_sets_the_period(app, db, admin):
    form = admin.get("/settings").forms["settings-form"]
    assert form["retention_days"].value == ""
    form["retention_days"] = "60"
    form.submit().follow()
    assert SettingsService(db, app.config).retention_days() == 60


def test_the_purge_command_says_what_it_deleted(app, db, recipient, monkeypatch):
    monkeypatch.setenv("CORETRACK_HOME", str(app.config.home))
    monkeypatch.setenv("CORETRACK_PUBLIC_URL", PUBLIC_URL)
    result = CliRunner().invoke(cli_main, ["purge"])
    assert result.exit_code == 0, result.output
    assert "no retention period set: every event is kept" in result.output
    keep_for(app, db, "7")
    result = CliRunner().invoke(cli_main, ["purge"])
    assert result.exit_code == 0, result.output
    assert "access_events=2 delivery_events=2" in result.output
    assert events(db, AccessEvent) == [0]


def test_the_worker_task_purges_at_start_and_then_each_interval(app, db, recipient):
    keep_for(app, db, "30")
    stop = threading.Event()
    watch = threading.Thread(target=watch_retention, args=(app.Session, app.config, stop), kwargs={"interval": 0.2})
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while events(db, AccessEvent) != [0, 10] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events(db, AccessEvent) == [0, 10]
        keep_for(app, db, "5")  # the next pass uses the new period
        while events(db, AccessEvent) != [0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events(db, AccessEvent) == [0]
    finally:
        stop.set()
        watch.join(5)
    assert not watch.is_alive()
    assert db.scalar(select(func.count()).select_from(Recipient)) == 1


def test_the_worker_command_purges_beside_sending(app, db, recipient):
    keep_for(app, db, "30")
    env = {**os.environ, "CORETRACK_HOME": str(app.config.home), "CORETRACK_PUBLIC_URL": PUBLIC_URL}
    worker = subprocess.Popen([str(Path(sys.prefix) / "bin" / "coretrack"), "worker", "--interval", "0.2"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while events(db, AccessEvent) != [0, 10] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert events(db, AccessEvent) == [0, 10]
    assert events(db, DeliveryEvent) == [0, 10]
