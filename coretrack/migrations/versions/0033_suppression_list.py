"""The suppression list: each opt-out's category and evidence, bounce classes, raw DSN and ARF
reports kept for review, erasures an admin reinstated

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

# The category of the opt-outs made before this revision, by their source (and, for SendGrid's, by
# the reason people/suppression.py and delivery_reports/sendgrid.py wrote).
_BY_SOURCE = {"link": "unsubscribed", "one-click": "unsubscribed", "bounce": "hard_bounce", "staff": "staff",
              "import": "import", "records": "import"}
_SENDGRID = (("bounced%", "hard_bounce"), ("dropped%", "provider_drop"), ("unsubscribed%", "unsubscribed"),
             ("reported%", "complaint"))

_SOFT_BOUNCED = "bounce_class IN ('mailbox_full', 'soft')"


def upgrade() -> None:
    op.create_table(
        "mail_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bounce_class", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["recipient_id"], ["recipients.id"],
                                name=op.f("fk_mail_reports_recipient_id_recipients"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_reports")),
    )
    op.create_index("ix_mail_reports_recipient_id", "mail_reports", ["recipient_id"], unique=False)
    op.create_index("ix_mail_reports_received_at", "mail_reports", ["received_at"], unique=False)
    with op.batch_alter_table("addresses") as batch:
        batch.add_column(sa.Column("opt_out_category", sa.String(length=16), server_default="", nullable=False))
        batch.add_column(sa.Column("evidence_report_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("evidence_event_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_addresses_evidence_report_id_mail_reports", "mail_reports",
                                 ["evidence_report_id"], ["id"], ondelete="SET NULL")
        batch.create_foreign_key("fk_addresses_evidence_event_id_delivery_events", "delivery_events",
                                 ["evidence_event_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("address_history") as batch:
        batch.add_column(sa.Column("category", sa.String(length=16), server_default="", nullable=False))
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("bounce_class", sa.String(length=16), server_default="", nullable=False))
    op.create_index("ix_recipients_soft_bounced", "recipients", [sa.text("lower(address)")], unique=False,
                    sqlite_where=sa.text(_SOFT_BOUNCED), postgresql_where=sa.text(_SOFT_BOUNCED))
    with op.batch_alter_table("erasures") as batch:
        batch.add_column(sa.Column("reinstated_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reinstated_by", sa.String(length=64), server_default="", nullable=False))
        batch.add_column(sa.Column("reinstate_reason", sa.String(length=200), server_default="", nullable=False))
    for table, category, source, reason in (("addresses", "opt_out_category", "opt_out_source", "opt_out_reason"),
                                            ("address_history", "category", "source", "reason")):
        for known, named in _BY_SOURCE.items():
            op.execute(sa.text(f"UPDATE {table} SET {category} = :named WHERE {source} = :source")  # noqa: S608
                       .bindparams(named=named, source=known))
        for pattern, named in _SENDGRID:
            op.execute(sa.text(f"UPDATE {table} SET {category} = :named "  # noqa: S608 (constants)
                               f"WHERE {source} = 'sendgrid' AND {reason} LIKE :pattern")
                       .bindparams(named=named, pattern=pattern))


def downgrade() -> None:
    with op.batch_alter_table("erasures") as batch:
        batch.drop_column("reinstate_reason")
        batch.drop_column("reinstated_by")
        batch.drop_column("reinstated_at")
    op.drop_index("ix_recipients_soft_bounced", table_name="recipients")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("bounce_class")
    with op.batch_alter_table("address_history") as batch:
        batch.drop_column("category")
    with op.batch_alter_table("addresses") as batch:
        batch.drop_constraint("fk_addresses_evidence_event_id_delivery_events", type_="foreignkey")
        batch.drop_constraint("fk_addresses_evidence_report_id_mail_reports", type_="foreignkey")
        batch.drop_column("evidence_event_id")
        batch.drop_column("evidence_report_id")
        batch.drop_column("opt_out_category")
    op.drop_index("ix_mail_reports_received_at", table_name="mail_reports")
    op.drop_index("ix_mail_reports_recipient_id", table_name="mail_reports")
    op.drop_table("mail_reports")
