"""Outbound webhooks (coretrack/webhooks/): the endpoints admins register, the outbox of events written in
the transaction of the change they report, and each event's delivery to each endpoint with its attempts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, false, true
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class WebhookEndpoint(Base):
    """A URL that gets the events it chose, signed with its secret (kept encrypted, secretbox.py)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The event types it gets, space-separated (webhooks/events.py:TYPES).
    events: Mapped[str] = mapped_column(String(400))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    secret: Mapped[str] = mapped_column(Text)
    # During a rotation the replaced secret signs too, until previous_until: receivers switch at leisure.
    previous_secret: Mapped[str] = mapped_column(Text, default="", server_default="")
    previous_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user_name: Mapped[str] = mapped_column(String(64), default="", server_default="")


class WebhookEvent(Base):
    """One event in the outbox: written with the change it reports (never lost, never sent for a change
    rolled back); the worker then makes its deliveries (fanned_out)."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What receivers deduplicate by: the same in every attempt and every "send again".
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime, index=True)  # retention purges by it
    data: Mapped[str] = mapped_column(Text)  # JSON
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)


class WebhookDelivery(Base):
    """One event to one endpoint: pending (next_attempt_at), delivered, or dead after the last retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The receiver's HTTP status (None: no answer), and what went wrong, without the secret or the body.
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(300), default="", server_default="")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
