"""What the configuration editor holds: each setting's key, label, help, kind and group
(``DEFINITIONS``, in the editor's order) and the typed key names ``SettingsService.get`` accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import localtime
from .people import consent

# Connections to the mail server a worker may open at once; servers limit them per client.
MAX_SMTP_CONNECTIONS = 10

# The keys by the type of their value, so that get() is typed for each.
FlagKey = Literal["tracking_disabled", "corebos_tracking", "dkim_enabled", "own_from_staff"]
NumberKey = Literal["smtp_port", "smtp_connections", "page_size", "bounce_imap_port", "anonymous_minimum",
                    "soft_bounce_limit", "soft_bounce_days", "guardrail_minimum"]
TextKey = Literal["tracking_policy", "ip_storage", "smtp_preset", "smtp_host", "smtp_security", "smtp_username",
                  "smtp_password", "from_address", "from_name", "public_url", "sendgrid_webhook_key", "bounce_address",
                  "bounce_imap_host", "bounce_imap_security", "bounce_imap_username", "bounce_imap_password",
                  "bounce_imap_folder", "corebos_app_key", "time_zone", "unsubscribe_footer", "retention_days",
                  "dkim_domain", "dkim_selector", "dkim_private_key", "own_from_domains",
                  "guardrail_bounce_percent", "guardrail_complaint_percent"]
Value = bool | int | str


@dataclass(frozen=True)
class SettingDef:
    key: str
    label: str
    help: str
    kind: str  # bool | int | optional_days | text | choice | secret | address | url | dns_name | domain_list | percent
    group: str
    choices: tuple[tuple[str, str], ...] = ()
    minimum: int = 0  # for kind int
    maximum: int = 2**31 - 1
    # For kind secret: kept as a digest (corebos_images.key_digest) that hits are compared with, not
    # encrypted: nothing needs it in clear again.
    one_way: bool = False
    clear_help: str = ""  # for kind secret: what removing it does
    # For kind secret: made by coretrack (its own form), never typed: the editor has no field for it.
    generated: bool = False


DEFINITIONS: tuple[SettingDef, ...] = (
    SettingDef(
        "tracking_disabled", "Disable Email Statistics Tracking",
        "When on, no tracking image is added to new email, and images in email already sent still load "
        "but count nothing.", "bool", "Tracking",
    ),
    SettingDef(
        "tracking_policy", "Whose reading is measured",
        "While tracking is on. Everyone: each recipient's opens and clicks are recorded unless they refused "
        "or withdrew; in the EU this needs each person's prior consent (ePrivacy Art. 5(3)), which you must "
        "collect and prove yourself. Only people who consented: only recipients who granted it, with the "
        "proof kept here, get a tracking image and tracked links; the others' messages carry nothing that "
        "can single them out, and the email's overall open rate is measured anonymously.", "choice",
        "Tracking", choices=((consent.EVERYONE, "Everyone (unless they refused or withdrew)"),
                             (consent.CONSENTED, "Only people who consented")),
    ),
    SettingDef(
        "anonymous_minimum", "Fewest unmeasured recipients for an anonymous open rate",
        "An email measures its overall open rate anonymously (one image shared by all whose reading is "
        "not measured) only when at least this many such recipients share it; with fewer, their messages "
        "carry no image at all, since a load could point at one of a handful of people.", "int", "Tracking",
        minimum=2, maximum=1_000_000,
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
        "daily task or 'coretrack purge'; the counts on recipients stay. The raw bounce and complaint reports "
        "kept as evidence are emptied after as many days (their class and reason stay), and the webhooks' "
        "events and their deliveries deleted. Empty: kept forever.",
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
    SettingDef("own_from_domains", "Domains users may send from",
               "Send as me: a user whose own address (on their Account page) is at one of these domains, "
               "separated by commas, may send from their own name and address instead of the From address "
               "above, which stays the default; replies then go to them. Empty: everyone sends from the From "
               "address. With DKIM on, publish the key's record under each of these domains too.",
               "domain_list", "Outgoing mail"),
    SettingDef("own_from_staff", "Staff may send from their own address",
               "Off: only administrators may send as themselves, at the domains above.", "bool", "Outgoing mail"),
    SettingDef("unsubscribe_footer", "Unsubscribe footer",
               "The line every message ends with, before its recipient's unsubscribe link (HTML and text). "
               "The link opens a page that opts the address out of email after one click.", "text",
               "Outgoing mail"),
    SettingDef("dkim_enabled", "Sign outgoing mail with DKIM",
               "Every message coretrack hands to the mail server carries a DKIM signature made with the key "
               "below, covering its From, To, Subject, Date, Message-ID, MIME and unsubscribe headers. Turn it "
               "on once the record below is published: the Deliverability check says when it is.", "bool",
               "Mail authentication"),
    SettingDef("dkim_domain", "Signing domain",
               "The d= of each signature, where the record is published. Empty: the From address's domain. "
               "For DMARC it must be the From address's domain or a parent of it.", "dns_name",
               "Mail authentication"),
    SettingDef("dkim_selector", "Selector",
               "The s= of each signature: the record is published at <selector>._domainkey.<signing domain>. "
               "A new name for a new key lets the old record stay until mail signed with it has arrived.",
               "dns_name", "Mail authentication"),
    SettingDef("dkim_private_key", "DKIM key",
               "Made by 'Generate a new DKIM key' below, stored encrypted and never shown.", "secret",
               "Mail authentication", generated=True,
               clear_help="Messages then go unsigned, and signing is turned off."),
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
    SettingDef("soft_bounce_limit", "Soft bounces before suppressing",
               "An address whose messages soft-bounce (a temporary failure, a full mailbox) this many times "
               "within the days below is suppressed as 'repeated soft bounces', from the bounce mailbox and "
               "SendGrid alike. 0: soft bounces never suppress. A hard bounce suppresses at once.", "int",
               "Bounces", minimum=0, maximum=100),
    SettingDef("soft_bounce_days", "Within (days)", "The period the soft bounces above are counted in.", "int",
               "Bounces", minimum=1, maximum=365),
    SettingDef("guardrail_bounce_percent", "Pause a mass send at hard bounces of (%)",
               "While a mass send goes out, it is paused when this share of the messages handed over hard-bounced "
               "(the address does not exist). Mailbox providers treat a high bounce rate as a sign of a bought or "
               "stale list. 0: never paused for bounces.", "percent", "Guardrails"),
    SettingDef("guardrail_complaint_percent", "Pause a mass send at spam complaints of (%)",
               "…or when this share of the delivered messages was reported as spam. Gmail asks bulk senders to "
               "stay under 0.1% and blocks them at 0.3%. 0: never paused for complaints.", "percent", "Guardrails"),
    SettingDef("guardrail_minimum", "Judge a mass send once this many are delivered",
               "Below it a handful of bounces would be a large share: the rates above are judged only from this "
               "many delivered messages on.", "int", "Guardrails", minimum=1, maximum=1_000_000),
)
BY_KEY = {definition.key: definition for definition in DEFINITIONS}
