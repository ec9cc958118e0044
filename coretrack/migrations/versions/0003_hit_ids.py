"""A per-hit id on access events: replaying the spool is exactly once hit by hit.

It replaces the spool_replays table (exactly once file by file), which could not recognise a hit
whose first attempt committed but whose reply was lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 07:04:26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("spool_replays")
    # A nullable column and a separate unique index: no table rebuild on SQLite.
    with op.batch_alter_table("access_events") as batch_op:
        batch_op.add_column(sa.Column("hit_id", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_access_events_hit_id"), ["hit_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_events_hit_id"))
        batch_op.drop_column("hit_id")
    op.create_table(
        "spool_replays",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("replayed_at", sa.DateTime(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_spool_replays")),
    )
