"""The configuration editor (admins only): one form built from setting_definitions.DEFINITIONS, and its audit trail."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..delivery_reports import bounces
from ..http import AppRequest, admin_only
from ..people import consent
from ..reports import deliverability
from ..sending import dkim_signing, dns_check
from ..setting_definitions import BY_KEY, DEFINITIONS, SettingDef
from ..settings import MASK, SettingsService
from ..validation import ValidationError

# Installed wheels carry the documentation inside the package; a checkout has it at the top.
PACKAGE_DIR = Path(__file__).parent.parent
PRIVACY_DOCS = [PACKAGE_DIR / "docs" / "privacy.md", PACKAGE_DIR.parent / "docs" / "privacy.md"]
# The section the Tracking group links: from its heading to the next one of its level.
CONSENT_SECTION = re.compile(r"^## Consent\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)

INPUT_TYPES = {"int": "number", "secret": "password", "address": "email", "optional_address": "email", "url": "url",
               "text": "text", "ec_public_key": "text",
               "optional_days": "number", "dns_name": "text", "domain_list": "text", "percent": "text"}


@dataclass(frozen=True)
class DkimRecord:
    """The TXT record that publishes the install's DKIM key: its name, its text, and the text as a zone file has it."""

    name: str
    text: str
    zone: str

    @classmethod
    def of(cls, service: SettingsService) -> DkimRecord | None:
        key = service.get("dkim_private_key")
        if not key:
            return None
        text = dkim_signing.dns_record(key)
        return cls(dkim_signing.record_name(service.get("dkim_selector"), service.dkim_domain()), text,
                   dkim_signing.zone_strings(text))


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    user_name: str
    label: str
    old: str
    new: str


def shown(definition: SettingDef | None, raw: str) -> str:
    """A stored value as the audit trail shows it; a secret is only ever the mask."""
    if definition is None:
        return raw  # a setting that no longer exists
    if definition.kind == "secret":
        return MASK if raw else ""
    if definition.kind == "bool":
        return "on" if raw == "true" else "off"
    if definition.kind == "choice":
        return dict(definition.choices).get(raw, raw)
    return raw


def submitted_settings(form: Mapping[str, str]) -> dict[str, str]:
    """The form as SettingsService.update wants it: an unchecked box is absent from a post, so it is "false"."""
    submitted = {}
    for definition in DEFINITIONS:
        if definition.generated:
            continue  # made by its own form, never typed
        if definition.kind == "bool":
            submitted[definition.key] = "true" if form.get(definition.key) in ("on", "true") else "false"
        elif definition.key in form:
            submitted[definition.key] = form[definition.key]
    return submitted


def removed_secrets(form: Mapping[str, str]) -> list[str]:
    """The secrets whose "Remove the stored password" box is ticked."""
    return [d.key for d in DEFINITIONS if d.kind == "secret" and form.get(f"{d.key}_clear") in ("on", "true")]


def render_editor(request: AppRequest, service: SettingsService, values: dict[str, str],
                  errors: dict[str, str], status: int = 200) -> Response:
    groups: dict[str, list[SettingDef]] = {}
    for definition in DEFINITIONS:
        groups.setdefault(definition.group, []).append(definition)
    history = [
        AuditRow(change.at, change.user_name, BY_KEY[change.key].label if change.key in BY_KEY else change.key,
                 shown(BY_KEY.get(change.key), change.old_value), shown(BY_KEY.get(change.key), change.new_value))
        for change in service.history()
    ]
    stored_secrets = {d.key for d in DEFINITIONS if d.kind == "secret" and service.has_secret(d.key)}
    return request.render(
        "settings/edit.html", status=status, section="settings", groups=groups, values=values, errors=errors,
        stored_secrets=stored_secrets, input_types=INPUT_TYPES, history=history, dkim_record=DkimRecord.of(service),
    )


@admin_only
def settings_page(request: AppRequest) -> Response:
    service = request.app.settings(request.db)
    return render_editor(request, service, service.form_values(), {})


@admin_only
def save_settings(request: AppRequest) -> Response:
    service = request.app.settings(request.db)
    submitted = submitted_settings(request.form)
    remove = removed_secrets(request.form)
    try:
        changes = service.update(submitted, request.user.name, remove=remove)
    except ValidationError as exc:
        # Show what was typed, so it can be corrected; never a password.
        values = {**service.form_values(), **submitted}
        values.update({d.key: "" for d in DEFINITIONS if d.kind == "secret"})
        return render_editor(request, service, values, exc.errors, status=400)
    count = len(changes)
    notice = f"Saved: {count} setting{'' if count == 1 else 's'} changed." if count else "Saved: nothing changed."
    if any(change.key == "smtp_password" and not change.new_value for change in changes):
        notice += (" The stored mail server password was removed." if remove else
                   " The stored mail server password was removed because the server, port, security or user "
                   "name changed: type it again if the server needs one.")
    return request.redirect_to("settings.settings_page", notice=notice)


