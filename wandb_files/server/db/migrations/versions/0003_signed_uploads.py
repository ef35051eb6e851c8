"""Signed uploads: the size and md5 a client declared for a pending presigned upload (S3 mode).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows made before, and uploads of clients that declare nothing, have neither.
    op.add_column("pending_uploads", sa.Column("declared_size", sa.BigInteger(), nullable=True))
    op.add_column("pending_uploads", sa.Column("declared_md5", sa.String(24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_uploads") as batch:
        batch.drop_column("declared_md5")
        batch.drop_column("declared_size")
