"""coreBOS import: coreBOS's users kept as (disabled) users with their id and a note, saved-only
emails kept as drafts with their id, and accesses whose time of day an old coreBOS lost (in the
Activity report's covering index: its hours leave them out)

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("users", "email_drafts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("corebos_id", sa.Integer(), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_corebos_id", ["corebos_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("note", sa.String(length=300), server_default="", nullable=False))
    with op.batch_alter_table("access_events") as batch:
        batch.add_column(sa.Column("time_known", sa.Boolean(), server_default=sa.true(), nullable=False))
        # The Activity report's covering index, with it: its hours leave such accesses out.
        batch.drop_index("ix_access_events_at_recipient")
        batch.create_index("ix_access_events_at_recipient", ["at", "recipient_id", "hits", "verdict", "time_known"])


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch:
        batch.drop_index("ix_access_events_at_recipient")
        batch.create_index("ix_access_events_at_recipient", ["at", "recipient_id", "hits", "verdict"])
        batch.drop_column("time_known")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("note")
    for table in ("email_drafts", "users"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_corebos_id", type_="unique")
            batch.drop_column("corebos_id")
