"""The byte path without the database: directUrl tokens that carry what the response needs, the short-lived
key cache of `url` downloads (and its revocation bound), and `--workers N`."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import delete, update

from tests.support import DELETE_FILES, Client, LiveServer, blob_files, md5_b64, random_bytes, start_server, stop_server
from wandb_files.server.config import ServerConfig
from wandb_files.server.db.database import create_db_engine
from wandb_files.server.db.models import File, User
from wandb_files.server.db.users import hash_api_key

RunPath = tuple[str, str, str]


def _node(client: Client, run_path: RunPath, name: str) -> dict:
    edges = client.files(*run_path, fileNames=[name])["files"]["edges"]
    assert len(edges) == 1, edges
    return edges[0]["node"]


def _execute(server: LiveServer, statement: object) -> None:
    """Change the server's database behind its back, as another server process or an operator would."""
    engine = create_db_engine(ServerConfig(data_dir=server.data_dir, database_url=server.database_url).database)
    try:
        with engine.begin() as connection:
            connection.execute(statement)  # type: ignore[call-overload]
    finally:
        engine.dispose()


def test_direct_url_is_served_from_its_token_and_the_blob_alone(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    data = random_bytes(3000)
    admin.upload(*run_path, "media/pic one.png", data)
    node = _node(admin, run_path, "media/pic one.png")
    by_key = requests.get(node["url"], auth=admin.auth, timeout=10)
    direct = requests.get(node["directUrl"], timeout=10)
    assert direct.status_code == 200 and direct.content == data == by_key.content
    for header in ("content-type", "content-length", "etag", "content-disposition"):
        assert direct.headers[header] == by_key.headers[header], header
    assert direct.headers["etag"] == '"' + base64.b64decode(md5_b64(data)).hex() + '"'
    assert direct.headers["content-type"] == "image/png"
    # The row gone (behind the server's back) but the blob still there: the token still serves it, so no
    # database was asked. The blob gone: 404.
    _execute(live_server, delete(File).where(File.md5 == md5_b64(data)))
    again = requests.get(node["directUrl"], timeout=10)
    assert again.status_code == 200 and again.content == data
    head = requests.head(node["directUrl"], timeout=10)
    assert head.status_code == 200 and head.headers["content-length"] == "3000" and head.content == b""
    for blob in blob_files(live_server.data_dir):
        if blob.read_bytes() == data:
            blob.unlink()
    assert requests.get(node["directUrl"], timeout=10).status_code == 404


def test_direct_url_of_a_deleted_or_replaced_file_is_404_never_the_new_bytes(admin: Client, run_path: RunPath) -> None:
    admin.upload(*run_path, "a.bin", b"old a")
    admin.upload(*run_path, "b.bin", b"old b")
    old_a, old_b = _node(admin, run_path, "a.bin"), _node(admin, run_path, "b.bin")
    admin.upload(*run_path, "a.bin", b"new a!")  # replaced: same name, new blob, same size would not matter
    admin.gql(DELETE_FILES, {"files": [old_b["id"]]})
    assert requests.get(old_a["directUrl"], timeout=10).status_code == 404
    assert requests.get(old_b["directUrl"], timeout=10).status_code == 404
    assert requests.get(_node(admin, run_path, "a.bin")["directUrl"], timeout=10).content == b"new a!"


def test_a_token_whose_contents_were_changed_is_403(admin: Client, run_path: RunPath) -> None:
    admin.upload(*run_path, "x.txt", b"hello")
    admin.upload(*run_path, "y.txt", b"other")
    base, token_x = _node(admin, run_path, "x.txt")["directUrl"].rsplit("/", 1)
    token_y = _node(admin, run_path, "y.txt")["directUrl"].rsplit("/", 1)[1]
    # y's contents (blob key, size, md5, type) under x's signature.
    spliced = token_y.split(".")[0] + "." + ".".join(token_x.split(".")[1:])
    response = requests.get(f"{base}/{spliced}", timeout=10)
    assert response.status_code == 403 and "not valid" in response.json()["error"]


def test_downloads_after_a_reupload_or_delete_never_serve_stale_bytes(admin: Client, run_path: RunPath) -> None:
    """The key cache remembers where a file's blob is; the blob's existence stays the truth."""
    admin.upload(*run_path, "f.bin", b"one")
    url = _node(admin, run_path, "f.bin")["url"]
    assert requests.get(url, auth=admin.auth, timeout=10).content == b"one"  # now cached
    admin.upload(*run_path, "f.bin", b"two")
    assert requests.get(url, auth=admin.auth, timeout=10).content == b"two"
    admin.gql(DELETE_FILES, {"files": [_node(admin, run_path, "f.bin")["id"]]})
    assert requests.get(url, auth=admin.auth, timeout=10).status_code == 404


@pytest.fixture(scope="module")
def cache_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("cache") / "data", "c" * 40, "--key-cache-seconds", "1")
    yield server
    stop_server(server)


