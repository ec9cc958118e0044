"""Telling senders: each recipient's first likely-human open, notifications, and email preferences.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TO_NOTIFY = "first_human_at IS NOT NULL AND notified_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("first_human_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("notified_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_recipients_to_notify", ["first_human_at"], sqlite_where=sa.text(TO_NOTIFY),
                           postgresql_where=sa.text(TO_NOTIFY))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("notify_by_email", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("notification_address", sa.String(length=254), server_default="", nullable=False))
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("sender_emailed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["email_id"], ["emails.id"], name=op.f("fk_notifications_email_id_emails"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"],
                                name=op.f("fk_notifications_recipient_id_recipients"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("recipient_id", name=op.f("uq_notifications_recipient_id")),
    )
    op.create_index("ix_notifications_user_unread", "notifications", ["user_id", "read_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_user_unread", table_name="notifications")
    op.drop_table("notifications")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("sender_emailed_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("notification_address")
        batch.drop_column("notify_by_email")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_index("ix_recipients_to_notify")
        batch.drop_column("notified_at")
        batch.drop_column("first_human_at")
