"""Each user's preferences (time zone, empty: the install's; email signature) and scheduled email.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), server_default="", nullable=False))
        batch.add_column(sa.Column("signature_html", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("send_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("send_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("signature_html")
        batch.drop_column("time_zone")
