"""Uploading, listing, downloading and deleting files."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support import (
    CREATE_FILES,
    DELETE_FILES,
    RUN_FILES,
    Client,
    LiveServer,
    blob_files,
    md5_b64,
    random_bytes,
    start_server,
    stop_server,
)
from tests.support.web import seed_files

RunPath = tuple[str, str, str]


def _one(admin: Client, run_path: RunPath, name: str) -> dict:
    edges = admin.files(*run_path, fileNames=[name])["files"]["edges"]
    assert len(edges) == 1, edges
    return edges[0]["node"]


def test_upload_then_listing_shows_size_and_md5(admin: Client, run_path: RunPath) -> None:
    data = random_bytes(12345)
    answer = admin.upload(*run_path, "media/images/pic 1.png", data)
    assert answer == {"name": "media/images/pic 1.png", "sizeBytes": 12345, "md5": md5_b64(data)}
    node = _one(admin, run_path, "media/images/pic 1.png")
    assert node["sizeBytes"] == 12345
    assert node["md5"] == md5_b64(data)
    assert node["mimetype"] == "image/png"
    entity, project, run = run_path
    assert node["url"] == f"{admin.base_url}/files/{entity}/{project}/{run}/media/images/pic%201.png"
    # The authenticated URL serves the bytes.
    response = requests.get(node["url"], auth=admin.auth, timeout=10)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert response.headers["content-type"] == "image/png"
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["content-length"] == "12345"
    head = requests.head(node["url"], auth=admin.auth, timeout=10)
    assert head.status_code == 200 and head.headers["content-length"] == "12345" and head.content == b""
    assert requests.get(node["url"], timeout=10).status_code == 401
    assert admin.files(*run_path)["fileCount"] == 1


def test_create_run_files_answer(admin: Client, run_path: RunPath) -> None:
    entity, project, run = run_path
    created = admin.gql(
        CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["a.txt", "b/c.txt"]}
    )["createRunFiles"]
    assert created["runID"]
    assert created["uploadHeaders"] == []
    assert [f["name"] for f in created["files"]] == ["a.txt", "b/c.txt"]
    assert all(f["uploadUrl"].startswith(f"{admin.base_url}/uploads/") for f in created["files"])
    # Nothing exists until the bytes are PUT.
    assert admin.files(*run_path)["fileCount"] == 0


def test_create_run_files_needs_existing_run(admin: Client, unique: str) -> None:
    admin.make_run(f"p-{unique}", "r")
    error = admin.gql_error(
        CREATE_FILES, {"entity": "admin", "project": f"p-{unique}", "run": "missing", "files": ["a"]}
    )
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_reupload_replaces_bytes_and_leaves_no_orphan_blob(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    admin.upload(*run_path, "model.bin", random_bytes(1000))
    count_after_first = len(blob_files(live_server.data_dir))
    node_before = _one(admin, run_path, "model.bin")
    new = random_bytes(2000)
    # Re-upload through the file's own url(upload: true).
    upload_url = admin.files(*run_path, fileNames=["model.bin"], upload=True)["files"]["edges"][0]["node"]["url"]
    assert "/uploads/" in upload_url
    assert requests.put(upload_url, data=new, timeout=10).status_code == 200
    assert len(blob_files(live_server.data_dir)) == count_after_first
    node = _one(admin, run_path, "model.bin")
    assert node["id"] == node_before["id"]
    assert node["sizeBytes"] == 2000 and node["md5"] == md5_b64(new)
    assert requests.get(node["url"], auth=admin.auth, timeout=10).content == new
    # The old direct URL pointed at the replaced blob.
    assert requests.get(node_before["directUrl"], timeout=10).status_code == 404
    assert admin.files(*run_path)["fileCount"] == 1


def test_direct_url_ranges(admin: Client, run_path: RunPath) -> None:
    data = random_bytes(5000)
    admin.upload(*run_path, "data.bin", data)
    node = _one(admin, run_path, "data.bin")
    direct = node["directUrl"]
    full = requests.get(direct, timeout=10)
    assert full.status_code == 200 and full.content == data
    etag = full.headers["etag"]

    part = requests.get(direct, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == "bytes 100-199/5000"

    current = requests.get(direct, headers={"Range": "bytes=10-19", "If-Range": etag}, timeout=10)
    assert current.status_code == 206 and current.content == data[10:20]
    stale = requests.get(direct, headers={"Range": "bytes=10-19", "If-Range": '"0123abcd"'}, timeout=10)
    assert stale.status_code == 200 and stale.content == data


def test_tampered_direct_url_is_403(admin: Client, run_path: RunPath) -> None:
    admin.upload(*run_path, "x.txt", b"hello")
    direct = _one(admin, run_path, "x.txt")["directUrl"]
    base, token = direct.rsplit("/", 1)
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    assert requests.get(f"{base}/{tampered}", timeout=10).status_code == 403
    assert requests.get(f"{base}/garbage", timeout=10).status_code == 403
    # An upload token is not a download token.
    upload = admin.files(*run_path, fileNames=["x.txt"], upload=True)["files"]["edges"][0]["node"]["url"]
    assert requests.get(f"{base}/{upload.rsplit('/', 1)[1]}", timeout=10).status_code == 403
    assert requests.put(f"{admin.base_url}/uploads/{token}", data=b"x", timeout=10).status_code == 403


@pytest.fixture(scope="module")
def short_ttl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("short") / "data", "k" * 40, "--signed-url-ttl", "1", "--max-upload-bytes", "1000"
    )
    yield server
    stop_server(server)


def test_expired_urls_are_403(short_ttl_server: LiveServer) -> None:
    client = Client(short_ttl_server.base_url, short_ttl_server.api_key)
    client.make_run("p", "r")
    client.upload("admin", "p", "r", "a.txt", b"abc")
    direct = _one(client, ("admin", "p", "r"), "a.txt")["directUrl"]
    upload = client.gql(CREATE_FILES, {"entity": "admin", "project": "p", "run": "r", "files": ["b.txt"]})
    upload_url = upload["createRunFiles"]["files"][0]["uploadUrl"]
    time.sleep(2.1)  # tokens carry whole-second timestamps; ttl 1 s is surely over after 2 s
    response = requests.get(direct, timeout=10)
    assert response.status_code == 403
    assert "expired" in response.json()["error"]
    response = requests.put(upload_url, data=b"x", timeout=10)
    assert response.status_code == 403
    assert "expired" in response.json()["error"]


def test_upload_over_limit_is_413_and_stores_nothing(short_ttl_server: LiveServer) -> None:
    client = Client(short_ttl_server.base_url, short_ttl_server.api_key)
    client.make_run("p", "big")

    def url() -> str:
        # A fresh URL for each PUT: with a 1 s lifetime and whole-second stamps, one may expire within ms.
        created = client.gql(CREATE_FILES, {"entity": "admin", "project": "p", "run": "big", "files": ["big.bin"]})
        return str(created["createRunFiles"]["files"][0]["uploadUrl"])

    assert requests.put(url(), data=random_bytes(1001), timeout=10).status_code == 413

    # Without Content-Length (chunked), the limit is enforced while streaming.
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield random_bytes(300)

    assert requests.put(url(), data=chunks(), timeout=10).status_code == 413
    assert client.files("admin", "p", "big")["fileCount"] == 0
    assert list((short_ttl_server.data_dir / "tmp").iterdir()) == []
    assert requests.put(url(), data=random_bytes(1000), timeout=10).status_code == 200


def test_short_body_is_400_and_stores_nothing(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    entity, project, run = run_path
    created = admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["short.bin"]})
    url = urlsplit(created["createRunFiles"]["files"][0]["uploadUrl"])
    blobs_before = len(blob_files(live_server.data_dir))
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 10
        )
        sock.shutdown(socket.SHUT_WR)  # the body ends early
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    # The client has gone, so a reply is not guaranteed; if one comes it must be the 400.
    print("reply to short body:", reply[:200])
    if reply:
        assert reply.startswith(b"HTTP/1.1 400"), reply
        assert b"ended early" in reply
    assert admin.files(*run_path)["fileCount"] == 0
    assert len(blob_files(live_server.data_dir)) == blobs_before
    deadline = time.monotonic() + 5
    while list((live_server.data_dir / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((live_server.data_dir / "tmp").iterdir()) == []


def test_bad_file_names_are_refused_and_nothing_created(admin: Client, run_path: RunPath) -> None:
    entity, project, run = run_path
    for bad in [
        "../x",
        "/etc/passwd",
        "a//b",
        "C:\\x",
        "C:x",
        "a\x00b",
        "a/./b",
        "dir/",
        "",
        "tab\there",
        "é" * 513,
        "x" * 256,
        "ok/" + "é" * 128 + "/y",
        "report\u202etxt.exe",
        "csi\u009b2J",
        "iso\u2066late",
        "mark\u200fx",
        "line\u2028sep",
        "lone\ud800",
    ]:
        response = admin.post(
            CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["fine.txt", bad]}
        )
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", bad
        assert "invalid file name" in error["message"]
        assert response.json()["data"] is None or response.json()["data"]["createRunFiles"] is None
    assert admin.files(*run_path)["fileCount"] == 0


def test_a_name_and_a_folder_of_that_name_cannot_both_be_files(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    """No file system holds both `a` and `a/b`: refused at upload, so every run can be downloaded."""
    entity, project, run = run_path
    admin.upload(*run_path, "ckpt", b"a file")
    admin.upload(*run_path, "logs/train/out.txt", b"deep")

    for clash in (["ckpt/epoch_1.pt"], ["logs"], ["logs/train"], ["new", "new/inner.txt"]):
        error = admin.gql_error(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": clash})
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and "clashes" in error["message"], clash
    # Re-uploading an existing name, and names that only share a prefix, are fine.
    admin.upload(*run_path, "ckpt", b"a new version")
    admin.upload(*run_path, "ckpt.bak", b"x")
    admin.upload(*run_path, "logs0", b"x")

    # Signed before the clash existed, stored after: the PUT that would make the clash is refused with 409.
    url = admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["late/x.txt"]})
    admin.upload(*run_path, "late", b"first")
    response = requests.put(url["createRunFiles"]["files"][0]["uploadUrl"], data=b"second", timeout=10)
    assert response.status_code == 409 and "clashes" in response.json()["error"]
    names = sorted(e["node"]["name"] for e in admin.files(*run_path)["files"]["edges"])
    assert names == ["ckpt", "ckpt.bak", "late", "logs/train/out.txt", "logs0"]
    assert admin.files(*run_path)["fileCount"] == 5


def test_keyset_paging_through_all_files(admin: Client, run_path: RunPath) -> None:
    names = [f"f_{i:03d}.bin" for i in range(23)]
    for name in reversed(names):  # upload order must not matter
        admin.upload(*run_path, name, name.encode())

    def walk(first: int) -> list[dict]:
        edges: list[dict] = []
        cursor = None
        while True:
            files = admin.files(*run_path, fileLimit=first, fileCursor=cursor)
            assert files["fileCount"] == 23
            page = files["files"]["edges"]
            assert len(page) <= first
            assert all(e["cursor"] for e in page)
            if page:
                assert files["files"]["pageInfo"]["endCursor"] == page[-1]["cursor"]
            edges += page
            if not files["files"]["pageInfo"]["hasNextPage"]:
                return edges
            cursor = page[-1]["cursor"]

    first_walk = walk(5)
    got = [e["node"]["name"] for e in first_walk]
    assert got == names
    # Cursors are stable: the same file gets the same cursor on another walk with another page size.
    second_walk = walk(7)
    assert [e["cursor"] for e in second_walk] == [e["cursor"] for e in first_walk]
    single_page = walk(10000)
    assert [(e["node"]["id"], e["cursor"]) for e in single_page] == [(e["node"]["id"], e["cursor"]) for e in first_walk]


def test_deleting_between_pages_neither_skips_nor_repeats(admin: Client, run_path: RunPath) -> None:
    names = [f"g_{i:02d}" for i in range(12)]
    for name in names:
        admin.upload(*run_path, name, b"x")
    page1 = admin.files(*run_path, fileLimit=5)["files"]
    seen = [e["node"]["name"] for e in page1["edges"]]
    assert seen == names[:5]
    # Delete one already seen and one not yet seen.
    doomed = [page1["edges"][1]["node"]["id"], _one(admin, run_path, "g_08")["id"]]
    assert admin.gql(DELETE_FILES, {"files": doomed})["deleteFiles"]["success"] is True
    cursor = page1["edges"][-1]["cursor"]
    while True:
        page = admin.files(*run_path, fileLimit=5, fileCursor=cursor)["files"]
        seen += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["edges"][-1]["cursor"]
    assert seen == [n for n in names if n != "g_08"]


def test_names_and_pattern_filters(admin: Client, run_path: RunPath) -> None:
    for name in ["a.json", "b.json", "c.txt", "dir/d.json", "ab_json", "e%.json"]:
        admin.upload(*run_path, name, name.encode())
    by_names = admin.files(*run_path, fileNames=["c.txt", "a.json", "missing"])
    assert [e["node"]["name"] for e in by_names["files"]["edges"]] == ["a.json", "c.txt"]
    assert by_names["fileCount"] == 6  # fileCount is the whole run, whatever the filter
    everything = admin.files(*run_path, fileNames=[])
    assert len(everything["files"]["edges"]) == 6
    json_files = admin.files(*run_path, pattern="%.json")
    assert [e["node"]["name"] for e in json_files["files"]["edges"]] == ["a.json", "b.json", "dir/d.json", "e%.json"]
    escaped = admin.files(*run_path, pattern="%\\%.json")
    assert [e["node"]["name"] for e in escaped["files"]["edges"]] == ["e%.json"]
    case = admin.files(*run_path, pattern="%.JSON")  # LIKE is case-sensitive, as on PostgreSQL
    assert case["files"]["edges"] == []
    error = admin.post(
        RUN_FILES,
        {
            "entity": run_path[0],
            "project": run_path[1],
            "name": run_path[2],
            "fileNames": ["a.json"],
            "pattern": "%.json",
        },
    ).json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "pattern" in error["message"]


def test_updated_at_is_utc_to_the_second_with_a_z(live_server: LiveServer, admin: Client, run_path: RunPath) -> None:
    """The wire text of updatedAt, which W&B's clients parse: seconds truncated (never rounded up), a Z, no offset;
    the same for every shape of page query (plain, after a cursor, by names, by pattern)."""
    seed_files(live_server, run_path, ["a.txt"], updated_at=datetime(2026, 12, 31, 23, 59, 59, 999999))
    seed_files(live_server, run_path, ["b.txt"], updated_at=datetime(2026, 1, 2, 3, 4, 5))
    wire = {"a.txt": "2026-12-31T23:59:59Z", "b.txt": "2026-01-02T03:04:05Z"}
    first = admin.files(*run_path, fileLimit=1)["files"]
    pages = [
        first,
        admin.files(*run_path, fileCursor=first["pageInfo"]["endCursor"])["files"],
        admin.files(*run_path, fileNames=["b.txt", "a.txt"])["files"],
        admin.files(*run_path, pattern="%.txt")["files"],
    ]
    seen = [{e["node"]["name"]: e["node"]["updatedAt"] for e in page["edges"]} for page in pages]
    assert seen == [{"a.txt": wire["a.txt"]}, {"b.txt": wire["b.txt"]}, wire, wire]


@pytest.mark.parametrize("first", [-1, 10001])
def test_first_out_of_range_is_bad_input(admin: Client, run_path: RunPath, first: int) -> None:
    response = admin.post(
        RUN_FILES, {"entity": run_path[0], "project": run_path[1], "name": run_path[2], "fileLimit": first}
    )
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first" in error["message"]


def test_first_zero_returns_no_edges(admin: Client, run_path: RunPath) -> None:
    admin.upload(*run_path, "one", b"1")
    files = admin.files(*run_path, fileLimit=0)["files"]
    assert files["edges"] == [] and files["pageInfo"]["hasNextPage"] is True


def test_bogus_cursor_is_bad_input(admin: Client, run_path: RunPath) -> None:
    for bogus in ["bogus", "Zm9vYmFy", "!!!"]:
        response = admin.post(
            RUN_FILES, {"entity": run_path[0], "project": run_path[1], "name": run_path[2], "fileCursor": bogus}
        )
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"] == "invalid cursor"


def test_delete_files_removes_row_and_blob(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    admin.upload(*run_path, "keep.txt", b"keep")
    admin.upload(*run_path, "gone.txt", b"gone")
    blobs_before = len(blob_files(live_server.data_dir))
    files = admin.files(*run_path)
    gone = next(e["node"] for e in files["files"]["edges"] if e["node"]["name"] == "gone.txt")
    result = admin.gql(DELETE_FILES, {"files": [gone["id"]], "projectId": files["projectId"]})
    assert result["deleteFiles"]["success"] is True
    assert [e["node"]["name"] for e in admin.files(*run_path)["files"]["edges"]] == ["keep.txt"]
    assert len(blob_files(live_server.data_dir)) == blobs_before - 1
    assert requests.get(gone["url"], auth=admin.auth, timeout=10).status_code == 404
    # Deleting it again: it no longer exists.
    error = admin.gql_error(DELETE_FILES, {"files": [gone["id"]]})
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_delete_files_is_all_or_nothing(admin: Client, run_path: RunPath) -> None:
    admin.upload(*run_path, "a", b"a")
    file_id = _one(admin, run_path, "a")["id"]
    project_id = admin.files(*run_path)["projectId"]
    error = admin.gql_error(DELETE_FILES, {"files": [file_id, "not-an-id"]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    missing = base64.b64encode(b"File:999999999").decode()
    assert admin.gql_error(DELETE_FILES, {"files": [file_id, missing]})["extensions"]["code"] == "NOT_FOUND"
    wrong_project = admin.gql_error(DELETE_FILES, {"files": [file_id], "projectId": project_id + 100000})
    assert wrong_project["extensions"]["code"] == "BAD_USER_INPUT"
    assert admin.files(*run_path)["fileCount"] == 1


def test_unknown_file_url_is_404(admin: Client, run_path: RunPath, tmp_path: Path) -> None:
    entity, project, run = run_path
    response = requests.get(f"{admin.base_url}/files/{entity}/{project}/{run}/nope.txt", auth=admin.auth, timeout=10)
    assert response.status_code == 404


def test_upload_with_http_client_content_length(admin: Client, run_path: RunPath) -> None:
    # A plain PUT the way W&B's uploader sends it: raw bytes with Content-Length.
    entity, project, run = run_path
    created = admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["w.bin"]})
    url = urlsplit(created["createRunFiles"]["files"][0]["uploadUrl"])
    data = random_bytes(3 * 1024 * 1024 + 7)  # spans several write buffers
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("PUT", url.path, body=data, headers={"Content-Length": str(len(data))})
    response = conn.getresponse()
    assert response.status == 200, response.read()
    conn.close()
    node = _one(admin, run_path, "w.bin")
    assert node["sizeBytes"] == len(data) and node["md5"] == md5_b64(data)
