"""The schema, as SQLAlchemy 2.0 typed declarative models.

All times are naive UTC.  Changes to this file go with an Alembic migration
in ``coretrack/migrations/versions`` (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def utc_iso(value: datetime) -> str:
    """A stored time (naive UTC) as the API and exports write it: ISO 8601 with a Z."""
    return value.isoformat() + "Z"


class Base(DeclarativeBase):
    # Named constraints, so migrations can alter them on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


ROLES = ("admin", "staff")
RECIPIENT_KINDS = ("to", "cc", "bcc")
RECORD_TYPES = ("contact", "account", "lead")
# A recipient goes pending -> sending -> sent | failed (failed -> pending on a retry); skipped
# (opted out) and cancelled (before it was sent) are final.  An email's status sums up its
# recipients' (sending.refresh_status).
RecipientStatus = Literal["pending", "sending", "sent", "failed", "skipped", "cancelled"]
EmailStatus = Literal["queued", "sending", "sent", "partial", "failed", "cancelled"]
RECIPIENT_STATUSES: tuple[RecipientStatus, ...] = get_args(RecipientStatus)
EMAIL_STATUSES: tuple[EmailStatus, ...] = get_args(EmailStatus)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="staff")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # An IANA zone name (localtime.zone_names); empty: the install's, from the configuration editor.
    time_zone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Added to the email they write unless they untick it (sanitize.clean_html'd when saved).
    signature_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Notifications by email too (one per email sent, at its first likely-human open), to this address.
    notify_by_email: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    notification_address: Mapped[str] = mapped_column(String(254), default="", server_default="")
    # Their name and address as email may show them: the $users-...$ merge fields (mergefields.py).
    first_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    last_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    website: Mapped[str] = mapped_column(String(200), default="")
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in step with its address's opt-out (suppression.py), which is what sending asks.
    email_opt_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    email_opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Its crmid in the coreBOS install it was imported from (corebos.py): a re-run skips it.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    contacts: Mapped[list[Contact]] = relationship(back_populates="account")

    record_type = "account"

    @property
    def display_name(self) -> str:
        return self.name


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), index=True)
    email: Mapped[str] = mapped_column(String(254), default="", index=True)
    phone: Mapped[str] = mapped_column(String(64), default="")
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in step with its address's opt-out (suppression.py), which is what sending asks.
    email_opt_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    email_opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # No tracking image (nor rewritten links) in email to them; still sent and counted as sent.
    do_not_track: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Its crmid in the coreBOS install it was imported from (corebos.py).
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    account: Mapped[Account | None] = relationship(back_populates="contacts")

    record_type = "contact"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Lead(Base):
    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), index=True)
    company: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="", index=True)
    phone: Mapped[str] = mapped_column(String(64), default="")
    email_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    # Kept in step with its address's opt-out (suppression.py), which is what sending asks.
    email_opt_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    email_opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # No tracking image (nor rewritten links) in email to them; still sent and counted as sent.
    do_not_track: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Its crmid in the coreBOS install it was imported from (corebos.py).
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    record_type = "lead"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


Record = Contact | Account | Lead
RECORD_MODELS: dict[str, type[Record]] = {
    "contact": Contact,
    "account": Account,
    "lead": Lead,
}


class Email(Base):
    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(998))
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text, default="")
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    from_address: Mapped[str] = mapped_column(String(254))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    reply_to: Mapped[str] = mapped_column(String(254), default="")
    # queued -> sending -> sent | partial | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    tracking: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # Not sent before this time (a scheduled email: queued until then, cancellable until it starts).
    send_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When its sender was emailed about its first likely-human open (at most once per email).
    sender_emailed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Its activityid in the coreBOS install it was imported from (corebos.py): the images' mailid.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)

    sender: Mapped[User] = relationship()
    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="email", order_by="Recipient.id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="email", order_by="Attachment.id", cascade="all, delete-orphan"
    )
    links: Mapped[list[EmailLink]] = relationship(order_by="EmailLink.position", cascade="all, delete-orphan")


class StoredFile:
    """The columns of a file kept under CORETRACK_HOME/attachments (an email's or a template's)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    # The name on disk: generated, never the uploaded name.
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)


class Attachment(StoredFile, Base):
    __tablename__ = "attachments"

    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), index=True)

    email: Mapped[Email] = relationship(back_populates="attachments")


