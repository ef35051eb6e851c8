"""Real services for the tests: a throwaway PostgreSQL cluster, an S3-compatible server (moto), Chromium.

Both run on loopback only, are started once per test session on first use and stopped at exit. When one
cannot be found or started, the tests that need it skip with the reason (set WANDB_FILES_REQUIRE_SERVICES=1
to make that a failure instead, e.g. in CI). `make test` installs both: moto from the dev extra, PostgreSQL
with apt-get (Debian's `postgresql` package) when it is missing and make runs as root.

WANDB_FILES_TEST_POSTGRES_URL=postgresql+psycopg://user@host:port/db uses an existing server instead
(each test database is created in it and dropped afterwards).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ADMIN_KEY, LiveServer
from wandb_files.testing import free_port

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "wandb-files-test",
    "AWS_SECRET_ACCESS_KEY": "wandb-files-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}

_lock = threading.Lock()


def _unavailable(reason: str) -> None:
    if os.environ.get("WANDB_FILES_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (WANDB_FILES_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


# --- PostgreSQL ------------------------------------------------------------------------------------


def find_postgres_bin() -> Path | None:
    """The bin folder of the newest installed PostgreSQL server (Debian keeps it off PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    for initdb in candidates:
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").exists() and (folder / "postgres").exists():
            return folder
    return None


@dataclass
class PostgresCluster:
    """A running PostgreSQL server; `create_database()` gives each user a database of its own."""

    admin_url: str  # psycopg conninfo URL of the maintenance database
    sqlalchemy_base: str  # postgresql+psycopg://user@host:port/
    stop: object = None

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"wf_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.sqlalchemy_base + name


def _start_local_cluster() -> PostgresCluster:
    bindir = find_postgres_bin()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
            "`make test` installs it with apt-get when run as root"
        )
    root = Path(tempfile.mkdtemp(prefix="wandb-files-pg-"))
    data = root / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    # PostgreSQL refuses to run as root: the cluster belongs to the unprivileged `postgres` user then.
    prefix: list[str] = []
    if as_root:
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root without `runuser` to start PostgreSQL as an unprivileged user")
        prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "wandb",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "--locale=C",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
        log = root / "postgres.log"
        if log.exists():
            detail += log.read_text(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc} {detail[-500:]}") from None

    def stop() -> None:
        with contextlib.suppress(Exception):
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return PostgresCluster(
        admin_url=f"postgresql://wandb@127.0.0.1:{port}/postgres",
        sqlalchemy_base=f"postgresql+psycopg://wandb@127.0.0.1:{port}/",
        stop=stop,
    )


_cluster: PostgresCluster | None = None
_cluster_error: str | None = None


def postgres_cluster() -> PostgresCluster:
    """The session's PostgreSQL (started on first use), or a skip saying why there is none."""
    global _cluster, _cluster_error
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    with _lock:
        if _cluster is None and _cluster_error is None:
            external = os.environ.get("WANDB_FILES_TEST_POSTGRES_URL")
            try:
                if external:
                    base = external.rsplit("/", 1)[0] + "/"
                    plain = base.replace("postgresql+psycopg://", "postgresql://")
                    _cluster = PostgresCluster(admin_url=plain + "postgres", sqlalchemy_base=base)
                else:
                    _cluster = _start_local_cluster()
            except RuntimeError as exc:
                _cluster_error = str(exc)
    if _cluster is None:
        _unavailable(_cluster_error or "PostgreSQL is not available")
    assert _cluster is not None
    return _cluster


# --- S3 (moto server) ------------------------------------------------------------------------------


@dataclass
class S3Service:
    """An S3-compatible endpoint on loopback, with the credentials to use it."""

    endpoint_url: str
    env: dict[str, str]

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        ).client("s3", endpoint_url=self.endpoint_url)

    def create_bucket(self) -> str:
        name = f"wf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        answer = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in answer.get("Contents", []))


_s3: S3Service | None = None
_s3_error: str | None = None


def s3_service() -> S3Service:
    """The session's moto S3 server (started on first use, in a thread of the test process)."""
    global _s3, _s3_error
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        _unavailable("moto[server] is not installed (pip install -e '.[dev]')")
    with _lock:
        if _s3 is None and _s3_error is None:
            try:
                port = free_port()
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                server.start()
                atexit.register(server.stop)
                _s3 = S3Service(endpoint_url=f"http://127.0.0.1:{port}", env=dict(S3_CREDENTIALS))
                deadline = time.monotonic() + 30
                while True:
                    try:
                        _s3.client().list_buckets()
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
            except Exception as exc:  # noqa: BLE001 - any failure means "no S3 here"
                _s3, _s3_error = None, f"the moto S3 server did not start: {exc}"
    if _s3 is None:
        _unavailable(_s3_error or "S3 is not available")
    assert _s3 is not None
    return _s3


def s3_server(data_dir: Path, s3: S3Service, bucket: str, prefix: str = "blobs", **kwargs: object) -> LiveServer:
    """A started server keeping its bytes in `bucket` (under `prefix/`)."""
    server = LiveServer(
        data_dir,
        api_key=ADMIN_KEY,
        blob_store=f"s3://{bucket}/{prefix}",
        s3_endpoint_url=s3.endpoint_url,
        env=s3.env,
        **kwargs,  # type: ignore[arg-type]
    )
    return server.start()  # type: ignore[return-value]


# --- Chromium, for the web page's browser tests ----------------------------------------------------------------


def chromium_executable() -> str:
    """The system's Chromium (Debian's `chromium` package; `make test` installs it when missing and run as root),
    for Playwright's `executable_path`: Playwright's own browser downloads are never used. Skips (or fails with
    WANDB_FILES_REQUIRE_SERVICES=1) when Chromium or Playwright is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    # Debian's binary itself: /usr/bin/chromium is a shell wrapper that only adds flags for desktops.
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    _unavailable("Chromium is not installed (`make chromium`, or apt-get install chromium, as root)")
    raise AssertionError("unreachable")
