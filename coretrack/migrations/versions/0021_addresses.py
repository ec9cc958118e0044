"""Opt-outs bind to the address: addresses (its opt-out now) and address_history (every change)

Until now an opt-out was a flag on the contacts, accounts and leads that held the address that
day, so a record made later with the same address got mail again.  The addresses of today's
opted-out records are carried over with their kept when and why (the earliest, where several
records hold one address), each with one history row.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 05:00:00
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

RECORD_TABLES = ("contacts", "leads", "accounts")
CARRIED_OVER = "records"  # suppression.CARRIED_OVER: the source of the opt-outs found on records


def upgrade() -> None:
    addresses = op.create_table(
        "addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(), nullable=True),
        sa.Column("opt_out_source", sa.String(length=32), server_default="", nullable=False),
        sa.Column("opt_out_reason", sa.String(length=200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_addresses_address")),
    )
    history = op.create_table(
        "address_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), server_default="", nullable=False),
        sa.Column("user_name", sa.String(length=64), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["address_id"], ["addresses.id"],
                                name=op.f("fk_address_history_address_id_addresses"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_history")),
    )
    op.create_index("ix_address_history_address_id", "address_history", ["address_id"], unique=False)

    connection = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    earliest: dict[str, tuple[datetime, str]] = {}
    for table in RECORD_TABLES:
        rows = connection.execute(sa.text(
            f"SELECT email, email_opt_out_at, email_opt_out_reason FROM {table} "  # noqa: S608 (a constant)
            "WHERE email_opt_out AND email <> ''"))
        for email, at, reason in rows:
            address = email.strip().lower()
            if isinstance(at, str):  # SQLite's driver hands back text for a raw query
                at = datetime.fromisoformat(at)
            kept = (at or now, reason or "")
            if address and (address not in earliest or kept[0] < earliest[address][0]):
                earliest[address] = kept
    ordered = sorted(earliest.items())
    for start in range(0, len(ordered), 1000):
        chunk = ordered[start:start + 1000]
        connection.execute(addresses.insert(), [
            {"address": address, "opted_out_at": at, "opt_out_source": CARRIED_OVER, "opt_out_reason": reason[:200]}
            for address, (at, reason) in chunk])
        ids = dict(connection.execute(sa.select(addresses.c.address, addresses.c.id)
                                      .where(addresses.c.address.in_([address for address, _ in chunk]))).all())
        connection.execute(history.insert(), [
            {"address_id": ids[address], "at": at, "event": "opted_out", "source": CARRIED_OVER,
             "reason": reason[:200], "user_name": ""}
            for address, (at, reason) in chunk])


def downgrade() -> None:
    op.drop_index("ix_address_history_address_id", table_name="address_history")
    op.drop_table("address_history")
    op.drop_table("addresses")
