"""The configuration editor's settings: typed, validated, audited, secrets encrypted.

Values live as text in the ``settings`` table; a key with no row has its
default (some defaults come from the environment, e.g. CORETRACK_SMTP_URL).
``tracking_disabled`` is stored as ``true``/``false`` because the image
endpoint's SQL reads it directly.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import localtime, secretbox
from .config import Config, SmtpServer
from .delivery_reports import sendgrid
from .delivery_reports.mail_reports import SoftBounceRule
from .models import Setting, SettingChange
from .people import consent, unsubscribe
from .sending import dkim_signing
from .setting_definitions import BY_KEY, DEFINITIONS, FlagKey, NumberKey, SettingDef, TextKey, Value
from .tracking import corebos_images, tokens
from .validation import ValidationError, clean_address, clean_header_text, clean_mail_text, web_address, whole_number

MASK = "••••••"
# The stored password belongs to one login: this server, reached this way, as this user.  Kept when any
# of these change, it would go to a host of the editor's choosing, or in clear after a switch to "none".
SMTP_LOGIN = ("smtp_host", "smtp_port", "smtp_security", "smtp_username")
LOGINS = {"smtp_password": SMTP_LOGIN,
          "bounce_imap_password": ("bounce_imap_host", "bounce_imap_port", "bounce_imap_security",
                                   "bounce_imap_username")}
# Return paths are <local part>+<token>@domain, and a local part has at most 64 characters.
_BOUNCE_LOCAL_PART = 64 - 1 - tokens.TOKEN_LENGTH
# The SendGrid preset's server: while it is chosen these values hold whatever the form says.
SENDGRID_RELAY = {"smtp_host": "smtp.sendgrid.net", "smtp_port": "587", "smtp_security": "starttls",
                  "smtp_username": "apikey"}


def percent_text(value: str) -> str:
    """A share typed as a percentage (``2``, ``0.1``, ``0,1 %``) in its stored form, or ValueError."""
    text = value.removesuffix("%").strip().replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError("enter a percentage such as 2 or 0.1") from None
    if not number.is_finite() or not 0 <= number <= 100 or number != round(number, 2):
        raise ValueError("enter a percentage from 0 to 100, with at most two decimals")
    return f"{number.normalize():f}"


class SettingsService:
    def __init__(self, session: Session, config: Config):
        self.session = session
        self.config = config

    def defaults(self) -> dict[str, str]:
        smtp = SmtpServer.from_url(self.config.smtp_url) if self.config.smtp_url else SmtpServer("127.0.0.1", 25)
        return {
            "tracking_disabled": "false",
            "tracking_policy": consent.EVERYONE,
            "anonymous_minimum": "10",
            "soft_bounce_limit": "3",
            "soft_bounce_days": "7",
            "guardrail_bounce_percent": "2",
            "guardrail_complaint_percent": "0.1",
            "guardrail_minimum": "1000",
            "corebos_app_key": "",
            "corebos_tracking": "true",
            "ip_storage": "truncated",
            "retention_days": "",
            "smtp_preset": "custom",
            "smtp_host": smtp.host,
            "smtp_port": str(smtp.port),
            "smtp_security": smtp.security,
            "smtp_username": smtp.username,
            "smtp_password": secretbox.encrypt(self.config.secret_key(), smtp.password) if smtp.password else "",
            "smtp_connections": "1",
            "from_address": "crm@localhost",
            "from_name": "coretrack",
            "own_from_domains": "",
            "own_from_staff": "true",
            "unsubscribe_footer": unsubscribe.DEFAULT_FOOTER,
            "public_url": self.config.public_url,
            "page_size": "25",
            "time_zone": localtime.DEFAULT_ZONE,
            "sendgrid_webhook_key": "",
            "bounce_address": "",
            "bounce_imap_host": "",
            "bounce_imap_port": "993",
            "bounce_imap_security": "tls",
            "bounce_imap_username": "",
            "bounce_imap_password": "",
            "bounce_imap_folder": "INBOX",
            "dkim_enabled": "false",
            "dkim_domain": "",
            "dkim_selector": "coretrack",
            "dkim_private_key": "",
        }

    def stored(self) -> dict[str, str]:
        defaults = self.defaults()
        rows = {row.key: row.value for row in self.session.scalars(select(Setting))}
        values = {**defaults, **rows}
        if "smtp_password" not in rows and any(values[key] != defaults[key] for key in SMTP_LOGIN):
            values["smtp_password"] = ""  # CORETRACK_SMTP_URL's password is for CORETRACK_SMTP_URL's server
        return values

    @overload
    def get(self, key: FlagKey) -> bool: ...
    @overload
    def get(self, key: NumberKey) -> int: ...
    @overload
    def get(self, key: TextKey) -> str: ...

    def get(self, key: str) -> Value:
        """The typed value of one setting (bool, int or str; secrets decrypted)."""
        return self._typed(BY_KEY[key], self.stored()[key])

    def all(self) -> dict[str, Value]:
        stored = self.stored()
        return {d.key: self._typed(d, stored[d.key]) for d in DEFINITIONS}

    def smtp_server(self) -> SmtpServer:
        stored = self.stored()
        return SmtpServer(host=stored["smtp_host"], port=int(stored["smtp_port"]), security=stored["smtp_security"],
                          username=stored["smtp_username"], password=self._decrypted(stored["smtp_password"]))

    def bounce_mailbox(self) -> SmtpServer | None:
        """The bounce mailbox's IMAP login (host, port, security, user, password), or None when unset."""
        stored = self.stored()
        if not stored["bounce_imap_host"]:
            return None
        return SmtpServer(host=stored["bounce_imap_host"], port=int(stored["bounce_imap_port"]),
                          security=stored["bounce_imap_security"], username=stored["bounce_imap_username"],
                          password=self._decrypted(stored["bounce_imap_password"]))

    def dkim_signer(self, from_address: str = "") -> dkim_signing.Signer | None:
        """What signs mail from ``from_address`` (by default the install's), or None while DKIM signing
        is off (or has no key).  It signs for the signing domain when the From address is at it or
        under it, else for the From address's own domain (a user sending as themselves), so that
        the signature aligns with the From for DMARC."""
        stored = self.stored()
        key = self._decrypted(stored["dkim_private_key"])
        if stored["dkim_enabled"] != "true" or not key:
            return None
        domain = self.dkim_domain(stored)
        own = from_address.rpartition("@")[2].lower()
        if own and own != domain and not own.endswith(f".{domain}"):
            domain = own
        return dkim_signing.Signer(stored["dkim_selector"], domain, key)

    def dkim_domain(self, stored: Mapping[str, str] | None = None) -> str:
        """The signing domain: the setting, else the From address's domain."""
        stored = stored or self.stored()
        return stored["dkim_domain"] or stored["from_address"].rpartition("@")[2].lower()

    def store_generated(self, key: str, value: str, user_name: str) -> SettingChange:
        """Keep a secret coretrack made (a DKIM key), encrypted, with an audit row that shows only the mask."""
        old = self.stored()[key]
        self.session.merge(Setting(key=key, value=self._secret_text(BY_KEY[key], value)))
        change = SettingChange(user_name=user_name, key=key, old_value=MASK if old else "", new_value=MASK)
        self.session.add(change)
        self.session.commit()
        return change

    def soft_bounce_rule(self) -> SoftBounceRule:
        """When soft bounces suppress an address (delivery_reports/mail_reports.py)."""
        return SoftBounceRule(self.get("soft_bounce_limit"), self.get("soft_bounce_days"))

    def retention_days(self) -> int | None:
        """How many days access events are kept (retention.purge), or None: forever."""
        raw = self.get("retention_days")
        return int(raw) if raw else None

    @property
    def tracking_enabled(self) -> bool:
        return not self.get("tracking_disabled")

    @property
    def consent_required(self) -> bool:
        """Whether only people who granted consent have their reading measured (consent.CONSENTED)."""
        return self.get("tracking_policy") == consent.CONSENTED

    def _typed(self, definition: SettingDef, raw: str) -> Value:
        if definition.kind == "bool":
            return raw == "true"
        if definition.kind == "int":
            return int(raw)
        if definition.kind == "secret" and not definition.one_way:
            return self._decrypted(raw)
        return raw

    def _decrypted(self, raw: str) -> str:
        return secretbox.decrypt(self.config.secret_key(), raw) if raw else ""

    def has_secret(self, key: str) -> bool:
        return bool(self.stored()[key])

    def form_values(self) -> dict[str, str]:
        """Every field's text for the editor, in one query; secrets blank (see ``has_secret``)."""
        stored = self.stored()
        return {d.key: "" if d.kind == "secret" else stored[d.key] for d in DEFINITIONS}

    def _clean(self, definition: SettingDef, submitted: str | None) -> str:
        """The stored text form of a submitted value, or ValueError with a message for the form."""
        if definition.one_way:
            # A key pasted from a config file: spaces around it are not part of it.
            return clean_header_text((submitted or "").strip(), field=definition.label.lower(),
                                     max_length=corebos_images.MAX_KEY_LENGTH, required=False)
        if definition.kind == "secret":
            # Kept exactly as typed: spaces can be part of a password.
            clean_header_text(submitted or "", field=definition.label.lower(), max_length=500, required=False)
            return submitted or ""
        value = (submitted or "").strip()
        if definition.kind == "bool":
            return "true" if value in ("on", "true", "1", "yes") else "false"
        if definition.kind == "int":
            return str(whole_number(value, definition.minimum, definition.maximum))
        if definition.kind == "optional_days":  # empty: no limit
            return str(whole_number(value, definition.minimum, definition.maximum)) if value else ""
        if definition.kind == "percent":
            return percent_text(value)
        if definition.kind == "choice":
            if value not in dict(definition.choices):
                raise ValueError("choose one of the options")
            return value
        if definition.kind == "address":
            return clean_address(value)
        if definition.kind == "optional_address":  # the bounce address
            if value and len(clean_address(value).rpartition("@")[0]) > _BOUNCE_LOCAL_PART:
                raise ValueError(f"the part before @ may have at most {_BOUNCE_LOCAL_PART} characters: "
                                 "+ and a token of 45 go after it, and servers refuse more than 64")
            return clean_address(value) if value else ""
        if definition.kind == "domain_list":  # the domains users may send from as themselves
            names = [name for name in value.replace(",", " ").split() if name]
            return ", ".join(dict.fromkeys(dkim_signing.check_name(name, "domain") for name in names))
        if definition.kind == "dns_name":  # a DKIM selector or signing domain
            if not value and definition.key == "dkim_domain":
                return ""
            return dkim_signing.check_name(value, definition.label.lower())
        if definition.kind == "ec_public_key":
            value = "".join(value.split())  # pasted keys may carry line breaks
            if value:
                sendgrid.verification_key(value)  # ValueError saying what is wrong
            return value
        if definition.kind == "url":
            parts = web_address(value)
            # The URL goes into every tracking image link: no spaces, credentials, query or fragment.
            if (parts is None or "@" in parts.netloc or parts.query or parts.fragment or len(value) > 200
                    or any(char.isspace() or not char.isprintable() for char in value)):
                raise ValueError("enter an http:// or https:// address such as https://crm.example.com/crm, "
                                 "without spaces, ? or #")
            return value.rstrip("/")
        # The From name goes into every message's From header.
        clean = clean_mail_text if definition.key == "from_name" else clean_header_text
        return clean(value, field=definition.label.lower(), max_length=500 if definition.key == "unsubscribe_footer"
                     else 200, required=definition.key == "smtp_host")

    def update(self, submitted: Mapping[str, str | None], user_name: str,
               remove: Collection[str] = ()) -> list[SettingChange]:
        """Validate the submitted fields, then save every change with an audit row, or nothing at all.

        A form must submit unchecked boxes as "false": absent keys are left alone.  ``remove`` names
        secrets to delete; the SMTP password is also deleted when its login changes (SMTP_LOGIN) and
        no new one is submitted.
        """
        stored = self.stored()
        errors: dict[str, str] = {}
        cleaned: dict[str, str] = {}
        for definition in DEFINITIONS:
            if definition.key not in submitted:
                continue  # callers send what they change; the editor form sends every field
            if definition.kind == "secret" and not (submitted.get(definition.key) or "").strip():
                continue  # empty password field: keep the stored one
            if definition.generated:
                errors[definition.key] = "made by coretrack, never typed: use its own button"
                continue
            try:
                cleaned[definition.key] = self._clean(definition, submitted.get(definition.key))
            except ValueError as exc:
                errors[definition.key] = str(exc)
        for key in remove:
            if key in cleaned:
                errors[key] = "type a new password or remove the stored one, not both"
        if "dkim_private_key" in remove:
            cleaned["dkim_enabled"] = "false"  # no key left to sign with
        elif cleaned.get("dkim_enabled") == "true" and not stored["dkim_private_key"]:
            errors["dkim_enabled"] = "generate a DKIM key first (below), then publish its record"
        if errors:
            raise ValidationError(errors)
        if cleaned.get("smtp_preset", stored["smtp_preset"]) == "sendgrid":
            cleaned.update(SENDGRID_RELAY)
        for secret_key, login in LOGINS.items():
            login_changed = any(key in cleaned and cleaned[key] != stored[key] for key in login)
            if secret_key not in cleaned and login_changed:
                cleaned[secret_key] = ""
        cleaned.update({key: "" for key in remove})
        changes = []
        for key, new in cleaned.items():
            definition = BY_KEY[key]
            old = stored[key]
            if definition.kind == "secret":
                if not new:  # removed (a submitted empty field keeps it, and never gets here)
                    if not old:
                        continue
                    new_stored, audit_old, audit_new = "", MASK, ""
                elif old and self._secret_is(definition, old, new):
                    continue
                else:
                    new_stored, audit_old, audit_new = self._secret_text(definition, new), MASK if old else "", MASK
            else:
                if old == new:
                    continue
                new_stored, audit_old, audit_new = new, old, new
            self.session.merge(Setting(key=key, value=new_stored))
            change = SettingChange(user_name=user_name, key=key, old_value=audit_old, new_value=audit_new)
            self.session.add(change)
            changes.append(change)
        self.session.commit()
        return changes

    def _secret_text(self, definition: SettingDef, value: str) -> str:
        """What a secret setting keeps of ``value``."""
        secret = self.config.secret_key()
        return corebos_images.key_digest(secret, value) if definition.one_way else secretbox.encrypt(secret, value)

    def _secret_is(self, definition: SettingDef, stored: str, value: str) -> bool:
        """Whether the stored text of a secret setting keeps ``value``."""
        if definition.one_way:
            return hmac.compare_digest(stored, self._secret_text(definition, value))
        return self._decrypted(stored) == value

    def history(self, limit: int = 50) -> list[SettingChange]:
        return list(
            self.session.scalars(
                select(SettingChange).order_by(SettingChange.at.desc(), SettingChange.id.desc()).limit(limit)
            )
        )
