"""Privacy: do-not-track on contacts and leads, and whether each recipient's message is tracked.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("contacts", "leads"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("do_not_track", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("tracked", sa.Boolean(), server_default=sa.true(), nullable=False))
    # Email composed with tracking off went without the image: say so of each of its recipients.
    op.execute("UPDATE recipients SET tracked = false WHERE email_id IN (SELECT id FROM emails WHERE NOT tracking)")


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("tracked")
    for table in ("leads", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("do_not_track")
