"""Email templates with merge fields: templates and their attachments; users' names and address
for the $users-...$ fields.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 03:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("first_name", sa.String(length=100), server_default="", nullable=False))
        batch.add_column(sa.Column("last_name", sa.String(length=100), server_default="", nullable=False))
        batch.add_column(sa.Column("email", sa.String(length=254), server_default="", nullable=False))
    op.create_table(
        "email_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_email_templates_owner_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_email_templates_name")),
    )
    op.create_table(
        "template_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("storage_name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["template_id"], ["email_templates.id"],
                                name=op.f("fk_template_attachments_template_id_email_templates"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_attachments")),
        sa.UniqueConstraint("storage_name", name=op.f("uq_template_attachments_storage_name")),
    )
    op.create_index(op.f("ix_template_attachments_template_id"), "template_attachments", ["template_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_template_attachments_template_id"), table_name="template_attachments")
    op.drop_table("template_attachments")
    op.drop_table("email_templates")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
        batch.drop_column("last_name")
        batch.drop_column("first_name")
