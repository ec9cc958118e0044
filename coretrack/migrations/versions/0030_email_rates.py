"""Rates per email and clicks per link: each recipient's unsubscribe or complaint from this email
(opted_out_as), the email stats index covering it and the delivery status (the delivered and bounce
rates), and click events by link and recipient (the people who clicked each link)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

STATS = ["status", "access_count", "last_access", "human_opens", "first_human_at", "click_count", "tracked",
         "human_clicks"]


def _recreate_email_stats(columns: list[str]) -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_recipients_email_stats")
        batch_op.create_index("ix_recipients_email_stats", ["email_id", *columns], unique=False)


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("opted_out_as", sa.String(length=16), server_default="", nullable=False))
    _recreate_email_stats([*STATS, "delivery_status", "opted_out_as"])
    op.drop_index("ix_click_events_link_id", "click_events")
    op.create_index("ix_click_events_link_recipient", "click_events", ["link_id", "recipient_id", "verdict"])


def downgrade() -> None:
    op.drop_index("ix_click_events_link_recipient", "click_events")
    op.create_index("ix_click_events_link_id", "click_events", ["link_id"])
    _recreate_email_stats(STATS)
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("opted_out_as")