class EmailTemplate(Base):
    """A saved email to start from: subject and bodies with merge fields, and attachments."""

    __tablename__ = "email_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str] = mapped_column(String(998))
    html_body: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text, default="")
    # Who may change it (besides admins); None once that user is gone.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    owner: Mapped[User | None] = relationship()
    attachments: Mapped[list[TemplateAttachment]] = relationship(
        back_populates="template", cascade="all, delete-orphan", order_by="TemplateAttachment.id")


class EmailDraft(Base):
    """An email being written, saved to finish later: the compose form's fields as its owner left
    them (attachments are chosen again when it is sent)."""

    __tablename__ = "email_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(998), default="")
    # The form's fields as JSON (drafts.FIELDS): whatever was typed, valid or not yet.
    fields: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TemplateAttachment(StoredFile, Base):
    __tablename__ = "template_attachments"

    template_id: Mapped[int] = mapped_column(ForeignKey("email_templates.id", ondelete="CASCADE"), index=True)

    template: Mapped[EmailTemplate] = relationship(back_populates="attachments")


# Reports aggregate recipients per email and per record from these indexes alone (covering: no table reads).
_STATS = ("status", "access_count", "last_access", "human_opens", "first_human_at", "click_count")


_TO_NOTIFY = "first_human_at IS NOT NULL AND notified_at IS NULL"