def test_a_revoked_key_stops_working_within_the_cache_bound(cache_server: LiveServer) -> None:
    key = cache_server.add_user("revoked")
    client = Client(cache_server.base_url, key)
    client.make_run("p", "r", entity="revoked")
    client.upload("revoked", "p", "r", "f.txt", b"secret")
    url = _node(client, ("revoked", "p", "r"), "f.txt")["url"]
    assert requests.get(url, auth=client.auth, timeout=10).content == b"secret"  # key and file now cached
    assert client.post("query { viewer { id } }").status_code == 200
    _execute(cache_server, update(User).where(User.name == "revoked").values(api_key_sha256=hash_api_key("x" * 40)))
    revoked_at = time.monotonic()
    while requests.get(url, auth=client.auth, timeout=10).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0 + 1.0, "the revoked key still works after the bound"
        time.sleep(0.05)
    # Every process's cache (with --workers, each has its own) has let go once the bound is over.
    time.sleep(max(0.0, revoked_at + 1.0 + 0.1 - time.monotonic()))
    for _ in range(6):
        assert requests.get(url, auth=client.auth, timeout=10).status_code == 401
    # GraphQL requests trust the same cache, with the same bound.
    assert client.post("query { viewer { id } }").status_code == 401


def test_workers_serve_and_shut_down_gracefully(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "w" * 40, "--workers", "2")
    try:
        assert server.process is not None
        client = Client(server.base_url, server.api_key)
        client.make_run("p", "r")
        big = random_bytes(64 * 1024 * 1024)
        client.upload("admin", "p", "r", "big.bin", big)
        for i in range(10):  # writes through both processes on one SQLite file (WAL)
            client.upload("admin", "p", "r", f"f{i}.txt", b"%d" % i)
        assert client.files("admin", "p", "r")["fileCount"] == 11
        url = _node(client, ("admin", "p", "r"), "big.bin")["url"]
        with requests.get(url, auth=client.auth, stream=True, timeout=30) as response:
            first = next(response.iter_content(1024 * 1024))
            server.process.terminate()  # SIGTERM while the download is under way: it finishes first
            rest = b"".join(response.iter_content(1024 * 1024))
        assert first + rest == big
        assert server.process.wait(timeout=30) == 0
        log = server.log()
        assert log.count("Started server process") == 2 and log.count("Finished server process") == 2
        # One migration run, by the process that started the workers.
        assert log.count("Running upgrade  -> 0001") == 1
    finally:
        stop_server(server)


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the parent (BackgroundServer's last resort) must not leave workers serving the port."""
    server = start_server(tmp_path / "data", "o" * 40, "--workers", "2")
    try:
        assert server.process is not None
        parent = server.process.pid
        workers = [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        assert len(workers) >= 2
        server.process.kill()
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers):
            assert time.monotonic() < deadline, "workers outlived their parent"
            time.sleep(0.2)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.base_url}/healthz", timeout=2)
    finally:
        stop_server(server)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
