"""Consent-aware sending: whether an email's unmeasured messages carry its anonymous image (decided
when its delivery starts); templates whose use asks for tracking consent

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("anonymous_image", sa.Boolean(), nullable=True))
    with op.batch_alter_table("email_templates") as batch:
        batch.add_column(sa.Column("asks_consent", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("email_templates") as batch:
        batch.drop_column("asks_consent")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("anonymous_image")
