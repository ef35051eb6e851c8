"""Scaling out: a file counter on runs, and pending presigned uploads (S3 mode).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column("runs", sa.Column("file_count", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE runs SET file_count = (SELECT COUNT(*) FROM files WHERE files.run_id = runs.id)")
    op.create_table(
        "pending_uploads",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", NAME_TEXT, nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_pending_uploads_run_name", "pending_uploads", ["run_id", "name"])
    op.create_index("ix_pending_uploads_created_at", "pending_uploads", ["created_at"])


def downgrade() -> None:
    op.drop_table("pending_uploads")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("file_count")
