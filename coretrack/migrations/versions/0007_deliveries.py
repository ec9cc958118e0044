"""What the receiving side said of each recipient (SendGrid events, bounces), and the provider events applied.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("delivery_status", sa.String(length=16), server_default="", nullable=False))
        batch.add_column(sa.Column("delivery_detail", sa.String(length=500), server_default="", nullable=False))
        batch.add_column(sa.Column("delivery_at", sa.DateTime(), nullable=True))
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"],
                                name=op.f("fk_delivery_events_recipient_id_recipients"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_delivery_events_event_id")),
    )
    op.create_index(op.f("ix_delivery_events_recipient_id"), "delivery_events", ["recipient_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_events_recipient_id"), table_name="delivery_events")
    op.drop_table("delivery_events")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("delivery_at")
        batch.drop_column("delivery_detail")
        batch.drop_column("delivery_status")
