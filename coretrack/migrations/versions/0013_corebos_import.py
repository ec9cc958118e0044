"""coreBOS import: each imported contact, account, lead and email keeps its id in coreBOS.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 11:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = ("accounts", "contacts", "leads", "emails")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("corebos_id", sa.Integer(), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_corebos_id", ["corebos_id"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_corebos_id", type_="unique")
            batch.drop_column("corebos_id")