class Recipient(Base):
    __tablename__ = "recipients"
    __table_args__ = (
        Index("ix_recipients_email_stats", "email_id", *_STATS),
        *(Index(f"ix_recipients_{record}_stats", f"{record}_id", "email_id", *_STATS)
          for record in ("contact", "account", "lead")),
        Index("ix_recipients_corebos_pair", "corebos_mailid", "corebos_crmid", unique=True),
        # The recipients whose sender has yet to hear of their first likely-human open: few at a time.
        Index("ix_recipients_to_notify", "first_human_at", sqlite_where=text(_TO_NOTIFY),
              postgresql_where=text(_TO_NOTIFY)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(3), default="to")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    # Signed, random: see coretrack.tokens.  Unique so a hit finds one row by index.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # Whether this recipient's message carries the tracking image (and rewritten links), decided once
    # when the email is composed (sending.is_tracked); sent either way.
    tracked: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # pending -> sending -> sent | failed; pending -> cancelled; skipped (opted out) never leaves.
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reply: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Every load of the image (proxies and scanners too), and the likely-human ones among them
    # (tracking.classify): the two counts shown side by side.
    access_count: Mapped[int] = mapped_column(Integer, default=0)
    human_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_access: Mapped[datetime | None] = mapped_column(DateTime)
    last_access: Mapped[datetime | None] = mapped_column(DateTime)
    # What the receiving side said after the hand-over (deliveries.py): "" (nothing heard),
    # processed, deferred, delivered, bounced, dropped; a later, weaker event never undoes a
    # stronger one (DELIVERY_PRECEDENCE).  The detail is the status code and the server's words.
    delivery_status: Mapped[str] = mapped_column(String(16), default="", server_default="")
    delivery_detail: Mapped[str] = mapped_column(String(500), default="", server_default="")
    delivery_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The first likely-human load of the image (tracking.count_hits): the recipient opened it.
    first_human_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the sender was told of it (notifications.py); set without telling for their own copies.
    notified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A recipient imported from coreBOS: its (crmid, mailid) pair, which that system's images name.
    corebos_crmid: Mapped[int | None] = mapped_column(Integer)
    corebos_mailid: Mapped[int | None] = mapped_column(Integer)
    # Clicks on the email's rewritten links (clicks.py), scanners' included (each click_events row has its verdict).
    click_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The person was erased (erasure.py): the row stays for the counts, but their old image, links
    # and provider reports count and keep nothing more (tracking.count_hits, clicks.record,
    # sendgrid.apply_events, bounces.apply).
    erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    email: Mapped[Email] = relationship(back_populates="recipients")
    contact: Mapped[Contact | None] = relationship()
    account: Mapped[Account | None] = relationship()
    lead: Mapped[Lead | None] = relationship()
    events: Mapped[list[AccessEvent]] = relationship(order_by="AccessEvent.id", viewonly=True)

    @property
    def record(self) -> Contact | Account | Lead | None:
        return self.contact or self.account or self.lead


class AccessEvent(Base):
    __tablename__ = "access_events"
    # (at, recipient_id, hits, verdict): the Activity report sums accesses and likely-human opens and
    # counts distinct recipients by time range from it.
    __table_args__ = (
        Index("ix_access_events_recipient_at", "recipient_id", "at"),
        Index("ix_access_events_at_recipient", "at", "recipient_id", "hits", "verdict"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    # human | mail_proxy | privacy_prefetch | scanner, and why (tracking.classify; "" for human).
    verdict: Mapped[str] = mapped_column(String(16), default="human")
    reason: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # One id per hit, made when the image is requested: a hit replayed from the spool after its
    # first attempt did commit (the reply was lost) is recognised and not counted again.
    hit_id: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)
    # How many loads this row stands for: 1, or more when loads past the per-minute bound of one
    # recipient were folded into it (the event table's growth is bounded, the number kept).
    hits: Mapped[int] = mapped_column(default=1, server_default="1")
    # Made by an image in email coreBOS sent (coretrack.legacy): its identity is not signed.
    legacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class EmailLink(Base):
    """One link of an email's HTML that is rewritten to the click endpoint (clicks.py), in document
    order: a click redirects to this stored URL only."""

    __tablename__ = "email_links"
    __table_args__ = (UniqueConstraint("email_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    # Clicks on it by every recipient, scanners' included.
    click_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ClickEvent(Base):
    __tablename__ = "click_events"
    __table_args__ = (Index("ix_click_events_recipient_at", "recipient_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    link_id: Mapped[int] = mapped_column(ForeignKey("email_links.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    # human | scanner (clicks.SCANNER_RULE)
    verdict: Mapped[str] = mapped_column(String(16), default="human")
    # How many clicks this row stands for: 1, or more when clicks past the per-minute bound of one
    # recipient were folded into it (clicks.record, as loads are: tracking.fold_target).
    hits: Mapped[int] = mapped_column(default=1, server_default="1")


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SettingChange(Base):
    __tablename__ = "setting_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str] = mapped_column(Text)
    new_value: Mapped[str] = mapped_column(Text)


class Notification(Base):
    """A sender told that a recipient opened their email (or, later, clicked in it)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_unread", "user_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(String(8), default="open")  # open (click: when clicks are tracked)
    at: Mapped[datetime] = mapped_column(DateTime)  # when the recipient opened it
    read_at: Mapped[datetime | None] = mapped_column(DateTime)

    email: Mapped[Email] = relationship()
    recipient: Mapped[Recipient] = relationship()


class Erasure(Base):
    """A person erased (erasure.py): who did it, when, how much went, and an HMAC of the address
    (never the address itself)."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    address_digest: Mapped[str] = mapped_column(String(64), index=True)
    records: Mapped[int] = mapped_column(Integer)
    recipients: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)


class Address(Base):
    """What one email address decided, whichever contacts, accounts and leads hold it today
    (suppression.py): its opt-out of email, with when, from where and why.  Every send asks it;
    address_history keeps each change."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(254), unique=True)  # lower-case
    # None: email may go to it.
    opted_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    opt_out_source: Mapped[str] = mapped_column(String(32), default="", server_default="")
    opt_out_reason: Mapped[str] = mapped_column(String(200), default="", server_default="")


class AddressEvent(Base):
    """One change of what an address decided (append-only): opted out or the opt-out lifted, from
    which source and why, and the staff user who did it."""

    __tablename__ = "address_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    event: Mapped[str] = mapped_column(String(32))  # suppression.OPTED_OUT | suppression.LIFTED
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200), default="", server_default="")
    user_name: Mapped[str] = mapped_column(String(64), default="", server_default="")  # staff actions


class HitLogPosition(Base):
    """How far one front-end's ingester has counted its Apache hit log: the file and the byte
    after its last counted line.  Written in the transaction that counts those lines, so a line
    is never counted twice nor skipped, whatever stops the ingester."""

    __tablename__ = "hit_log_positions"

    node: Mapped[str] = mapped_column(String(255), primary_key=True)
    file: Mapped[str] = mapped_column(String(255))
    byte_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # The front-end whose ingester counts under this name (its data directory's front-end.id):
    # another front-end given the same name is refused instead of moving this one's place.
    owner: Mapped[str | None] = mapped_column(String(64), unique=True)


class DeliveryEvent(Base):
    """One event a mail provider reported (a SendGrid webhook event), kept by the provider's own
    event id so that a delivery repeated by the provider is applied once."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    # None: the event named no recipient of this install (another sender on the same account).
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime)
    # The status code and reason, or a click's URL.
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
