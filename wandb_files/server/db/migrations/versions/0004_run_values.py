"""Run selection: run_values (config, summary and tags flattened for filters and orders), indexes on the
columns runs are ordered by, and config entries in W&B's wire form {"value": v}.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from wandb_files.server.db.runvalues import value_rows

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NAME_TEXT = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
BATCH = 1_000


def upgrade() -> None:
    op.create_table(
        "run_values",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", NAME_TEXT, nullable=False),
        sa.Column("txt", NAME_TEXT, nullable=False),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("num", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", "txt"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_run_values_order", "run_values", ["project_id", "key", "rank", "num", "txt", "run_id"])
    op.create_index("ix_runs_project_created", "runs", ["project_id", "created_at", "id"])
    op.create_index("ix_runs_project_heartbeat", "runs", ["project_id", "heartbeat_at", "id"])
    op.create_index("ix_runs_project_display_name", "runs", ["project_id", "display_name", "id"])
    _backfill()


def _normalised_config(text: str | None) -> str | None:
    """The config with every top-level entry in wire form; None when nothing changes."""
    try:
        config = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    changed = False
    for key, entry in config.items():
        if not (isinstance(entry, dict) and "value" in entry):
            config[key] = {"value": entry}
            changed = True
    return json.dumps(config, separators=(",", ":")) if changed else None


def _backfill() -> None:
    conn = op.get_bind()
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer),
        sa.column("project_id", sa.Integer),
        sa.column("config", sa.Text),
        sa.column("summary", sa.Text),
        sa.column("tags", sa.Text),
    )
    values = sa.table(
        "run_values",
        sa.column("run_id", sa.Integer),
        sa.column("key", sa.Text),
        sa.column("txt", sa.Text),
        sa.column("project_id", sa.Integer),
        sa.column("rank", sa.SmallInteger),
        sa.column("num", sa.Double),
    )
    last = 0
    while True:
        batch = conn.execute(
            sa.select(runs.c.id, runs.c.project_id, runs.c.config, runs.c.summary, runs.c.tags)
            .where(runs.c.id > last)
            .order_by(runs.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        rows: list[dict[str, object]] = []
        for run_id, project_id, config, summary, tags in batch:
            normalised = _normalised_config(config)
            if normalised is not None:
                conn.execute(sa.update(runs).where(runs.c.id == run_id).values(config=normalised))
                config = normalised
            rows.extend(
                {"run_id": run_id, "project_id": project_id, "key": r.key, "txt": r.txt, "rank": r.rank, "num": r.num}
                for r in value_rows(config, summary, tags)
            )
        if rows:
            conn.execute(sa.insert(values), rows)
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_runs_project_display_name", "runs")
    op.drop_index("ix_runs_project_heartbeat", "runs")
    op.drop_index("ix_runs_project_created", "runs")
    op.drop_table("run_values")
