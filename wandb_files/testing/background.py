"""Run `wandb-files server` in a background process: for demos, notebooks, and the test suites of your own code.

from wandb_files.testing import BackgroundServer

with BackgroundServer("/tmp/wf-data") as server:
    os.environ["WANDB_BASE_URL"] = server.base_url
    os.environ["WANDB_API_KEY"] = server.api_key
    ...  # wandb.Api() or wandb_files.Api() now talk to it
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """A `wandb-files server` subprocess on a free loopback port, stopped on exit.

    Args:
        data_dir: Where the server keeps its database and blobs (created if missing).
        api_key: The admin user's key; a random 40-character key when omitted.
        host: The address to listen on.
        port: The port; a free one when omitted.
        extra_args: More `wandb-files server` options, e.g. ``["--signed-url-ttl", "60"]``.
        workers: Server processes (``--workers``). One by default: it starts faster than the server's own
            default, which is what a test suite wants; None leaves it to the server.
        startup_timeout: Seconds to wait for `/healthz` to answer.
        database_url: A SQLAlchemy URL (e.g. PostgreSQL) instead of the SQLite file in `data_dir`.
        blob_store: ``s3://bucket/prefix`` to keep the bytes in S3 instead of `data_dir`.
        s3_endpoint_url: The endpoint of an S3-compatible service.
        env: Environment variables for the server process (e.g. AWS credentials), over the current ones.
        python: The Python that runs the server (and `add_user`): one with the ``[server]`` extra, so that code
            with the client alone can be tested against a server; this process's own when omitted.

    Attributes:
        base_url: ``http://host:port``, for `WANDB_BASE_URL`.
        api_key: The admin key, for `WANDB_API_KEY`.
        log_path: The server's output (it never contains keys or signed URLs).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        workers: int | None = 1,
        startup_timeout: float = 30.0,
        database_url: str | None = None,
        blob_store: str | None = None,
        s3_endpoint_url: str | None = None,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.python = python or sys.executable
        self.api_key = api_key or secrets.token_hex(20)
        self.host = host
        self.port = port or free_port(host)
        self.database_url = database_url
        self.extra_args = [] if workers is None else ["--workers", str(workers)]
        self.extra_args += extra_args  # after --workers: the last value of an option wins
        for option, value in (
            ("--database-url", database_url),
            ("--blob-store", blob_store),
            ("--s3-endpoint-url", s3_endpoint_url),
        ):
            if value is not None:
                self.extra_args += [option, value]
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.base_url = f"http://{host}:{self.port}"
        self.log_path = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> BackgroundServer:
        """Start the server and wait until it answers.

        Raises:
            RuntimeError: it exited or did not answer within `startup_timeout`; the message holds its output.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # The key goes through the environment: a command line is visible to every local user (`ps`).
        self.process = subprocess.Popen(
            [
                self.python,
                "-m",
                "wandb_files.server",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {}), "WANDB_FILES_API_KEY": self.api_key},
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"wandb-files server did not start; its output:\n{self.log()}")
            time.sleep(0.05)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def add_user(self, name: str, api_key: str | None = None) -> str:
        """Create a user (and its entity) and return its API key.

        Raises:
            ValueError: the name is taken or not a valid name.
        """
        if self.python != sys.executable:
            return self._add_user_in(self.python, name, api_key)
        # The server's own modules, imported only here: starting a server needs none of them in this process.
        from wandb_files.server.config import ServerConfig
        from wandb_files.server.db.database import create_db_engine, make_session_factory
        from wandb_files.server.db.users import create_user

        engine = create_db_engine(ServerConfig(data_dir=self.data_dir, database_url=self.database_url).database)
        try:
            with make_session_factory(engine)() as session:
                return create_user(session, name, api_key)[1]
        finally:
            engine.dispose()

    def _add_user_in(self, python: str, name: str, api_key: str | None) -> str:
        """`add_user` by ``wandb-files user add`` in the server's Python (this one may not have the server)."""
        command = [python, "-m", "wandb_files", "user", "add", name, "--data-dir", str(self.data_dir)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        if api_key:
            command += ["--api-key", api_key]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise ValueError(done.stderr.strip().removeprefix("Error: "))
        return done.stdout.strip().rpartition(": ")[2]

    def log(self) -> str:
        """What the server has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
