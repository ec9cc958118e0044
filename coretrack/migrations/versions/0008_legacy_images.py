"""coreBOS images: the imported recipients' pairs, and events marked legacy.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("corebos_crmid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("corebos_mailid", sa.Integer(), nullable=True))
        batch.create_index("ix_recipients_corebos_pair", ["corebos_mailid", "corebos_crmid"], unique=True)
    with op.batch_alter_table("access_events") as batch:
        batch.add_column(sa.Column("legacy", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("access_events") as batch:
        batch.drop_column("legacy")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_index("ix_recipients_corebos_pair")
        batch.drop_column("corebos_mailid")
        batch.drop_column("corebos_crmid")
