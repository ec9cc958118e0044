"""Opens people can trust: each access event's reason, and each recipient's likely-human opens.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 11:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_events") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=64), server_default="", nullable=False))
        # The Activity report's covering index takes the verdict, for its likely-human opens.
        batch.drop_index("ix_access_events_at_recipient")
        batch.create_index("ix_access_events_at_recipient", ["at", "recipient_id", "hits", "verdict"])
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("human_opens", sa.Integer(), server_default="0", nullable=False))
    # Events kept their verdict already: the loads judged human become the recipient's human opens
    # (an event past the per-minute bound stands for its ``hits`` loads).
    op.execute("UPDATE recipients SET human_opens = (SELECT coalesce(sum(hits), 0) FROM access_events "
               "WHERE access_events.recipient_id = recipients.id AND verdict = 'human')")
    # Earlier machine verdicts came from the user agent alone.
    op.execute("UPDATE access_events SET reason = 'user agent' WHERE verdict <> 'human'")


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("human_opens")
    with op.batch_alter_table("access_events") as batch:
        batch.drop_index("ix_access_events_at_recipient")
        batch.create_index("ix_access_events_at_recipient", ["at", "recipient_id", "hits"])
        batch.drop_column("reason")
