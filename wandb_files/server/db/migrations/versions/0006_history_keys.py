"""Serving history: the run's historyKeys (W&B's summary of its history keys and last step), kept as history rows
arrive, filled for the history already stored.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from wandb_files.server.db.streams import HISTORY, json_object, updated_history_keys

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 1_000


def upgrade() -> None:
    op.add_column("runs", sa.Column("history_keys", sa.Text(), nullable=True))
    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    lines = sa.table(
        "run_lines",
        sa.column("run_id", sa.Integer),
        sa.column("kind", sa.Integer),
        sa.column("line_no", sa.Integer),
        sa.column("content", sa.Text),
    )
    runs = sa.table("runs", sa.column("id", sa.Integer), sa.column("history_keys", sa.Text))
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
        rows: list[dict[str, Any] | None] = []
        for line_run, _, content in batch:
            if line_run != run_id:
                if run_id is not None:
                    keys = updated_history_keys(keys, rows)
                    conn.execute(sa.update(runs).where(runs.c.id == run_id).values(history_keys=keys))
                run_id, keys, rows = line_run, None, []
            rows.append(json_object(content))
        if rows:
            keys = updated_history_keys(keys, rows)
        if not batch:
            break
        last = (batch[-1][0], batch[-1][1])
    if run_id is not None:
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(history_keys=keys))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("history_keys")
