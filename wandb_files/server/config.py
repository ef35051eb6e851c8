"""The settings one server process runs with."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SIGNED_URL_TTL = 3600
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024**3
DEFAULT_UPLOAD_CLEANUP_INTERVAL = 900
DB_FILE_NAME = "wandb-files.db"
# How long a download may go on trusting an API key (and where its file's blob is) without the database.
DEFAULT_KEY_CACHE_SECONDS = 5.0
# Server processes of `wandb-files server`: two on a two-core box served the load benchmark (benchmarks/
# bench_load.py) faster than one, markedly on PostgreSQL; docs/performance.md has the figures.
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
DEFAULT_RUN_TIMEOUT_SECONDS = 300.0
# How long a query's SQLite statements may run on the event loop before the query moves to a worker thread.
DEFAULT_INLINE_QUERY_MS = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ServerConfig:
    """Everything `create_app` needs; the CLI fills it from options and environment variables."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    # Base of the absolute URLs handed to clients; None means "the URL the request came in on".
    public_url: str | None = None
    signed_url_ttl: int = DEFAULT_SIGNED_URL_TTL
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    log_level: str = "info"
    access_log: bool = False
    # SQLAlchemy URL of the metadata database; None means the SQLite file in data_dir.
    database_url: str | None = None
    # Where the files' bytes live: None means data_dir/blobs; s3://bucket/prefix means an S3 bucket.
    blob_store: str | None = None
    # The endpoint of an S3-compatible service (MinIO, Ceph, moto...); None means AWS S3.
    s3_endpoint_url: str | None = None
    # S3 mode: seconds between sweeps for abandoned presigned uploads (also swept at every start).
    upload_cleanup_interval: int = DEFAULT_UPLOAD_CLEANUP_INTERVAL
    # Downloads through `url` trust a key they saw valid for this long: a revoked key stops working within it.
    key_cache_seconds: float = DEFAULT_KEY_CACHE_SECONDS
    # Compute the next page of a walk through a connection while the client reads this one (SQLite only;
    # see http/readahead.py).
    read_ahead: bool = True
    # Over SQLite with local blobs, queries run on the event loop until their statements have taken this long;
    # then they are aborted and run again in a worker thread (0: every query in a thread; see http/readahead.py).
    inline_query_ms: float = DEFAULT_INLINE_QUERY_MS
    # A run logged by the wandb SDK whose file stream has sent nothing for this long is marked crashed (the
    # client sends at least a heartbeat every 30 s while it runs).
    run_timeout_seconds: float = DEFAULT_RUN_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.signed_url_ttl < 1:
            raise ValueError("signed_url_ttl must be at least 1 second")
        if self.upload_cleanup_interval < 1:
            raise ValueError("upload_cleanup_interval must be at least 1 second")
        if self.run_timeout_seconds <= 0:
            raise ValueError("run_timeout_seconds must be positive")
        if self.key_cache_seconds < 0:
            raise ValueError("key_cache_seconds must not be negative")
        if self.max_upload_bytes < 0:
            raise ValueError("max_upload_bytes must not be negative")
        if self.inline_query_ms < 0:
            raise ValueError("inline_query_ms must not be negative")
        if self.public_url is not None:
            # A trailing slash would give URLs with "//" in them.
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    def to_json(self) -> str:
        """These settings as JSON, for the worker processes of `--workers N`."""
        return json.dumps({**dataclasses.asdict(self), "data_dir": str(self.data_dir)})

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        """The settings `to_json` wrote.

        Args:
            text: Its output.

        Returns:
            The same settings.
        """
        fields = json.loads(text)
        return cls(**{**fields, "data_dir": Path(fields["data_dir"])})

    @property
    def abandoned_upload_seconds(self) -> int:
        """How old an unmarked presigned upload must be to count as abandoned: long after its URL expired."""
        return 2 * self.signed_url_ttl + 3600

    @property
    def database(self) -> Path | str:
        """What `create_db_engine` opens: --database-url, else the SQLite file in data_dir."""
        return self.database_url or self.db_path

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / DB_FILE_NAME

    @property
    def blob_dir(self) -> Path:
        """Where finished blobs live."""
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Where uploads are spooled; on the same filesystem as blob_dir so a rename is atomic."""
        return self.data_dir / "tmp"
