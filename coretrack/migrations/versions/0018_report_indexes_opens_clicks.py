"""The reports' covering indexes hold the likely-human opens, first human open and clicks too

The reports read human_opens, first_human_at and click_count beside the counts 0002 indexed; without
them in the index every aggregated recipient row was read from the table as well.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 04:15:00
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OLD_STATS = ["status", "access_count", "last_access"]
STATS = [*OLD_STATS, "human_opens", "first_human_at", "click_count"]
RECORDS = ("contact", "account", "lead")


def _recreate(stats: list[str]) -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_recipients_email_stats")
        batch_op.create_index("ix_recipients_email_stats", ["email_id", *stats], unique=False)
        for record in RECORDS:
            batch_op.drop_index(f"ix_recipients_{record}_stats")
            batch_op.create_index(f"ix_recipients_{record}_stats", [f"{record}_id", "email_id", *stats], unique=False)


def upgrade() -> None:
    _recreate(STATS)


def downgrade() -> None:
    _recreate(OLD_STATS)
