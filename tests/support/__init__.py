"""What the test suites share: the live server and its users, helpers to make runs with files, a raw GraphQL
client for the server's own tests, and (in `tests.support.services`) PostgreSQL and an S3-compatible server.

conftest files hold fixtures only and take what they need from here; test modules import from here, never
from a conftest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import http.server
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

import wandb_files
from wandb_files.retry import RetryPolicy
from wandb_files.testing import BackgroundServer, free_port

__all__ = [
    "ADMIN_KEY",
    "CREATE_FILES",
    "DELETE_FILES",
    "FAST_RETRY",
    "RUN_FILES",
    "UPSERT",
    "Client",
    "CountingRelay",
    "GraphQLRecorder",
    "LiveServer",
    "blob_files",
    "cli",
    "database_args",
    "database_at_revision",
    "free_port",
    "md5_b64",
    "random_bytes",
    "random_files",
    "run_with_files",
    "server_in_this_python",
    "start_server",
    "stop_server",
    "write_files",
]

# --- the live server ----------------------------------------------------------------------------------------

ADMIN_KEY = "a" * 8 + secrets.token_hex(16)  # 40 characters, like a W&B key


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `wandb-files ARGS…` in a subprocess, the way a user would."""
    return subprocess.run(
        [sys.executable, "-m", "wandb_files", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
        env=env,
    )


#: For tests that run the server or its commands in the test's own Python, which the client-only run of
#: `make test-min` does not have (it names another in ``WANDB_FILES_TEST_SERVER_PYTHON``).
server_in_this_python = pytest.mark.skipif(
    bool(os.environ.get("WANDB_FILES_TEST_SERVER_PYTHON")), reason="the server runs in another Python here"
)


class LiveServer(BackgroundServer):
    """The embedded server, with users created once per name and shared by the tests that ask for them.

    ``WANDB_FILES_TEST_SERVER_PYTHON`` names another Python to run it: `make test-min` runs the client's tests at
    the client's own floors, in a venv without the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("python", os.environ.get("WANDB_FILES_TEST_SERVER_PYTHON") or None)
        super().__init__(*args, **kwargs)
        self._users: dict[str, str] = {}

    def add_user(self, name: str, api_key: str | None = None) -> str:
        if name not in self._users:
            self._users[name] = super().add_user(name, api_key)
        return self._users[name]


def start_server(data_dir: Path, api_key: str, *extra: str) -> LiveServer:
    server = LiveServer(data_dir, api_key=api_key, extra_args=extra)
    server.start()
    return server


def stop_server(server: LiveServer) -> None:
    server.stop()


def database_args(server: LiveServer) -> list[str]:
    """The --database-url option a command needs to reach `server`'s database (none for SQLite)."""
    return ["--database-url", server.database_url] if server.database_url else []


# --- runs with files ----------------------------------------------------------------------------------------

#: Retries that give up fast, for tests of failure paths.
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, total_timeout=5)


def write_files(root: Path, names_to_bytes: dict[str, bytes]) -> None:
    for name, data in names_to_bytes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def random_files(n: int, size: int = 100, prefix: str = "f") -> dict[str, bytes]:
    """`n` files with distinct random contents, named so their sorted order is their index order."""
    return {f"{prefix}_{i:04d}.bin": os.urandom(size) for i in range(n)}


def run_with_files(
    api: wandb_files.Api, tmp_path: Path, files: dict[str, bytes], project: str = "tests"
) -> wandb_files.Run:
    """A new run holding `files`, uploaded with the SDK."""
    run = api.create_run(project=project)
    source = tmp_path / f"upload-{run.id}"
    write_files(source, files)
    for name in files:
        run.upload_file(source / name, root=source)
    return run


