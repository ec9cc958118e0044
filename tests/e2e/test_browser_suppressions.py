"""The suppression list in a real browser against coretrack under a real Apache: an admin searches
it, reads a complaint's evidence, and reinstates the address only with a reason and the confirmation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from coretrack.models import MailReport
from coretrack.people import suppression

pytestmark = [pytest.mark.browser]

# Beside the failure screenshots (tests/e2e/conftest.py): the acceptance's screenshots of the page.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ARF = ("From: <feedback@fbl.example.net>\r\nContent-Type: multipart/report; report-type=feedback-report; "
       "boundary=\"p\"\r\n\r\n--p\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
       "Reporting-MTA: dns; fbl.example.net\r\n\r\n--p--\r\n")


def test_an_admin_searches_the_list_and_reinstates_a_complaint_with_a_reason(apache, browser):
    with apache.session() as session:
        report = MailReport(kind="arf", at=datetime(2026, 12, 3, 11), status="abuse", bounce_class="",
                            detail="abuse report from fbl.example.net", raw=ARF)
        session.add(report)
        session.flush()
        suppression.opt_out(session, "carla@example.test", suppression.COMPLAINT_REPORT,
                            "complained: abuse report from fbl.example.net",
                            evidence=suppression.Evidence(report_id=report.id))
        suppression.opt_out(session, "gone@example.test", suppression.BOUNCE, "bounced: 5.1.1 user unknown")
        session.commit()
    admin = browser("admin", "admin")
    with admin.step("the list shows both, and the search finds one"):
        admin.open("/suppressions")
        assert admin.row("#suppressions", "gone@example.test")["Why"] == "Hard bounce"
        admin.fill("#f-q", "carla")
        admin.press("Search")
        assert admin.row("#suppressions", "carla@example.test")["Evidence"] == "ARF report (kept)"
        assert "gone@example.test" not in admin.find("#suppressions").text
        admin.screenshot(ARTIFACTS / "suppressions-search.png")

    with admin.step("the address's page shows the report as received"):
        admin.press("carla@example.test")
        assert admin.find("#category").text == "Complaint"
        admin.find("#raw-report summary").click()
        assert "Feedback-Type: abuse" in admin.find("#raw-report pre").text

    with admin.step("without a reason the browser asks for one; without the box the server refuses"):
        admin.press("Reinstate", navigates=False)
        assert admin.find("#f-reason").get_attribute("validationMessage")
        admin.fill("#f-reason", "he wrote that the report was a slip")
        admin.press("Reinstate")
        assert "tick the box to confirm" in admin.find("#reinstate-error").text
        assert admin.find("#f-reason").get_attribute("value") == "he wrote that the report was a slip"
        admin.screenshot(ARTIFACTS / "suppression-reinstate-refused.png")

    with admin.step("confirmed, the address is reinstated and the list no longer has it"):
        admin.find("#f-confirm").click()
        admin.press("Reinstate")
        assert "Reinstated carla@example.test (Complaint): email to it is sent again." in admin.text
        assert "carla@example.test" not in admin.find("#suppressions").text
        admin.screenshot(ARTIFACTS / "suppressions-reinstated.png")
    with apache.session() as session:
        assert suppression.suppressed(session, ["carla@example.test"]) == set()
        [lifted, _] = suppression.history(session, "carla@example.test")
        assert (lifted.event, lifted.user_name, lifted.reason) == (
            suppression.LIFTED, "admin", "he wrote that the report was a slip")


def test_staff_read_the_list_but_get_no_reinstate_form(apache, browser):
    with apache.session() as session:
        suppression.opt_out(session, "staffview@example.test", suppression.LINK, "unsubscribed")
        session.commit()
    sam = browser("sam", "sam")
    sam.open("/suppressions")
    sam.press("staffview@example.test")
    assert sam.find_all("#reinstate") == []
    assert sam.find_all("#suppression-import") == []
