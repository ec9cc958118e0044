"""The JSON API: same identity rules as the pages, JSON errors with a clear message and a 4xx status."""

from __future__ import annotations

import pytest

from coretrack.models import Email


def test_anonymous_api_requests_get_a_json_401(anon):
    response = anon.get("/api/emails", status=401)
    assert response.content_type == "application/json"
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")
    assert response.json["status"] == 401


def test_sending_requires_a_json_body(staff, db):
    response = staff.post("/api/emails", {"to": "a@example.test", "subject": "s", "html": "<p>x</p>"}, status=400)
    assert "application/json" in response.json["error"]
    assert db.query(Email).count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"subject": "s", "html": "<p>x</p>"}, "to"),
        ({"to": ["not an address"], "subject": "s", "html": "<p>x</p>"}, "to"),
        ({"to": ["a@example.test"], "subject": "", "html": "<p>x</p>"}, "subject"),
        ({"to": ["a@example.test"], "subject": "s\r\nBcc: victim@example.test", "html": "<p>x</p>"}, "subject"),
        ({"to": ["a@example.test"], "subject": "s", "html": ""}, "html"),
        ({"to": ["contact:999"], "subject": "s", "html": "<p>x</p>"}, "to"),
        ({"to": "a@example.test", "subject": 5, "html": "<p>x</p>"}, "subject"),
        ({"to": [1, 2], "subject": "s", "html": "<p>x</p>"}, "to"),
    ],
)
def test_bad_sends_are_refused_field_by_field_and_save_nothing(staff, db, body, field):
    response = staff.post_json("/api/emails", body, status=400)
    assert field in response.json["fields"]
    assert response.json["error"]
    assert db.query(Email).count() == 0


def test_a_body_that_is_not_an_object_is_refused(staff):
    response = staff.post("/api/emails", "[1, 2]", content_type="application/json", status=400)
    assert "JSON object" in response.json["error"]


def test_list_and_detail_of_sent_emails(staff, smtp_settings):
    sent = staff.post_json("/api/emails", {"to": "a@example.test, b@example.test", "cc": ["c@example.test"],
                                           "subject": "Hello", "html": "<p>x</p>"}, status=201).json
    listed = staff.get("/api/emails").json
    assert listed["total"] == 1 and listed["emails"][0]["id"] == sent["id"]
    assert listed["emails"][0]["recipients"] == 3
    detail = staff.get(f"/api/emails/{sent['id']}").json
    assert [(r["address"], r["kind"], r["status"]) for r in detail["recipient_list"]] == [
        ("a@example.test", "to", "sent"), ("b@example.test", "to", "sent"), ("c@example.test", "cc", "sent")]
    assert detail["sender"] == "sam"


def test_list_filters_are_validated(staff):
    response = staff.get("/api/emails?from=yesterday", status=400)
    assert "from" in response.json["fields"]
    backwards = staff.get("/api/emails?from=2024-02-01&to=2024-01-31", status=400).json
    assert backwards["fields"] == {"to": "the end of the range is before its start"}
    assert staff.get("/api/emails?status=sent&sender=nobody").json["total"] == 0


def test_missing_things_are_json_404s(staff):
    assert staff.get("/api/emails/12345", status=404).json["error"] == "no email 12345"
    assert staff.get("/api/records/contact/77/emails", status=404).json["status"] == 404
    staff.get("/api/records/planet/1/emails", status=404)
