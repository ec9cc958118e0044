"""The JSON API records a consent given elsewhere (a sign-up form) with its source, refuses one
without, and answers an address's consent with its history."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from coretrack.models import Address, ConsentEvent, utcnow
from coretrack.people import consent


def consent_events(db) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(ConsentEvent))


def test_a_consent_with_its_source_is_recorded_with_means_api_and_the_api_users_name(staff, db):
    answer = staff.post_json("/api/consent", {"address": "Ada@Example.test", "state": "granted",
                                              "source": "newsletter sign-up form, example.test/join",
                                              "at": "2026-03-01T11:15:00+01:00"}, status=201).json
    assert (answer["address"], answer["state"], answer["state_at"]) == (
        "ada@example.test", "granted", "2026-03-01T10:15:00Z")
    assert answer["history"][0]["means"] == "api"
    [event] = consent.history(db, "ada@example.test")
    assert (event.state, event.means, event.source, event.user_name, event.at) == (
        "granted", consent.API, "newsletter sign-up form, example.test/join", "sam", datetime(2026, 3, 1, 10, 15))


def test_a_consent_without_a_time_is_recorded_as_given_now(staff, db):
    staff.post_json("/api/consent", {"address": "ada@example.test", "state": "refused", "source": "fair stand"},
                    status=201)
    [event] = consent.history(db, "ada@example.test")
    assert event.state == "refused" and (utcnow() - event.at).total_seconds() < 60


@pytest.mark.parametrize(
    "body, field",
    [
        ({"address": "ada@example.test", "state": "granted"}, "source"),
        ({"address": "ada@example.test", "state": "granted", "source": "  "}, "source"),
        ({"address": "ada@example.test", "state": "granted", "source": "x" * 201}, "source"),
        ({"address": "ada@example.test", "state": "granted", "source": 5}, "source"),
        ({"address": "ada@example.test", "state": "maybe", "source": "form"}, "state"),
        ({"address": "ada@example.test", "source": "form"}, "state"),
        ({"address": "not an address", "state": "granted", "source": "form"}, "address"),
        ({"state": "granted", "source": "form"}, "address"),
        ({"address": ["ada@example.test"], "state": "granted", "source": "form"}, "address"),
        ({"address": "ada@example.test", "state": "granted", "source": "form", "at": "yesterday"}, "at"),
        ({"address": "ada@example.test", "state": "granted", "source": "form", "at": "2026-03-01T10:00"}, "at"),
        ({"address": "ada@example.test", "state": "granted", "source": "form", "at": 1772000000}, "at"),
        ({"address": "ada@example.test", "state": "granted", "source": "form",
          "at": "0001-01-01T00:00:00+01:00"}, "at"),
        ({"address": "ada@example.test", "state": "granted", "source": "form",
          "at": (utcnow() + timedelta(hours=1)).isoformat() + "Z"}, "at"),
    ],
)
def test_a_bad_consent_is_refused_naming_the_field_and_nothing_is_recorded(staff, db, body, field):
    answer = staff.post_json("/api/consent", body, status=400).json
    assert field in answer["fields"] and answer["error"] and answer["status"] == 400
    assert consent_events(db) == 0
    assert db.scalar(select(func.count()).select_from(Address)) == 0


def test_a_consent_must_be_posted_as_a_json_object(staff, db):
    staff.post("/api/consent", {"address": "ada@example.test", "state": "granted", "source": "form"}, status=400)
    staff.post("/api/consent", "[1]", content_type="application/json", status=400)
    assert consent_events(db) == 0


def test_strangers_can_neither_record_nor_read_a_consent(anon, db):
    anon.post_json("/api/consent", {"address": "ada@example.test", "state": "granted", "source": "form"}, status=401)
    anon.get("/api/consent?address=ada@example.test", status=401)
    assert consent_events(db) == 0


def test_an_addresss_consent_and_history_are_answered_newest_first(staff, db):
    for at, state in ((datetime(2026, 3, 1), "granted"), (datetime(2026, 4, 1), "withdrawn")):
        staff.post_json("/api/consent", {"address": "ada@example.test", "state": state, "source": "form",
                                         "at": at.isoformat() + "Z"}, status=201)
    answer = staff.get("/api/consent", {"address": "ADA@example.test"}).json
    assert (answer["state"], answer["state_at"]) == ("withdrawn", "2026-04-01T00:00:00Z")
    assert [(event["state"], event["at"], event["source"]) for event in answer["history"]] == [
        ("withdrawn", "2026-04-01T00:00:00Z", "form"), ("granted", "2026-03-01T00:00:00Z", "form")]


def test_an_address_never_stated_is_unknown_and_a_bad_one_is_refused(staff):
    assert staff.get("/api/consent", {"address": "grace@example.test"}).json == {
        "address": "grace@example.test", "state": "unknown", "state_at": None, "history": [], "consent_texts": []}
    assert "address" in staff.get("/api/consent", {"address": "nope"}, status=400).json["fields"]
    staff.get("/api/consent", status=400)
