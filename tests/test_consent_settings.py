"""The tracking policies in the configuration editor: the three of them side by side, each with what it
means legally, a link to the documentation's Consent section, and every switch audited."""

from __future__ import annotations

from sqlalchemy import select

from coretrack.models import SettingChange
from coretrack.settings import SettingsService


def test_the_tracking_group_shows_the_three_policies_with_what_each_means_legally(admin):
    page = admin.get("/settings")
    policies = page.html.find(id="tracking-policies")
    assert policies.find_parent("fieldset").legend.get_text(strip=True) == "Tracking"
    said = {item["id"]: " ".join(item.get_text().split()) for item in policies.select("li")}
    assert said["policy-nobody"].startswith('Nobody ("Disable Email Statistics Tracking" on)')
    assert "ePrivacy Directive Art. 5(3)" in said["policy-nobody"]
    assert said["policy-everyone"].startswith("Everyone") and "prior consent" in said["policy-everyone"]
    assert said["policy-consented"].startswith("Only people who consented")
    assert "counted anonymously" in said["policy-consented"]
    # The switches keep their names: nobody is still "Disable Email Statistics Tracking".
    assert page.html.find("label", attrs={"for": "f-tracking_disabled"}).get_text(strip=True) == \
        "Disable Email Statistics Tracking"
    assert [option["value"] for option in page.html.select("#f-tracking_policy option")] == ["everyone", "consented"]
    assert page.html.find(id="f-anonymous_minimum")["min"] == "2"


def test_the_policies_link_to_the_documentations_consent_section(admin):
    link = admin.get("/settings").html.select_one("#tracking-policies a")
    assert link["href"] == "/settings/tracking-policies"
    section = admin.get(link["href"]).html.find(id="consent").get_text()
    assert section.startswith("## Consent")
    for cited in ("Guidelines 2/2023 on the Technical Scope of Art. 5(3) of the ePrivacy Directive",
                  "adopted 7 October 2024", "recommendation on tracking pixels in emails", "June–July 2025",
                  "What stays your responsibility"):
        assert cited in " ".join(section.split()), cited
    assert "## Opt-outs" not in section  # the Consent section only


def test_the_policies_documentation_is_for_admins_like_the_editor(staff):
    staff.get("/settings/tracking-policies", status=403)


def test_switching_the_policy_is_audited_like_every_setting(admin, app, db):
    form = admin.get("/settings").forms["settings-form"]
    form["tracking_policy"] = "consented"
    form["anonymous_minimum"] = "25"
    page = form.submit(status=303).follow()
    assert "2 settings changed" in page.html.find(class_="notice").get_text()
    db.expire_all()
    changes = {change.key: (change.user_name, change.old_value, change.new_value)
               for change in db.scalars(select(SettingChange))}
    assert changes == {"tracking_policy": ("admin", "everyone", "consented"),
                       "anonymous_minimum": ("admin", "10", "25")}
    assert SettingsService(db, app.config).consent_required
    rows = [" ".join(row.get_text(" ", strip=True).split())
            for row in page.html.select("#history ~ .table-wrap tbody tr")]
    assert any("admin Whose reading is measured Everyone (unless they refused or withdrew) → Only people who consented"
               in row for row in rows)
