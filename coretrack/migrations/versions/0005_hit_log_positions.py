"""Where each front-end's ingester stands in its Apache hit log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 22:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hit_log_positions",
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("byte_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_hit_log_positions")),
    )


def downgrade() -> None:
    op.drop_table("hit_log_positions")
