"""The configuration editor's settings: typed, validated, audited, secrets encrypted.

Values live as text in the ``settings`` table; a key with no row has its
default (some defaults come from the environment, e.g. CORETRACK_SMTP_URL).
``tracking_disabled`` is stored as ``true``/``false`` because the image
endpoint's SQL reads it directly.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal, overload

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import localtime, secretbox
from .config import Config, SmtpServer
from .delivery_reports import sendgrid
from .models import Setting, SettingChange
from .people import unsubscribe
from .tracking import corebos_images, tokens
from .validation import ValidationError, clean_address, clean_header_text, clean_mail_text, web_address, whole_number

MASK = "••••••"
# Connections to the mail server a worker may open at once; servers limit them per client.
MAX_SMTP_CONNECTIONS = 10

# The keys by the type of their value, so that get() is typed for each.
FlagKey = Literal["tracking_disabled", "corebos_tracking"]
NumberKey = Literal["smtp_port", "smtp_connections", "page_size", "bounce_imap_port"]
TextKey = Literal["ip_storage", "smtp_preset", "smtp_host", "smtp_security", "smtp_username", "smtp_password",
                  "from_address", "from_name", "public_url", "sendgrid_webhook_key", "bounce_address",
                  "bounce_imap_host", "bounce_imap_security", "bounce_imap_username", "bounce_imap_password",
                  "bounce_imap_folder", "corebos_app_key", "time_zone", "unsubscribe_footer", "retention_days"]
Value = bool | int | str


@dataclass(frozen=True)
class SettingDef:
    key: str
    label: str
    help: str
    kind: str  # bool | int | optional_days | text | choice | secret | address | url
    group: str
    choices: tuple[tuple[str, str], ...] = ()
    minimum: int = 0  # for kind int
    maximum: int = 2**31 - 1
    # For kind secret: kept as a digest (corebos_images.key_digest) that hits are compared with, not
    # encrypted: nothing needs it in clear again.
    one_way: bool = False
    clear_help: str = ""  # for kind secret: what removing it does


DEFINITIONS: tuple[SettingDef, ...] = (
    SettingDef(
        "tracking_disabled", "Disable Email Statistics Tracking",
        "When on, no tracking image is added to new email, and images in email already sent still load "
        "but count nothing.", "bool", "Tracking",
    ),
    SettingDef(
        "ip_storage", "Recipients' IP addresses",
        "What to keep of the address that loaded the image, for each access event.", "choice", "Tracking",
        choices=(("truncated", "Truncated (/24 for IPv4, /48 for IPv6)"), ("full", "Full address"),
                 ("none", "Do not store")),
    ),
    # At least 2 days: SendGrid repeats a webhook delivery for 24 hours, and its events recognise repeats.
    SettingDef(
        "retention_days", "Keep access events for (days)",
        "After this many days each image load's event (time, address, browser) is deleted by the worker's "
        "daily task or 'coretrack purge'; the counts on recipients stay. Empty: kept forever.",
        "optional_days", "Tracking", minimum=2, maximum=36500,
    ),
    SettingDef(
        "corebos_app_key", "coreBOS application key",
        "The application_unique_key of the coreBOS install this one replaces (its config.inc.php). With it, "
        "the images in email coreBOS sent count for the recipients imported from it. Those images are not "
        "signed: anyone who knows the key and a pair of coreBOS ids can add to that recipient's count. Stored "
        "as a one-way digest and never shown again.", "secret", "Tracking", one_way=True,
        clear_help="The images of email coreBOS sent then count nothing.",
    ),
    SettingDef(
        "corebos_tracking", "Count coreBOS images",
        "When off, images in email coreBOS sent still load but count nothing.", "bool", "Tracking",
    ),
    SettingDef("smtp_preset", "Server preset",
               "SendGrid fills in its SMTP relay (smtp.sendgrid.net, port 587, STARTTLS, user apikey: type an "
               "API key with the Mail Send permission as the password) and tags each message with its "
               "recipient for SendGrid's Event Webhook. Custom uses the fields below.", "choice", "Outgoing mail",
               choices=(("custom", "Custom server"), ("sendgrid", "SendGrid SMTP relay"))),
    SettingDef("smtp_host", "Outgoing mail server", "Host name or address of the SMTP server.", "text",
               "Outgoing mail"),
    SettingDef("smtp_port", "Port", "Usually 25 (none), 587 (STARTTLS) or 465 (TLS).", "int", "Outgoing mail",
               minimum=1, maximum=65535),
    SettingDef("smtp_security", "Security", "How to protect the connection to the server.", "choice",
               "Outgoing mail",
               choices=(("none", "None"), ("starttls", "STARTTLS"), ("tls", "TLS (implicit)"))),
    SettingDef("smtp_username", "User name", "Leave empty if the server needs no login.", "text",
               "Outgoing mail"),
    SettingDef("smtp_password", "Password",
               "Stored encrypted and never shown again. Leave empty to keep it. It is only ever sent to the "
               "server it was typed for: it is removed when the server, port, security or user name changes, "
               "unless you type it again in the same save.", "secret", "Outgoing mail",
               clear_help="For a server that needs no password; the user name stays."),
    SettingDef("smtp_connections", "Connections",
               "How many connections the send worker uses at once. 1 suits most servers; more send faster "
               "to a server that allows them. Each recipient still gets one message.", "int", "Outgoing mail",
               minimum=1, maximum=MAX_SMTP_CONNECTIONS),
    SettingDef("from_address", "From address", "The sender address of every email.", "address", "Outgoing mail"),
    SettingDef("from_name", "From name", "The sender name shown by mail clients.", "text", "Outgoing mail"),
    SettingDef("unsubscribe_footer", "Unsubscribe footer",
               "The line every message ends with, before its recipient's unsubscribe link (HTML and text). "
               "The link opens a page that opts the address out of email after one click.", "text",
               "Outgoing mail"),
    SettingDef("public_url", "Public URL",
               "The address recipients reach coretrack at, including any prefix such as /crm. "
               "Tracking image links start with it.", "url", "General"),
    SettingDef("time_zone", "Time zone",
               "The time zone pages, CSV files and charts show times in, for users who have not chosen "
               "their own (on their Account page). The JSON API always speaks UTC.", "choice", "General",
               choices=tuple((name, name) for name in localtime.zone_names())),
    SettingDef("page_size", "Rows per page", "How many rows lists show per page.", "int", "General",
               minimum=5, maximum=500),
    SettingDef("sendgrid_webhook_key", "SendGrid webhook verification key",
               "The public key SendGrid shows when the signed Event Webhook is enabled (base64). Events are "
               "accepted at /webhooks/sendgrid only when signed with it; empty refuses every event.",
               "ec_public_key", "SendGrid events"),
    SettingDef("bounce_address", "Bounce address",
               "Return path of every message, one per recipient (bounces+<token>@your domain). Leave empty to "
               "let bounces go to the From address. The mailbox below must receive mail for it.",
               "optional_address", "Bounces"),
    SettingDef("bounce_imap_host", "Bounce mailbox server",
               "IMAP server of the bounce address's mailbox; 'coretrack bounces' and the worker read it. "
               "Empty: bounces are not read.", "text", "Bounces"),
    SettingDef("bounce_imap_port", "IMAP port", "Usually 993 (TLS) or 143 (STARTTLS).", "int", "Bounces",
               minimum=1, maximum=65535),
    SettingDef("bounce_imap_security", "IMAP security", "How to protect the connection to the mailbox.", "choice",
               "Bounces", choices=(("tls", "TLS (implicit)"), ("starttls", "STARTTLS"), ("none", "None"))),
    SettingDef("bounce_imap_username", "IMAP user name", "The bounce mailbox's login.", "text", "Bounces"),
    SettingDef("bounce_imap_password", "IMAP password",
               "Stored encrypted and never shown again. Leave empty to keep it. It is removed when the server, "
               "port, security or user name changes, unless you type it again in the same save.", "secret",
               "Bounces"),
    SettingDef("bounce_imap_folder", "IMAP folder",
               "Where bounces arrive. Each one read is moved to the folder coretrack-processed.", "text", "Bounces"),
)
BY_KEY = {definition.key: definition for definition in DEFINITIONS}
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


class SettingsService:
    def __init__(self, session: Session, config: Config):
        self.session = session
        self.config = config

    def defaults(self) -> dict[str, str]:
        smtp = SmtpServer.from_url(self.config.smtp_url) if self.config.smtp_url else SmtpServer("127.0.0.1", 25)
        return {
            "tracking_disabled": "false",
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

    def retention_days(self) -> int | None:
        """How many days access events are kept (retention.purge), or None: forever."""
        raw = self.get("retention_days")
        return int(raw) if raw else None

    @property
    def tracking_enabled(self) -> bool:
        return not self.get("tracking_disabled")

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
            try:
                cleaned[definition.key] = self._clean(definition, submitted.get(definition.key))
            except ValueError as exc:
                errors[definition.key] = str(exc)
        for key in remove:
            if key in cleaned:
                errors[key] = "type a new password or remove the stored one, not both"
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
