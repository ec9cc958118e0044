"""Clicks: each email's rewritten links, click events, and click counts per recipient and per link.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("click_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "email_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("click_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["email_id"], ["emails.id"], name=op.f("fk_email_links_email_id_emails"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_links")),
        sa.UniqueConstraint("email_id", "position", name=op.f("uq_email_links_email_id")),
    )
    op.create_table(
        "click_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["email_links.id"], name=op.f("fk_click_events_link_id_email_links"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"],
                                name=op.f("fk_click_events_recipient_id_recipients"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_click_events")),
    )
    op.create_index("ix_click_events_recipient_at", "click_events", ["recipient_id", "at"])
    op.create_index(op.f("ix_click_events_link_id"), "click_events", ["link_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_click_events_link_id"), table_name="click_events")
    op.drop_index("ix_click_events_recipient_at", table_name="click_events")
    op.drop_table("click_events")
    op.drop_table("email_links")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("click_count")
