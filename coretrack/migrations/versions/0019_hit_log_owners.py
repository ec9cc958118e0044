"""Each hit-log position belongs to one front-end: the data directory whose ingester claimed it

Two front-ends that took the same node name (a forgotten CORETRACK_NODE, the same host name) moved
each other's position and removed each other's uncounted files.  A position now names its owner
(the random id in that front-end's data directory, front-end.id); an ingester of another front-end
refuses to count under it.  Positions from before this have none: the first ingester to start
claims its own.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hit_log_positions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_hit_log_positions_owner"), ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("hit_log_positions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_hit_log_positions_owner"), type_="unique")
        batch_op.drop_column("owner")
