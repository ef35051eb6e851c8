"""output.log follows the wandb file stream's console lines: appended, rewritten by line number (a progress bar
redrawn with a carriage return), with lines missing in between, after the client uploads its own output.log, and
after the server forgets what it made; each request costs what it carries, not what the run has."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import event, select

from tests.support import Client, md5_b64
from tests.support.inprocess import ADMIN_KEY, in_process_server
from tests.support.services import s3_service
from wandb_files.server.db.models import File
from wandb_files.server.db.streams import OUTPUT, StreamRequest
from wandb_files.server.http.app import _Server
from wandb_files.server.http.filestream import MAX_STREAM_BODY_BYTES, gunzip
from wandb_files.server.storage import LocalBlobStore, S3BlobStore

RunPath = tuple[str, str, str]


def post_stream(client: Client, run_path: RunPath, body: dict[str, Any]) -> None:
    entity, project, run = run_path
    answer = requests.post(
        f"{client.base_url}/files/{entity}/{project}/{run}/file_stream", json=body, auth=client.auth, timeout=30
    )
    assert answer.status_code == 200, answer.text


def stream(client: Client, run_path: RunPath, offset: int, lines: list[str], **extra: object) -> None:
    post_stream(client, run_path, {"files": {"output.log": {"offset": offset, "content": lines}}, **extra})


def complete(client: Client, run_path: RunPath) -> None:
    """The file stream's last request, as the client sends it when the run finishes."""
    post_stream(client, run_path, {"complete": True, "exitcode": 0})


def console(text: str) -> str:
    """A console line as the client streams it: its timestamp, then the text."""
    return f"2026-12-06T10:13:20.876729 {text}"


def output_log(client: Client, run_path: RunPath) -> bytes:
    """output.log as a client downloads it, checked against the size and md5 the listing gives."""
    [edge] = client.files(*run_path, fileNames=["output.log"])["files"]["edges"]
    node = edge["node"]
    data = requests.get(node["url"], auth=client.auth, timeout=30).content
    assert (len(data), md5_b64(data)) == (node["sizeBytes"], node["md5"])
    return data


def expected(texts: list[str]) -> bytes:
    return b"".join(t.encode() + b"\n" for t in texts)


def test_appends_and_rewrites_by_line_number(admin: Client, run_path: RunPath) -> None:
    texts = [f"epoch {i}" for i in range(5)]
    stream(admin, run_path, 0, [console(t) for t in texts])
    assert output_log(admin, run_path) == expected(texts)
    # A progress bar redrawn: its line again, then a new one.
    for percent in (10, 50, 100):
        texts[4:] = [f"train {percent}%|###", "next"]
        stream(admin, run_path, 4, [console(t) for t in texts[4:]])
        assert output_log(admin, run_path) == expected(texts)
    texts += [f"line {i}" for i in range(100)]
    stream(admin, run_path, 6, [console(t) for t in texts[6:]])
    assert output_log(admin, run_path) == expected(texts)
    # Further back than the server keeps line positions for; and a line in the middle (the later ones stay).
    texts[2] = "rewritten long ago"
    stream(admin, run_path, 2, [console("rewritten long ago")])
    assert output_log(admin, run_path) == expected(texts)
    texts[-1] = "the last again"
    stream(admin, run_path, len(texts) - 1, [console("the last again")])
    assert output_log(admin, run_path) == expected(texts)
    texts[-3] = "an outer progress bar, two lines up"  # nested progress bars redraw lines above the last
    stream(admin, run_path, len(texts) - 3, [console(texts[-3])])
    assert output_log(admin, run_path) == expected(texts)


def test_lines_missing_in_between_then_more(admin: Client, run_path: RunPath) -> None:
    stream(admin, run_path, 0, [console("a"), console("b")])
    stream(admin, run_path, 5, [console("f")])  # lines 2-4 never arrived (a lost request)
    assert output_log(admin, run_path) == expected(["a", "b", "f"])
    stream(admin, run_path, 6, [console("g")])
    assert output_log(admin, run_path) == expected(["a", "b", "f", "g"])
    stream(admin, run_path, 2, [console("c"), console("d"), console("e")])  # the lost request, retried
    assert output_log(admin, run_path) == expected(["a", "b", "c", "d", "e", "f", "g"])
    stream(admin, run_path, 7, [console("h")])
    assert output_log(admin, run_path) == expected(list("abcdefgh"))


def test_the_clients_own_output_log_is_replaced_by_the_streamed_lines(admin: Client, run_path: RunPath) -> None:
    stream(admin, run_path, 0, [console("first session")])
    admin.upload(*run_path, "output.log", b"only this session\n")  # as the client does when it finishes
    stream(admin, run_path, 1, [console("second")])
    assert output_log(admin, run_path) == expected(["first session", "second"])
    admin.upload(*run_path, "output.log", b"only this session\n")
    complete(admin, run_path)
    assert output_log(admin, run_path) == expected(["first session", "second"])


# --- in one process: what a request reads and what survives the server forgetting ----------------------------


