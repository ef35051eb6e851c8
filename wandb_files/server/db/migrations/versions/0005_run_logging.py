"""Runs logged by the wandb SDK: the lines of its streamed files, their counts, exit code, host and program.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("history_line_count", "events_line_count", "log_line_count"):
        op.add_column("runs", sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("exit_code", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("streamed_at", sa.DateTime(), nullable=True))
    op.add_column("runs", sa.Column("host", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("program", sa.Text(), nullable=True))
    op.create_table(
        "run_lines",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.Integer(), primary_key=True),
        sa.Column("line_no", sa.Integer(), primary_key=True),
        sa.Column("content", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_lines")
    with op.batch_alter_table("runs") as batch:
        for column in (
            "program",
            "host",
            "streamed_at",
            "exit_code",
            "log_line_count",
            "events_line_count",
            "history_line_count",
        ):
            batch.drop_column(column)
