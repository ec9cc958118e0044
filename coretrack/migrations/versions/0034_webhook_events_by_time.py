"""Retention purges the webhooks' outbox by time: webhook events indexed by it

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 16:30:00
"""

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_events_at", "webhook_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_at", "webhook_events")