def md5_b64(data: bytes) -> str:
    """W&B's form of an md5: the base64 of the binary digest."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# --- raw GraphQL, for the server's own tests ---------------------------------------------------------------


@dataclass
class Client:
    """Raw HTTP access to a server as one user."""

    base_url: str
    api_key: str

    @property
    def auth(self) -> tuple[str, str]:
        return ("api", self.api_key)

    def post(self, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"query": query, "variables": variables, "operationName": ""}
        body.update(extra)
        return requests.post(f"{self.base_url}/graphql", json=body, auth=self.auth, timeout=30)

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute and return `data`, failing on any error."""
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    def gql_error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute expecting exactly one error; return it."""
        response = self.post(query, variables)
        body = response.json()
        assert body.get("errors"), body
        return body["errors"][0]

    def make_run(self, project: str, run: str, entity: str | None = None) -> dict[str, Any]:
        return self.gql(UPSERT, {"project": project, "name": run, "entity": entity})["upsertBucket"]

    def upload(self, entity: str, project: str, run: str, name: str, data: bytes) -> dict[str, Any]:
        """createRunFiles + PUT; returns the PUT's JSON answer."""
        created = self.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": [name]})[
            "createRunFiles"
        ]
        url = created["files"][0]["uploadUrl"]
        response = requests.put(url, data=data, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def files(self, entity: str, project: str, run: str, **variables: Any) -> dict[str, Any]:
        data = self.gql(RUN_FILES, {"entity": entity, "project": project, "name": run, **variables})
        return data["project"]["run"]


UPSERT = """
mutation Upsert($project: String, $name: String, $entity: String, $config: JSONString, $state: String,
                $tags: [String!], $displayName: String) {
  upsertBucket(input: {modelName: $project, name: $name, entityName: $entity, config: $config, state: $state,
                       tags: $tags, displayName: $displayName}) {
    bucket { id name displayName state config tags projectId project { name entity { name } } }
    inserted
  }
}
"""

CREATE_FILES = """
mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    runID uploadHeaders files { name uploadUrl }
  }
}
"""

RUN_FILES = """#graphql
query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String,
               $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) {
  project(name: $project, entityName: $entity) { internalId
    run(name: $name) { fileCount projectId ...RunFilesFragment } } }
fragment RunFilesFragment on Run {
  files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
    edges { node { id name url(upload: $upload) directUrl sizeBytes mimetype updatedAt md5 } cursor }
    pageInfo { endCursor hasNextPage } } }
"""

DELETE_FILES = """
mutation deleteFiles($files: [ID!]!, $projectId: Int) {
  deleteFiles(input: { files: $files projectId: $projectId }) { success } }
"""


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# --- bytes on the wire ---------------------------------------------------------------------------------------


class CountingRelay:
    """A TCP relay on 127.0.0.1 in front of `upstream` ("http://host:port") that counts what crosses it.

    It passes bytes through unchanged (the Host header too, so a server builds its URLs with the relay's
    address and every later request comes back through it), and counts `received`: the bytes the upstream sent
    to clients, headers included. Requests are not parsed; put a FaultProxy behind it to count them.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._received = 0
        self._sockets: list[Any] = []
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def received(self) -> int:
        with self._lock:
            return self._received

    def reset(self) -> None:
        with self._lock:
            self._received = 0

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream, timeout=30)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: Any, sink: Any, counted: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if counted:
                    with self._lock:
                        self._received += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closing = True
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CountingRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GraphQLRecorder:
    """An HTTP relay on 127.0.0.1 in front of `upstream` that keeps the body of every POST /graphql it passes on.

    Requests and answers go through unchanged (Host included, so the URLs the server hands out point back
    here), one request at a time per connection. `bodies` holds the parsed JSON request bodies in order.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        recorder = self
        self.bodies: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and self.path.split("?")[0] == "/graphql":
                    with contextlib.suppress(ValueError):
                        recorder.bodies.append(json.loads(body))
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    payload = answer.read()
                finally:
                    conn.close()
                self.send_response_only(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GraphQLRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- migrations ------------------------------------------------------------------------------------------------


def database_at_revision(data_dir: Path, revision: str) -> sqlite3.Connection:
    """A server data dir whose SQLite database is migrated only up to `revision`, with the admin (ADMIN_KEY),
    its entity and a project "old" in it: rows written the way that revision stored them, for a test of the
    migrations after it. The caller commits and closes the connection before starting a server on `data_dir`.
    """
    from alembic import command
    from sqlalchemy import create_engine

    from wandb_files.server.db.database import alembic_config, sqlite_url
    from wandb_files.server.db.users import hash_api_key

    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "wandb-files.db"
    engine = create_engine(sqlite_url(db_path))
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    engine.dispose()
    db = sqlite3.connect(db_path)
    db.execute(f"INSERT INTO users VALUES (1, 'admin', '{hash_api_key(ADMIN_KEY)}', 1, '2026-01-01 00:00:00')")
    db.execute("INSERT INTO entities VALUES (1, 'admin', 1)")
    db.execute("INSERT INTO projects VALUES (1, 1, 'old', '2026-01-01 00:00:00')")
    return db
