"""The images in email coreBOS sent keep counting after the switch: for the recipients imported
from coreBOS, with the old install's key, on the WSGI path and the hit-log path alike."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from support.apache import ApacheServer
from support.hit_load import counted, wait_until

from coretrack.models import AccessEvent, Email, Recipient, Setting, SettingChange, User
from coretrack.settings import MASK, SettingsService
from coretrack.tracking import corebos_images, tokens
from coretrack.tracking.counting import count_hits, write_transaction
from coretrack.tracking.hitlog import parse_line
from coretrack.tracking.hits import Hit
from coretrack.tracking.image import GIF
from coretrack.tracking.spool import Spool

PATH = "/modules/Emails/TrackAccess.php"
APP_KEY = "4a1b2c3d4e5f60718293a4b5c6d7e8f9"  # coreBOS's application_unique_key is an md5 hex digest


def imported_email(session, secret: bytes, pairs: list[tuple[int, int] | None]) -> list[Recipient]:
    """An email imported from coreBOS: one recipient per (crmid, mailid) pair (None: a recipient
    coretrack sent itself, with no pair)."""
    sender = session.scalars(select(User).order_by(User.id)).first()
    email = Email(subject="Imported", html_body="<p>hi</p>", sender_id=sender.id, from_address="crm@example.test",
                  status="sent")
    email.recipients = [Recipient(address=f"r{number}@example.test", token=tokens.new_token(secret), status="sent",
                                  corebos_crmid=pair[0] if pair else None, corebos_mailid=pair[1] if pair else None)
                        for number, pair in enumerate(pairs)]
    session.add(email)
    session.commit()
    return list(email.recipients)


def set_key(session, config, key: str = APP_KEY, **others: str) -> None:
    SettingsService(session, config).update({"corebos_app_key": key, **others}, "admin")


def image_query(crmid: int, mailid: int, key: str = APP_KEY) -> dict[str, str]:
    return {"record": str(crmid), "mailid": str(mailid), "app_key": key}


@pytest.fixture
def imported(app, db, users):
    set_key(db, app.config)
    return imported_email(db, app.secret, [(101, 7), (102, 7), None])


def counts(db) -> dict[int, int]:
    db.expire_all()
    return dict(counted(db)[0])


# -- the WSGI path -----------------------------------------------------------------------------


def test_a_coreBOS_image_counts_for_its_imported_recipient_and_its_event_says_legacy(app, anon, db, imported):
    first, second, _ = imported
    response = anon.get(PATH, image_query(101, 7), headers={"User-Agent": "Thunderbird/115"})
    assert response.status_int == 200 and response.body == GIF
    wait_until(lambda: counts(db) == {first.id: 1}, "the coreBOS image to count for its recipient", seconds=10)
    event = db.scalars(select(AccessEvent)).one()
    assert event.legacy is True and event.recipient_id == first.id
    # A signed token still counts as before, and its event is not legacy.
    anon.get(PATH, {"t": second.token})
    wait_until(lambda: counts(db) == {first.id: 1, second.id: 1}, "the signed hit", seconds=10)
    assert db.scalars(select(AccessEvent).where(AccessEvent.recipient_id == second.id)).one().legacy is False


@pytest.mark.parametrize("query", [
    image_query(101, 7, key="0" * 32),                       # another install's key
    image_query(101, 8),                                     # a mail that was not imported
    image_query(103, 7),                                     # a crmid that mail was not sent to
    {"record": "101", "mailid": "7"},                        # no key
    {"record": "101", "mailid": "7", "app_key": ""},         # an empty key
    {"record": "-101", "mailid": "7", "app_key": APP_KEY},   # not an id
    {"record": "101x", "mailid": "7", "app_key": APP_KEY},
    {"record": "9" * 5000, "mailid": "7", "app_key": APP_KEY},
    {"record": "١٠١", "mailid": "7", "app_key": APP_KEY},    # digits of another script
    {"record": "101", "mailid": "7", "app_key": APP_KEY + "x" * 300},
], ids=["wrong key", "mail not imported", "crmid not in that mail", "no key", "empty key", "negative", "not a number",
        "huge number", "arabic digits", "overlong key"])
def test_a_coreBOS_image_that_names_no_imported_pair_with_the_key_gets_the_gif_and_counts_nothing(
        app, anon, db, imported, query):
    response = anon.get(PATH, query)
    assert response.status_int == 200 and response.body == GIF
    app.tracker.close()  # whatever was queued is counted now
    assert counts(db) == {}


def test_a_signed_token_wins_over_coreBOS_arguments_in_the_same_query(app, anon, db, imported):
    first, second, _ = imported
    anon.get(PATH + "?" + urlencode({"t": second.token, **image_query(101, 7)}))
    wait_until(lambda: counts(db) == {second.id: 1}, "the signed hit", seconds=10)


def test_with_legacy_counting_switched_off_or_the_key_removed_coreBOS_images_count_nothing(app, anon, db, imported):
    first = imported[0]
    SettingsService(db, app.config).update({"corebos_tracking": "false"}, "admin")
    anon.get(PATH, image_query(101, 7))
    app.tracker.close()
    assert counts(db) == {}
    SettingsService(db, app.config).update({"corebos_tracking": "true"}, "admin", remove=["corebos_app_key"])
    anon.get(PATH, image_query(101, 7))
    app.tracker.close()
    assert counts(db) == {}
    set_key(db, app.config)
    anon.get(PATH, image_query(101, 7))
    wait_until(lambda: counts(db) == {first.id: 1}, "the hit once the key is back", seconds=10)


def test_with_tracking_disabled_coreBOS_images_count_nothing_either(app, anon, db, imported):
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, "admin")
    anon.get(PATH, image_query(101, 7))
    app.tracker.close()
    assert counts(db) == {}


def test_coreBOS_hits_count_in_a_batch_with_signed_ones_each_once(app, db, imported):
    first, second, plain = imported
    secret = app.secret
    legacy_token = corebos_images.token(secret, "102", "7", APP_KEY)
    hits = [Hit(legacy_token, datetime(2026, 12, 3, 10, 0, second_), "203.0.113.1", "Thunderbird")
            for second_ in range(3)]
    hits += [Hit(plain.token, datetime(2026, 12, 3, 10, 0, 5), "203.0.113.1", "Thunderbird"),
             Hit(corebos_images.token(secret, "101", "7", "wrong"), datetime(2026, 12, 3, 10, 0, 6),
                 "203.0.113.1", "x")]
    with write_transaction(app.engine) as connection:
        assert count_hits(connection, hits + hits[:1]) == 4  # the repeated hit id counts once
    assert counts(db) == {second.id: 3, plain.id: 1}


# -- the key: a one-way secret ------------------------------------------------------------------


def test_the_key_is_kept_only_as_a_digest_and_never_shown_or_audited_in_clear(app, admin, db, imported):
    stored = db.get(Setting, "corebos_app_key").value
    assert APP_KEY not in stored and stored == corebos_images.key_digest(app.secret, APP_KEY)
    change = db.scalars(select(SettingChange).where(SettingChange.key == "corebos_app_key")).one()
    assert (change.old_value, change.new_value) == ("", MASK)
    page = admin.get("/settings")
    assert APP_KEY not in page.text and stored not in page.text
    assert "Currently a corebos application key is stored." in page.text
    # Saving the same key again changes nothing.
    assert SettingsService(db, app.config).update({"corebos_app_key": f"  {APP_KEY}\n"}, "admin") == []


def test_the_key_never_reaches_the_spool_the_queue_or_an_event(app, db, imported, tmp_path):
    token = corebos_images.token(app.secret, "101", "7", APP_KEY)
    assert APP_KEY not in token
    spool = Spool(tmp_path / "spool", 10**6)
    spool.append([Hit.now(token, "203.0.113.1", "Thunderbird")])
    assert APP_KEY not in "".join(path.read_text() for path in (tmp_path / "spool").iterdir())


# -- the hit-log path ----------------------------------------------------------------------------


def test_a_logged_coreBOS_image_is_read_as_its_legacy_token():
    secret = b"k" * 32
    query = "?" + urlencode(image_query(101, 7))
    line = f"1764756000000000\tGET\t200\t203.0.113.9\tAw{'0' * 22}\t{query}\tThunderbird\n".encode()
    hit = parse_line(line, secret)
    assert hit is not None and hit.token == corebos_images.token(secret, "101", "7", APP_KEY)
    assert parse_line(line.replace(b"record=101", b"record=x"), secret) is None


@pytest.mark.slow
@pytest.mark.parametrize("form", ["site", "express"])
def test_through_real_apache_a_coreBOS_image_counts_only_for_an_imported_pair_with_the_key(form):
    server = ApacheServer(form, "/your_coreBOS", hit_log=True)
    try:
        server.start()
        with server.session() as session:
            set_key(session, server.config)
            first, second, _ = imported_email(session, server.config.secret_key(), [(101, 7), (102, 7), None])
        endpoint = server.prefix + PATH
        for query in (image_query(101, 7), image_query(101, 7, key="0" * 32), image_query(999, 7),
                      image_query(102, 8)):
            reply = server.request("GET", endpoint + "?" + urlencode(query))
            assert reply.status == 200 and reply.body == GIF
        server.run("ingest", "--once")
        with server.session() as session:
            assert dict(counted(session)[0]) == {first.id: 1}
            assert session.scalars(select(AccessEvent)).one().legacy is True
        # The key stays out of Apache's own logs.
        assert APP_KEY not in server.logs()
    finally:
        server.stop()
