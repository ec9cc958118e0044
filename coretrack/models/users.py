"""The users of coretrack, the install's settings and their audit, and the notifications a user gets."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow

if TYPE_CHECKING:
    from .emails import Email, Recipient


ROLES = ("admin", "staff")


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
    # Its user id in the coreBOS install it was imported from (corebos/owners.py), and why it is there.
    corebos_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    note: Mapped[str] = mapped_column(String(300), default="", server_default="")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


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
    # None for a pause (sending/guardrails.py): it is about the whole send, not one recipient.
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(String(8), default="open")  # open, click, or paused (a mass send)
    at: Mapped[datetime] = mapped_column(DateTime)  # when the recipient opened it (or the send was paused)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)

    email: Mapped[Email] = relationship()
    recipient: Mapped[Recipient | None] = relationship()
