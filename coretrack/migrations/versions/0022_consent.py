"""Consent to measuring a person's reading, bound to their address with its proof; the consent texts;
emails that ask for it; emails' anonymous totals

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 12:30:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# consent.DEFAULT_TEXT as this migration first wrote it: the first version of the consent text.
FIRST_TEXT = (
    "We would like to measure when you read the email we send you. Each message would carry a small "
    "image, and its links would pass through our server, so that we learn when you open it and which "
    "links you follow. We use this only to see which of our messages interest you, and to send fewer "
    "that do not.\n\n"
    "Nothing about your reading is measured unless you accept. You can withdraw at any time with the "
    "\"Stop measuring my reading\" link at the end of every message we measure: from then on nothing "
    "more is recorded, even for messages you already have, and you may also have what was measured "
    "deleted."
)


def upgrade() -> None:
    with op.batch_alter_table("addresses") as batch:
        batch.add_column(sa.Column("consent", sa.String(length=16), server_default="", nullable=False))
        batch.add_column(sa.Column("consent_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("emails") as batch:
        batch.add_column(sa.Column("asks_consent", sa.Boolean(), server_default=sa.false(), nullable=False))
    texts = op.create_table(
        "consent_texts",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("user_name", sa.String(length=64), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_consent_texts")),
    )
    op.create_table(
        "consent_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("means", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=200), server_default="", nullable=False),
        sa.Column("text_version", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), server_default="", nullable=False),
        sa.Column("user_agent", sa.String(length=512), server_default="", nullable=False),
        sa.Column("email_id", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(length=64), server_default="", nullable=False),
        sa.Column("measurements_deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["address_id"], ["addresses.id"],
                                name=op.f("fk_consent_history_address_id_addresses"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["email_id"], ["emails.id"],
                                name=op.f("fk_consent_history_email_id_emails"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["text_version"], ["consent_texts.version"],
                                name=op.f("fk_consent_history_text_version_consent_texts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_history")),
    )
    op.create_index("ix_consent_history_address_at", "consent_history", ["address_id", "at"], unique=False)
    op.create_table(
        "anonymous_totals",
        sa.Column("email_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("loads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("human_loads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clicks", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["email_id"], ["emails.id"],
                                name=op.f("fk_anonymous_totals_email_id_emails"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("email_id", "day", name=op.f("pk_anonymous_totals")),
    )
    op.bulk_insert(texts, [{"version": 1, "body": FIRST_TEXT, "created_at": datetime.now(UTC).replace(tzinfo=None),
                            "user_name": ""}])


def downgrade() -> None:
    op.drop_table("anonymous_totals")
    op.drop_index("ix_consent_history_address_at", table_name="consent_history")
    op.drop_table("consent_history")
    op.drop_table("consent_texts")
    with op.batch_alter_table("emails") as batch:
        batch.drop_column("asks_consent")
    with op.batch_alter_table("addresses") as batch:
        batch.drop_column("consent_at")
        batch.drop_column("consent")
