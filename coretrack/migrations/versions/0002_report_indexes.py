"""covering indexes for the reports

Recipients are aggregated per email and per record from indexes that hold every column the reports
read; the single-column indexes they start with are dropped (the new ones serve the same lookups).
Access events get (at, recipient_id) for the Activity report's time ranges.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATS = ["status", "access_count", "last_access"]
RECORDS = ("contact", "account", "lead")


def upgrade() -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.create_index("ix_recipients_email_stats", ["email_id", *STATS], unique=False)
        for record in RECORDS:
            batch_op.create_index(f"ix_recipients_{record}_stats", [f"{record}_id", "email_id", *STATS], unique=False)
        for column in ("email", *RECORDS):
            batch_op.drop_index(f"ix_recipients_{column}_id")
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.create_index("ix_access_events_at_recipient", ["at", "recipient_id"], unique=False)
        batch_op.drop_index("ix_access_events_at")


def downgrade() -> None:
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.create_index("ix_access_events_at", ["at"], unique=False)
        batch_op.drop_index("ix_access_events_at_recipient")
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        for column in ("email", *RECORDS):
            batch_op.create_index(f"ix_recipients_{column}_id", [f"{column}_id"], unique=False)
        for record in RECORDS:
            batch_op.drop_index(f"ix_recipients_{record}_stats")
        batch_op.drop_index("ix_recipients_email_stats")
