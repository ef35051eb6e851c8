"""Scaling out: two server processes over one PostgreSQL database and one bucket serve the same data; and
schema migrations, on PostgreSQL and on SQLite data dirs made before migrations existed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import inspect, text

from tests.support import ADMIN_KEY, DELETE_FILES, RUN_FILES, Client, LiveServer, md5_b64
from tests.support.services import PostgresCluster, S3Service, s3_server
from wandb_files.server.db.database import create_db_engine, head_revision

from .test_s3 import put_and_mark


def test_two_instances_share_postgres_and_bucket(postgres: PostgresCluster, s3: S3Service, tmp_path: Path) -> None:
    url = postgres.create_database()
    bucket = s3.create_bucket()
    servers: list[LiveServer] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            servers.append(s3_server(tmp_path / f"instance{i}", s3, bucket, database_url=url))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    # Both start at once on an empty database: the migrations run once, under an advisory lock.
    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        a, b = (Client(s.base_url, ADMIN_KEY) for s in servers)
        assert a.base_url != b.base_url
        a.make_run("shared", "r1")
        data = {f"f{i}.bin": bytes([i]) * (100 + i) for i in range(3)}
        put_and_mark(a, ("admin", "shared", "r1"), data)
        # B sees what A stored, and serves it.
        run = b.files("admin", "shared", "r1")
        assert run["fileCount"] == 3
        nodes = [e["node"] for e in run["files"]["edges"]]
        assert [n["name"] for n in nodes] == sorted(data)
        for node in nodes:
            assert node["md5"] == md5_b64(data[node["name"]])
            assert node["url"].startswith(b.base_url)
            assert requests.get(node["url"], auth=b.auth, timeout=30).content == data[node["name"]]
            assert requests.get(node["directUrl"], timeout=30).content == data[node["name"]]
        # Paging across instances: a cursor from A continues on B.
        first = a.gql(RUN_FILES, {"entity": "admin", "project": "shared", "name": "r1", "fileLimit": 1})
        cursor = first["project"]["run"]["files"]["edges"][-1]["cursor"]
        rest = b.gql(RUN_FILES, {"entity": "admin", "project": "shared", "name": "r1", "fileCursor": cursor})
        assert [e["node"]["name"] for e in rest["project"]["run"]["files"]["edges"]] == ["f1.bin", "f2.bin"]
        # Delete through B: gone on A, and from the bucket.
        b.gql(DELETE_FILES, {"files": [nodes[0]["id"]], "projectId": None})
        assert a.files("admin", "shared", "r1")["fileCount"] == 2
        assert len(s3.keys(bucket)) == 2
        # A user added through one instance's database works on the other.
        key = servers[0].add_user("second")
        assert Client(b.base_url, key).gql("{ viewer { name } }")["viewer"]["name"] == "second"
    finally:
        for server in servers:
            server.stop()


def test_postgres_migrations_run_once_and_are_idempotent(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
            tables = set(inspect(conn).get_table_names())
            pending = {c["name"]: c for c in inspect(conn).get_columns("pending_uploads")}
        assert {"users", "entities", "projects", "runs", "files", "pending_uploads", "settings"} <= tables
        # 0003: the declared size and md5 of signed uploads, NULL for clients that declare nothing.
        assert pending["declared_size"]["nullable"] and pending["declared_md5"]["nullable"]
        assert str(pending["declared_size"]["type"]) == "BIGINT"
    finally:
        engine.dispose()
    create_db_engine(url).dispose()  # a second start changes nothing


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_uploads_keep_the_counter_right(backend: str, tmp_path: Path) -> None:
    """Parallel uploads and re-uploads of the same names, then deletes: fileCount equals the rows."""
    url = None
    if backend == "postgresql":
        from tests.support.services import postgres_cluster

        url = postgres_cluster().create_database()
    server = LiveServer(tmp_path / "data", api_key=ADMIN_KEY, database_url=url).start()
    try:
        client = Client(server.base_url, ADMIN_KEY)
        client.make_run("c", "r")
        names = [f"n{i % 10}.txt" for i in range(40)]

        def upload(name: str, i: int) -> None:
            client.upload("admin", "c", "r", name, str(i).encode())

        threads = [threading.Thread(target=upload, args=(n, i)) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run = client.files("admin", "c", "r")
        assert run["fileCount"] == len(run["files"]["edges"]) == 10
        ids = [e["node"]["id"] for e in run["files"]["edges"]]

        def delete(file_id: str) -> None:
            client.post(DELETE_FILES, {"files": [file_id], "projectId": None})

        threads = [threading.Thread(target=delete, args=(i,)) for i in ids[:5] * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run = client.files("admin", "c", "r")
        assert run["fileCount"] == len(run["files"]["edges"]) == 5
    finally:
        server.stop()
