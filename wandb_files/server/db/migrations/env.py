"""Alembic's environment: migrations run on the connection `database.upgrade_database` hands over.

Run by hand (`alembic -c ... upgrade head`), it connects to `sqlalchemy.url` instead.
"""

from __future__ import annotations

from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine

from wandb_files.server.db.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters tables by copying them; PostgreSQL ignores the flag.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # pragma: no cover - only when run through the alembic command line
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise CommandError("sqlalchemy.url is not set in the Alembic configuration")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
