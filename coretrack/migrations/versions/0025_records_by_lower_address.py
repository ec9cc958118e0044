"""Records are found by their address letter case aside: an index on lower(email) of contacts,
leads and accounts (opt-outs and Do not track are looked up so at every batch of every send)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

TABLES = ("contacts", "leads", "accounts")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_email_lower", table, [sa.text("lower(email)")], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_email_lower", table_name=table)