@pytest.fixture(params=["local", "s3"])
def server(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Server:
    """A server in this process over local blobs, and one over a bucket of the moto S3 server on loopback."""
    if request.param == "local":
        return in_process_server(tmp_path)
    s3 = s3_service()
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return in_process_server(tmp_path, blob_store=f"s3://{s3.create_bucket()}/blobs", s3_endpoint_url=s3.endpoint_url)


def send(srv: _Server, offset: int, texts: list[str]) -> None:
    srv.store_stream(ADMIN_KEY, "admin", "p", "r", StreamRequest(lines={OUTPUT: (offset, [console(t) for t in texts])}))


def read_blob(srv: _Server, key: str) -> bytes:
    store = srv.store
    if isinstance(store, S3BlobStore):
        data: bytes = store.client.get_object(Bucket=store.bucket, Key=store.object_key(key))["Body"].read()
        return data
    assert isinstance(store, LocalBlobStore)
    return store.resolve(key).read_bytes()


def stored_output_log(srv: _Server) -> bytes:
    with srv.sessions() as session:
        row = session.scalars(select(File).where(File.run_id == 1, File.name == "output.log")).one()
    data = read_blob(srv, row.blob_key)
    assert (len(data), md5_b64(data)) == (row.size_bytes, row.md5)
    return data


def test_a_console_request_does_not_read_the_stored_lines(server: _Server) -> None:
    """Whatever the blob store: a request reads no stored line but those after a line it rewrites above the
    last (a bounded range), and the new file is right."""
    texts = [f"line {i}" for i in range(2000)]
    send(server, 0, texts)
    reads: list[tuple[str, Any]] = []

    def record(_conn: object, _cursor: object, sql: str, params: Any, *_: object) -> None:
        if sql.lstrip().upper().startswith("SELECT") and "run_lines" in sql:
            reads.append((sql, params))

    event.listen(server.engine, "before_cursor_execute", record)
    send(server, 2000, ["new"])
    send(server, 2000, ["new 50%"])  # rewritten
    assert reads == []
    assert stored_output_log(server) == expected([*texts, "new 50%"])
    send(server, 1998, ["two up"])  # a line above the last rewritten: the ones after it stay
    [(sql, params)] = reads
    assert "line_no <" in sql and tuple(params)[-2:] == (1999, 2001)  # only the two lines after it
    assert stored_output_log(server) == expected([*texts[:1998], "two up", texts[1999], "new 50%"])
    send(server, 1990, ["ten up", "nine up"])
    assert stored_output_log(server) == expected(
        [*texts[:1990], "ten up", "nine up", *texts[1992:1998], "two up", texts[1999], "new 50%"]
    )


def test_a_server_that_forgot_makes_the_file_from_the_stored_lines(server: _Server) -> None:
    send(server, 0, ["a", "b"])
    del server.__dict__["_output_logs"]  # as after a restart, or another server process
    send(server, 1, ["B", "c"])
    assert stored_output_log(server) == expected(["a", "B", "c"])
    send(server, 3, ["d"])
    assert stored_output_log(server) == expected(["a", "B", "c", "d"])


def test_a_blob_removed_behind_the_servers_back_is_made_again_from_the_stored_lines(
    server: _Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The previous file is gone (an operator's cleanup, a lifecycle rule): the request still succeeds, and the
    file is made from every stored line, once; the next request builds on that one again."""
    send(server, 0, ["a", "b"])
    with server.sessions() as session:
        key = session.scalars(select(File.blob_key).where(File.run_id == 1, File.name == "output.log")).one()
    server.store.delete(key)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "wandb_files.server" and r.levelname == "WARNING"]

    with caplog.at_level("WARNING", logger="wandb_files.server"):
        send(server, 2, ["c"])
        assert stored_output_log(server) == expected(["a", "b", "c"])
        assert len(warnings()) == 1 and "made from every stored line" in warnings()[0]
        send(server, 3, ["d"])
        assert stored_output_log(server) == expected(["a", "b", "c", "d"])
        assert len(warnings()) == 1


def test_gzipped_requests_are_read_and_a_gzip_bomb_is_refused(admin: Client, run_path: RunPath) -> None:
    """wandb-core may gzip its requests; what they expand to is bounded like the body itself, before any key
    lookup (a few hundred kilobytes of zeros expand to more than the limit)."""
    entity, project, run = run_path
    url = f"{admin.base_url}/files/{entity}/{project}/{run}/file_stream"

    def post(data: bytes) -> requests.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return requests.post(url, data=data, headers=headers, auth=admin.auth, timeout=60)

    body = json.dumps({"files": {"output.log": {"offset": 0, "content": [console("zipped")]}}}).encode()
    assert post(gzip.compress(body)).status_code == 200
    assert output_log(admin, run_path) == expected(["zipped"])
    bomb = gzip.compress(b" " * (MAX_STREAM_BODY_BYTES + 1), compresslevel=9)
    assert len(bomb) < MAX_STREAM_BODY_BYTES // 100
    answer = post(bomb)
    assert answer.status_code == 413, answer.text
    assert post(gzip.compress(body)[:-5]).status_code == 400  # cut short
    assert output_log(admin, run_path) == expected(["zipped"])


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"{}" * 1000, bytes(range(256)) * 300],
)
def test_gunzip_agrees_with_the_gzip_module(data: bytes) -> None:
    one = gzip.compress(data)
    assert gunzip(one, 1 << 20) == gzip.decompress(one)
    two = one + gzip.compress(data[::-1])  # two members, as `cat a.gz b.gz` makes
    assert gunzip(two, 1 << 20) == gzip.decompress(two)
    if data:
        assert gunzip(one, len(data) - 1) is None
        assert gunzip(one, len(data)) == data
    with pytest.raises(EOFError):
        gunzip(one[:-9], 1 << 20)
    with pytest.raises(zlib.error):
        gunzip(b"not gzip", 1 << 20)
