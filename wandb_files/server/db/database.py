"""The database engine (SQLite or PostgreSQL), schema migrations, sessions and write transactions."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .models import Run
from .runregex import sqlite_regexp

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.pool import ConnectionPoolEntry

BUSY_TIMEOUT_SECONDS = 30
# Execution option asking the "begin" hook for BEGIN IMMEDIATE instead of a deferred BEGIN.
_IMMEDIATE = "wandb_files_immediate"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key serializing migrations of server processes starting at once.
_MIGRATION_LOCK = 0x77616E6462  # "wandb"
# A SQLite engine's writers queue on this lock before BEGIN IMMEDIATE (see `write_transaction`).
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def sqlite_url(db_path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file `db_path`."""
    return f"sqlite:///{db_path}"


def normalize_database_url(url: str) -> str:
    """`url` with PostgreSQL pointed at psycopg 3 (`postgresql://` and `postgres://` mean psycopg here)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql+psycopg://")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(database: Path | str, *, migrate: bool = True) -> Engine:
    """Open the database (a SQLite file path, or a SQLAlchemy URL) and bring its schema up to date."""
    url = sqlite_url(database) if isinstance(database, Path) else normalize_database_url(database)
    if make_url(url).get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(
            url,
            # Enough connections for every worker thread Starlette may run requests in (40 by default).
            pool_size=10,
            max_overflow=40,
            pool_pre_ping=True,  # a restarted or failed-over PostgreSQL must not fail the next request
            # Reads run statement by statement: READ COMMITTED gives each statement its own snapshot anyway, and
            # a BEGIN and a ROLLBACK around every request's reads were two of its round trips. Writes get a
            # transaction (`write_transaction`).
            isolation_level="AUTOCOMMIT",
        )
    if migrate:
        upgrade_database(engine)
    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        pool_size=10,
        max_overflow=40,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the sqlite3 module's implicit one.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA case_sensitive_like=ON")  # LIKE as on PostgreSQL
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, much faster commits
        cursor.close()
        # Run filters' $regex (PostgreSQL has `~`; SQLite has no regular expressions of its own).
        dbapi_conn.create_function("wf_regexp", 2, sqlite_regexp, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: upgrading a read snapshot to a write in WAL mode fails
        # with SQLITE_BUSY at once instead of waiting for the busy timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

    _SQLITE_WRITERS[engine] = threading.RLock()
    return engine


# --- whether anything changed -----------------------------------------------------------------------


class DataVersion:
    """Whether anything was committed to a SQLite database: a number that changes with every commit.

    Args:
        path: The database file.
    """

    def __init__(self, path: str) -> None:
        # Its own connection, which never writes: data_version changes with the commits of every other one.
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """The current version (equal twice only if nothing was committed in between)."""
        with self._lock:
            row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close its connection."""
        with self._lock:
            self._connection.close()


class StatementDeadline:
    """Aborts the SQLite statements of one session once a moment has passed (SQLite's progress handler).

    A statement running past `deadline` fails with "interrupted"; `passed` then says that this, not the
    statement itself, is why. Only SQLite's own work is cut short: the Python around it is not.

    Args:
        deadline: The moment, on `time.monotonic()`'s clock.
    """

    # SQLite virtual machine instructions between two looks at the clock (each look is a Python call).
    EVERY_INSTRUCTIONS = 4096

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.passed = False

    def _progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.passed = True
            return 1  # non-zero: SQLite aborts the statement
        return 0

    @contextmanager
    def over(self, session: Session) -> Iterator[StatementDeadline]:
        """Apply the deadline to `session`'s statements (on its SQLite connection) until the block ends."""
        dbapi: object = session.connection().connection.dbapi_connection
        if not isinstance(dbapi, sqlite3.Connection):
            raise TypeError("a statement deadline needs a SQLite connection")
        dbapi.set_progress_handler(self._progress, self.EVERY_INSTRUCTIONS)
        try:
            yield self
        finally:
            dbapi.set_progress_handler(None, 0)  # the connection goes back to the pool for other requests


def data_version_for(engine: Engine) -> DataVersion | None:
    """A DataVersion over the engine's database if it is a SQLite file, else None (no read-ahead)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return DataVersion(database)


def upsert_insert(session: Session) -> Any:
    """The INSERT construct of the session's database, which has ON CONFLICT (SQLAlchemy's generic one has not).

    Raises:
        RuntimeError: a database other than SQLite or PostgreSQL (`create_db_engine` opens no other).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"upserts are not supported on {dialect}")


# --- migrations ------------------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the server's migrations, run on `connection` (None: only to read them).

    Args:
        connection: The connection the migrations run on; env.py takes it from the config's attributes.

    Returns:
        The configuration to pass to `alembic.command`.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None when it has no alembic_version table (a new database)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_database(engine: Engine) -> None:
    """Run the migrations up to head (`alembic upgrade head`), in one transaction, one process at a time."""
    with engine.connect() as probe:
        if current_revision(probe) == head_revision():
            return  # the common case: nothing to do, and no lock taken
    from alembic import command

    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        # SQLite: the write lock, before looking. PostgreSQL: a transaction, which holds the advisory lock.
        conn = conn.execution_options(**_write_options(conn.dialect.name))
        with conn.begin():
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), "head")


# --- sessions and transactions ---------------------------------------------------------------------


def _write_options(dialect: str) -> dict[str, object]:
    """The execution options of a write transaction's connection on `dialect`."""
    if dialect == "sqlite":
        return {_IMMEDIATE: True}
    return {"isolation_level": "READ COMMITTED"}  # the engine's default is autocommit, for reads


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory; objects stay readable after commit because answers are built from them."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run a block in one write transaction: commit on success, roll back on error.

    SQLite: BEGIN IMMEDIATE, so writers queue for the one write lock instead of failing; the threads of one
    process queue on a lock of their own first. PostgreSQL: a READ COMMITTED transaction; blocks that
    read-then-write a run's files first take the run's row lock with `lock_runs`, which serializes them per run
    (SQLite's lock already covers the whole database).
    """
    # End any read transaction first, so the write lock is taken on a fresh snapshot.
    session.rollback()
    bind = session.get_bind()
    # SQLite's busy handler polls with sleeps growing to a tenth of a second: dozens of upload commits
    # waiting that way were handed the lock one per sleep. A thread waiting here wakes as soon as the writer before it is done.
    writers = _SQLITE_WRITERS.get(bind) if isinstance(bind, Engine) else None
    with writers if writers is not None else nullcontext():
        session.connection(execution_options=_write_options(bind.dialect.name))
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def lock_runs(session: Session, run_ids: list[int] | set[int]) -> set[int]:
    """Take the row locks of runs (SELECT … FOR UPDATE, in id order so two writers never deadlock).

    Returns the ids that still exist. Inside `write_transaction`; on SQLite the clause is dropped and the
    database-wide write lock already serializes writers.
    """
    if not run_ids:
        return set()
    stmt = select(Run.id).where(Run.id.in_(sorted(run_ids))).order_by(Run.id).with_for_update()
    return set(session.scalars(stmt))
