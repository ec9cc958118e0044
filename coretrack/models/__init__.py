"""The schema, as SQLAlchemy 2.0 typed declarative models, one module a domain: base.py (the
declarative base, its constraint naming, times), users.py (users, settings and their audit,
notifications), records.py (accounts, and contacts and leads with their shared ``Person`` columns),
emails.py (emails, recipients, links, attachments, templates, drafts), events.py (image loads,
clicks, delivery reports, hit-log positions), addresses.py (opt-outs and consent by address, consent texts, erasures),
webhooks.py (outbound webhooks: endpoints, the outbox, deliveries).

All times are naive UTC.  Changes to the models go with an Alembic migration in
``coretrack/migrations/versions`` (tests/test_schema.py compares the two).

The one package that re-exports: every model is imported here, so that Alembic's metadata
(``Base.metadata``) holds every table and ``from coretrack.models import X`` works for each of them.
"""

from .addresses import Address, AddressEvent, ConsentEvent, ConsentText, Erasure
from .base import Base, utc_iso, utcnow
from .emails import (
    EMAIL_STATUSES,
    RECIPIENT_KINDS,
    RECIPIENT_STATUSES,
    AnonymousTotal,
    Attachment,
    Email,
    EmailDraft,
    EmailLink,
    EmailStatus,
    EmailTemplate,
    Recipient,
    RecipientStatus,
    SendPause,
    StoredFile,
    TemplateAttachment,
)
from .events import AccessEvent, ClickEvent, DeliveryEvent, HitLogPosition, MailReport
from .records import RECORD_MODELS, RECORD_TYPES, Account, Contact, Lead, Person, Record, Segment
from .users import ROLES, Notification, Setting, SettingChange, User
from .webhooks import WebhookDelivery, WebhookEndpoint, WebhookEvent

__all__ = [
    "EMAIL_STATUSES", "RECIPIENT_KINDS", "RECIPIENT_STATUSES", "RECORD_MODELS", "RECORD_TYPES", "ROLES",
    "AccessEvent", "Account", "Address", "AddressEvent", "AnonymousTotal", "Attachment", "Base", "ClickEvent",
    "ConsentEvent", "ConsentText", "Contact",
    "DeliveryEvent", "Email", "EmailDraft", "EmailLink", "EmailStatus", "EmailTemplate", "Erasure",
    "HitLogPosition", "Lead", "MailReport", "Notification", "Person", "Record", "Recipient", "RecipientStatus",
    "Segment", "SendPause", "Setting", "SettingChange", "StoredFile", "TemplateAttachment", "User", "WebhookDelivery",
    "WebhookEndpoint", "WebhookEvent", "utc_iso", "utcnow",
]
