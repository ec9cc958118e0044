"""When and why a contact, account or lead opted out of email.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("accounts", "contacts", "leads")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("email_opt_out_at", sa.DateTime(), nullable=True))
            batch.add_column(sa.Column("email_opt_out_reason", sa.String(length=200), server_default="",
                                       nullable=False))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("email_opt_out_reason")
            batch.drop_column("email_opt_out_at")
