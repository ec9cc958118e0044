"""Erased recipients are marked, so their old links and images record nothing; click events fold
like access events (how many clicks a row stands for).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# erasure.ERASED_ADDRESS: what erasure has always put in place of the address.
ERASED_ADDRESS = "erased@erased.invalid"


def upgrade() -> None:
    # Server defaults: no table rebuild on SQLite, and existing rows are right as they are.
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("erased", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("click_events") as batch:
        batch.add_column(sa.Column("hits", sa.Integer(), server_default="1", nullable=False))
    # The people erased before this migration.
    op.execute(sa.text("UPDATE recipients SET erased = true WHERE address = :erased").bindparams(
        erased=ERASED_ADDRESS))


def downgrade() -> None:
    with op.batch_alter_table("click_events") as batch:
        batch.drop_column("hits")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("erased")
