"""The database tables (SQLAlchemy 2.0 declarative ORM)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Names compare and sort byte-wise on both databases: SQLite's default, and the "C" collation on PostgreSQL
# (whose default collation follows the locale). Keyset paging, LIKE prefixes and the (run_id, name) index
# then agree everywhere.
NAME_TEXT = Text().with_variant(Text(collation="C"), "postgresql")
PROJECT_NAME = String(128).with_variant(String(128, collation="C"), "postgresql")


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (SQLite keeps no time zone)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Base class of all tables."""


class Setting(Base):
    """Server-wide key/value settings, e.g. the URL-signing secret shared by every server process."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    """A person or program holding an API key."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Only the hash is kept, so a copy of the database does not leak usable keys.
    api_key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Entity(Base):
    """A namespace of projects (W&B's user or team); owned by one user."""

    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class Project(Base):
    """A project of an entity."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("entity_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(PROJECT_NAME)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # Always loaded with the project: every project answer names its entity.
    entity: Mapped[Entity] = relationship(lazy="joined", innerjoin=True)


class Run(Base):
    """A run (W&B's bucket) of a project."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # Run selection orders on these (ties by row id) and pages by keyset: see db/runfilters.py.
        Index("ix_runs_project_created", "project_id", "created_at", "id"),
        Index("ix_runs_project_heartbeat", "project_id", "heartbeat_at", "id"),
        Index("ix_runs_project_display_name", "project_id", "display_name", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32), default="running")
    config: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    group: Mapped[str | None] = mapped_column(Text)
    job_type: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(Text)  # a JSON list
    commit: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The number of files of the run, kept in the transaction that adds or deletes them (fileCount reads it
    # instead of counting 100,000 index entries on every page).
    file_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the wandb SDK's file stream sent (db/streams.py): the line counts of its streamed files (the
    # next offset of each), and the exit code of its final request.
    history_line_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    events_line_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    log_line_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # W&B's historyKeys of the streamed history, kept as rows arrive (a JSON object string; null before the
    # first row): {"keys": {key: {"typeCounts": [...], "previousValue": v}}, "lastStep": n}.
    history_keys: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # The time of the last file stream request: a run whose stream went silent is marked crashed.
    streamed_at: Mapped[datetime | None] = mapped_column(DateTime)
    host: Mapped[str | None] = mapped_column(Text)
    program: Mapped[str | None] = mapped_column(Text)

    # Joined eagerly so a page of runs is one query (a run answer names its project, entity and user).
    project: Mapped[Project] = relationship(lazy="joined", innerjoin=True)
    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class RunValue(Base):
    """One value of a run's config, summary or tags, flattened so filters and orders use indexes.

    Kept in step with the run's JSON columns by `db.runvalues.store_run_values`. `key` is "config.<path>",
    "summary.<path>" (nested keys joined with dots) or "tags" (one row per tag). `rank` is the value's type in
    MongoDB's comparison order (`db.runvalues.RANK_*`); numbers and booleans compare on `num`, strings on `txt`
    (their first characters only, see `runvalues.MAX_TEXT`). Both are never NULL, so (rank, num, txt, run_id)
    is a total order keyset paging can compare with a row value.
    """

    __tablename__ = "run_values"
    __table_args__ = (
        # Orders walk this index; filters on a key whose values are few can range-scan it.
        Index("ix_run_values_order", "project_id", "key", "rank", "num", "txt", "run_id"),
        {"sqlite_with_rowid": False},
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(NAME_TEXT, primary_key=True)
    txt: Mapped[str] = mapped_column(NAME_TEXT, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(SmallInteger)
    num: Mapped[float] = mapped_column(Double)


class RunLine(Base):
    """One line of a file the wandb SDK streams (wandb-history.jsonl, wandb-events.jsonl, output.log), at
    the line number (offset) the client sent it under: a retried request rewrites the same rows, and a
    console line the client rewrites (a progress bar) replaces its row."""

    __tablename__ = "run_lines"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    # streams.HISTORY, EVENTS or OUTPUT.
    kind: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[str] = mapped_column(Text)


class File(Base):
    """A file of a run; its bytes live in the blob store under blob_key."""

    __tablename__ = "files"
    __table_args__ = (
        # Listing pages walk this index: WHERE run_id = ? AND name > ? ORDER BY name.
        Index("ix_files_run_name", "run_id", "name", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(NAME_TEXT)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(24))
    mimetype: Mapped[str] = mapped_column(String(255))
    # Unique: a signed direct URL names a blob key and is resolved back to its file row.
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # Never loaded implicitly: resolvers pass the run along, so listing stays one query.
    run: Mapped[Run] = relationship(lazy="raise")


class PendingUpload(Base):
    """An upload URL handed out for a presigned PUT straight into the object store (S3 mode only).

    markRunFilesUploaded finds the object key of a name here, checks the object and commits it as the
    file's bytes; rows whose object never arrived are cleaned up once their URL has expired.

    The declared size and md5 are set when the client sent a fileSpec: the URL was signed for exactly those
    bytes, so the md5 need not be read back from the object. NULL for clients that send none (real wandb).
    """

    __tablename__ = "pending_uploads"
    __table_args__ = (Index("ix_pending_uploads_run_name", "run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(NAME_TEXT)
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    declared_size: Mapped[int | None] = mapped_column(BigInteger)
    declared_md5: Mapped[str | None] = mapped_column(String(24))
