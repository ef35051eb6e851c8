"""The tables of the first release.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Byte-wise ordering of names on PostgreSQL (SQLite's default): see models.NAME_TEXT.
NAME_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
PROJECT_NAME = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("api_key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "entities",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("ix_entities_owner_id", "entities", ["owner_id"])
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entity_id", sa.Integer(), sa.ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", PROJECT_NAME, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("entity_id", "name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("display_name", sa.Text()),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("config", sa.Text()),
        sa.Column("summary", sa.Text()),
        sa.Column("description", sa.Text()),
        sa.Column("notes", sa.Text()),
        sa.Column("group", sa.Text()),
        sa.Column("job_type", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("commit", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime()),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", NAME_TEXT, nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(24), nullable=False),
        sa.Column("mimetype", sa.String(255), nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False, unique=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    # Listing pages walk this index: WHERE run_id = ? AND name > ? ORDER BY name.
    op.create_index("ix_files_run_name", "files", ["run_id", "name"], unique=True)


def downgrade() -> None:
    for table in ("files", "runs", "projects", "entities", "users", "settings"):
        op.drop_table(table)
