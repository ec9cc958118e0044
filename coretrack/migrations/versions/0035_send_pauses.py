"""Guardrails: a mass send paused by its bounce or complaint rate (emails.paused_at), each pause with
its figures and how it ended (send_pauses), and notifications that name no recipient (a pause)

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07 16:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("paused_at", sa.DateTime(), nullable=True))
    op.create_table(
        "send_pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("hard_bounced", sa.Integer(), nullable=False),
        sa.Column("complained", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=64), server_default="", nullable=False),
        sa.Column("ended_as", sa.String(length=16), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["email_id"], ["emails.id"], name=op.f("fk_send_pauses_email_id_emails"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_pauses")),
    )
    op.create_index("ix_send_pauses_email_id", "send_pauses", ["email_id"], unique=False)
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("recipient_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE recipient_id IS NULL")
    with op.batch_alter_table("notifications") as batch:
        batch.alter_column("recipient_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_send_pauses_email_id", table_name="send_pauses")
    op.drop_table("send_pauses")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("paused_at")
