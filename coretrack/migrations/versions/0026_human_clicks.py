"""Likely-human clicks beside all clicks: recipients' and links' human_clicks (counted from the click
events already kept), each click event's reason, and the reports' covering indexes with human_clicks

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 13:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

OLD_STATS = ["status", "access_count", "last_access", "human_opens", "first_human_at", "click_count", "tracked"]
STATS = [*OLD_STATS, "human_clicks"]
RECORDS = ("contact", "account", "lead")


def _recreate(stats: list[str]) -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_recipients_email_stats")
        batch_op.create_index("ix_recipients_email_stats", ["email_id", *stats], unique=False)
        for record in RECORDS:
            batch_op.drop_index(f"ix_recipients_{record}_stats")
            batch_op.create_index(f"ix_recipients_{record}_stats", [f"{record}_id", "email_id", *stats], unique=False)


def upgrade() -> None:
    for table in ("recipients", "email_links"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("human_clicks", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("click_events") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=64), server_default="", nullable=False))
    for table, key in (("recipients", "recipient_id"), ("email_links", "link_id")):
        op.execute(sa.text(
            f"UPDATE {table} SET human_clicks = (SELECT coalesce(sum(hits), 0) FROM click_events "  # noqa: S608
            f"WHERE click_events.{key} = {table}.id AND click_events.verdict = 'human')"))
    _recreate(STATS)


def downgrade() -> None:
    _recreate(OLD_STATS)
    with op.batch_alter_table("click_events") as batch:
        batch.drop_column("reason")
    for table in ("email_links", "recipients"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("human_clicks")