@admin_only
def generate_dkim_key(request: AppRequest) -> Response:
    """A new DKIM key in place of the stored one (kept encrypted, never shown); the page then shows its record."""
    service = request.app.settings(request.db)
    replaced = service.has_secret("dkim_private_key")
    service.store_generated("dkim_private_key", dkim_signing.new_key(), request.user.name)
    notice = "A new DKIM key was generated: publish the record shown under Mail authentication."
    if replaced and service.get("dkim_enabled"):
        notice += (" Messages are signed with it from now on, so they fail DKIM until the new record is published "
                   "(a new selector lets the old record stay meanwhile).")
    return request.redirect_to("settings.settings_page", notice=notice)


@admin_only
def deliverability_page(request: AppRequest) -> Response:
    """The mail DNS check (SPF, DKIM, DMARC, read from the DNS now) and the bulk-sender checklist."""
    service = request.app.settings(request.db)
    setup = dns_check.MailSetup.of(service)
    findings = dns_check.check(request.app.config, setup)
    return request.render("settings/deliverability.html", section="settings", setup=setup,
                          checklist=dns_check.checklist(findings), dkim_record=DkimRecord.of(service),
                          deliverability=deliverability.install_panel(request.db, service),
                          install_days=deliverability.INSTALL_DAYS)


def consent_section() -> str | None:
    """The Consent section of docs/privacy.md as written (Markdown), or None if it cannot be found."""
    for path in PRIVACY_DOCS:
        if path.is_file():
            found = CONSENT_SECTION.search(path.read_text(encoding="utf-8"))
            return found.group(0).strip() if found else None
    return None


@admin_only
def tracking_policies(request: AppRequest) -> Response:
    """The documentation of the tracking policies and the law they follow, which the Tracking group
    links to: staff read it in the app, from the same text as docs/privacy.md#consent."""
    section = consent_section()
    if section is None:
        raise NotFound("The privacy documentation (docs/privacy.md) is not installed.")
    return request.render("settings/policies.html", section="settings", text=section)


@admin_only
def check_bounces(request: AppRequest) -> Response:
    """Reads the bounce mailbox now, within this request (each step with its server at most
    bounces.CHECK_TIMEOUT), and says what it found: an admin setting up the mailbox sees at once
    whether it works, without waiting for the worker."""
    try:
        report = bounces.read_mailbox(request.app.Session, request.app.config, timeout=bounces.CHECK_TIMEOUT)
    except bounces.BounceError as exc:
        return request.redirect_to("settings.settings_page", notice=f"Bounce mailbox not read: {exc}.")
    return request.redirect_to("settings.settings_page", notice=f"Bounce mailbox checked: {report}.")


def _consent_text_editor(request: AppRequest, body: str, error: str = "", status: int = 200) -> Response:
    return request.render("settings/consent_text.html", status=status, section="settings", body=body, error=error,
                          versions=consent.text_versions(request.db))


@admin_only
def consent_text_page(request: AppRequest) -> Response:
    """The text the public consent page shows, to write a new version of; every version listed."""
    return _consent_text_editor(request, consent.current_text(request.db).body)


@admin_only
def save_consent_text(request: AppRequest) -> Response:
    """A new version of the consent text; the older ones stay, each consent naming the one it was given to."""
    body = request.form.get("body", "")
    current = consent.current_text(request.db).version
    try:
        text = consent.new_text(request.db, body, request.user.name)
    except consent.ConsentError as exc:
        request.db.rollback()
        return _consent_text_editor(request, body, str(exc), 400)
    notice = (f"Saved as version {text.version}: the consent page shows it from now on." if text.version != current
              else "Nothing changed: that is the current text.")
    return request.redirect_to("settings.consent_text_page", notice=notice)


rules = [
    Rule("/settings", endpoint="settings.settings_page", methods=["GET"]),
    Rule("/settings", endpoint="settings.save_settings", methods=["POST"]),
    Rule("/settings/bounces/check", endpoint="settings.check_bounces", methods=["POST"]),
    Rule("/settings/dkim-key", endpoint="settings.generate_dkim_key", methods=["POST"]),
    Rule("/settings/deliverability", endpoint="settings.deliverability_page", methods=["GET"]),
    Rule("/settings/consent-text", endpoint="settings.consent_text_page", methods=["GET"]),
    Rule("/settings/consent-text", endpoint="settings.save_consent_text", methods=["POST"]),
    Rule("/settings/tracking-policies", endpoint="settings.tracking_policies", methods=["GET"]),
]
