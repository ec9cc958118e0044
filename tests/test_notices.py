"""Notices after a redirect ("Created contact …"): shown once to the user who did it, on the page it
was made for, for a few minutes; a signed link cannot carry one user's words onto another's page."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import webtest

from coretrack.http import NOTICE_MAX_AGE, sign_notice

# A contact name a staff user chose, worded to look like a message from coretrack.
BAIT = "Lovelace. Your password has expired: call IT on +1 555 0100"


def notice_on(response) -> str | None:
    found = response.html.find(class_="notice")
    return found.get_text(strip=True) if found else None


def create_contact(client, last_name=BAIT):
    form = client.get("/contacts/new").forms["record-form"]
    form["first_name"] = "Ada"
    form["last_name"] = last_name
    return form.submit(status=303)


def signed_link(redirect) -> tuple[str, dict[str, str]]:
    """The path a redirect goes to, and its query arguments."""
    location = urlsplit(redirect.headers["Location"])
    return location.path, {key: values[0] for key, values in parse_qs(location.query).items()}


def test_the_user_who_acted_sees_the_notice_on_the_page_it_was_made_for(staff):
    page = create_contact(staff).follow()
    assert notice_on(page) == f"Created contact Ada {BAIT}."


def test_a_notice_link_made_for_one_user_shows_nothing_to_another(staff, admin):
    path, args = signed_link(create_contact(staff))
    assert notice_on(admin.get(path, args, status=200)) is None


def test_a_notice_link_shows_nothing_on_another_page(staff):
    path, args = signed_link(create_contact(staff))
    for other in ("/emails", "/contacts", path + "/edit", "/reports/emails"):
        assert notice_on(staff.get(other, args, status=200)) is None, other
    assert notice_on(staff.get(path, args)) == f"Created contact Ada {BAIT}."


def test_a_notice_expires_after_a_few_minutes(staff):
    path, _ = signed_link(create_contact(staff))
    text = f"Created contact Ada {BAIT}."

    def shown(age: float) -> str | None:
        return notice_on(staff.get(path, {"notice": text, "ns": sign_notice(
            staff.app.secret, "sam", path, text, now=time.time() - age)}))

    assert NOTICE_MAX_AGE <= 15 * 60
    assert shown(5) == text
    assert shown(NOTICE_MAX_AGE - 30) == text
    assert shown(NOTICE_MAX_AGE + 30) is None
    assert shown(-120) is None  # issued in the future: not ours


@pytest.mark.parametrize("ns", ["", "x", "1.", ".abc", "\u00b2.abc", "9" * 5000 + ".abc", "1.\u00e9"])
def test_a_malformed_signature_shows_nothing_and_is_no_error(staff, ns):
    page = staff.get("/emails", {"notice": "<b>forged</b>", "ns": ns}, status=200)
    assert notice_on(page) is None and "forged" not in page.text


def test_a_changed_text_shows_nothing(staff):
    path, args = signed_link(create_contact(staff))
    assert notice_on(staff.get(path, {**args, "notice": args["notice"] + " Call us."})) is None


def test_notices_work_under_a_prefix(app, users):
    staff = webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam", "SCRIPT_NAME": "/crm"})
    redirect = create_contact(staff, "Lovelace")
    path, args = signed_link(redirect)
    assert path.startswith("/crm/contacts/")
    assert notice_on(staff.get(path.removeprefix("/crm"), args)) == "Created contact Ada Lovelace."
