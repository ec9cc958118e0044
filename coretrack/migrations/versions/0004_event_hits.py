"""How many loads an access event stands for: one recipient's loads past a per-minute bound are
folded into that minute's last event instead of each adding a row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default: existing rows each stood for one load; no table rebuild on SQLite.
    with op.batch_alter_table("access_events") as batch_op:
        batch_op.add_column(sa.Column("hits", sa.Integer(), server_default="1", nullable=False))
        # The Activity report sums hits by time range: the index still covers it.
        batch_op.drop_index("ix_access_events_at_recipient")
        batch_op.create_index("ix_access_events_at_recipient", ["at", "recipient_id", "hits"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch_op:
        batch_op.drop_index("ix_access_events_at_recipient")
        batch_op.create_index("ix_access_events_at_recipient", ["at", "recipient_id"], unique=False)
        batch_op.drop_column("hits")
