"""Serving history: each history line's _step (indexed, for step ranges) and the run's historyKeys, filled for
the history already stored.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from wandb_files.server.db.streams import HISTORY, history_step, updated_history_keys

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 1_000


def upgrade() -> None:
    op.add_column("run_lines", sa.Column("step", sa.BigInteger(), nullable=True))
    op.add_column("runs", sa.Column("history_keys", sa.Text(), nullable=True))
    _backfill()
    op.create_index(
        "ix_run_lines_step",
        "run_lines",
        ["run_id", "kind", "step", "line_no"],
        sqlite_where=sa.text("step IS NOT NULL"),
        postgresql_where=sa.text("step IS NOT NULL"),
    )


def _row(line: str) -> dict[str, object] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _backfill() -> None:
    conn = op.get_bind()
    lines = sa.table(
        "run_lines",
        sa.column("run_id", sa.Integer),
        sa.column("kind", sa.Integer),
        sa.column("line_no", sa.Integer),
        sa.column("content", sa.Text),
        sa.column("step", sa.BigInteger),
    )
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("history_keys", sa.Text))
    set_step = (
        sa.update(lines)
        .where(lines.c.run_id == sa.bindparam("r"), lines.c.kind == HISTORY, lines.c.line_no == sa.bindparam("n"))
        .values(step=sa.bindparam("s"))
    )
    run_id: int | None = None
    keys: str | None = None
    last = (0, -1)
    while True:
        # Keyset over the primary key, one batch at a time: a large history is never held whole.
        batch = conn.execute(
            sa.select(lines.c.run_id, lines.c.line_no, lines.c.content)
            .where(lines.c.kind == HISTORY, sa.tuple_(lines.c.run_id, lines.c.line_no) > last)
            .order_by(lines.c.run_id, lines.c.line_no)
            .limit(BATCH)
        ).all()
        steps = []
        rows: list[dict[str, object] | None] = []
        for line_run, line_no, content in batch:
            if line_run != run_id:
                if run_id is not None:
                    keys = updated_history_keys(keys, rows)
                    conn.execute(sa.update(runs).where(runs.c.id == run_id).values(history_keys=keys))
                run_id, keys, rows = line_run, None, []
            row = _row(content)
            rows.append(row)
            step = history_step(row)
            if step is not None:
                steps.append({"r": line_run, "n": line_no, "s": step})
        if rows:
            keys = updated_history_keys(keys, rows)
        if steps:
            conn.execute(set_step, steps)
        if not batch:
            break
        last = (batch[-1][0], batch[-1][1])
    if run_id is not None:
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(history_keys=keys))


def downgrade() -> None:
    op.drop_index("ix_run_lines_step", "run_lines")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("history_keys")
    with op.batch_alter_table("run_lines") as batch:
        batch.drop_column("step")
