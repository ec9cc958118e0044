"""The reports' covering indexes hold whether each recipient's reading is measured

Every rate is a share of the measured recipients (recipients.tracked) and the Records report counts
only them: without the flag in the index each aggregated recipient row was read from the table too.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 13:00:00
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

OLD_STATS = ["status", "access_count", "last_access", "human_opens", "first_human_at", "click_count"]
STATS = [*OLD_STATS, "tracked"]
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
