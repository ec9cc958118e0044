"""The Activity report counts clicks per day or hour: click events by time, covering what it sums

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 15:30:00
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_click_events_at_recipient", "click_events", ["at", "recipient_id", "hits", "verdict"])


def downgrade() -> None:
    op.drop_index("ix_click_events_at_recipient", "click_events")
