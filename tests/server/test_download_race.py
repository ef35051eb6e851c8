"""Downloads racing with re-uploads and deletes: old bytes or a clean 404, never a 500.

These drive the app's own download code in-process, so the race is placed exactly, not hoped for.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.support.inprocess import ADMIN_KEY as KEY
from tests.support.inprocess import in_process_server
from wandb_files.server.http.app import _Server
from wandb_files.server.http.downloads import BlobResponse
from wandb_files.server.http.state import HttpError


@pytest.fixture
def server(tmp_path: Path) -> _Server:
    return in_process_server(tmp_path)


def store(srv: _Server, data: bytes, name: str = "model.bin") -> None:
    temp = srv.config.tmp_dir / f"t-{hashlib.md5(data).hexdigest()}"
    temp.write_bytes(data)
    srv.commit_upload(1, name, temp, len(data), base64.b64encode(hashlib.md5(data).digest()).decode())


def serve(response: BlobResponse, headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """Run an ASGI response; return its status and body."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "headers": headers or [],
        "asgi": {"spec_version": "2.4"},
        "extensions": {"http.response.pathsend": {}},  # must not be used: it would reopen the path
    }
    asyncio.run(response(scope, receive, send))
    assert all(m["type"] != "http.response.pathsend" for m in sent)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_reupload_after_open_serves_old_bytes(server: _Server) -> None:
    store(server, b"old" * 1000)
    response = server.open_file(KEY, "admin", "p", "r", "model.bin")
    store(server, b"new" * 10)  # unlinks the old blob before the response starts
    assert serve(response) == (200, b"old" * 1000)
    ranged = server.open_file(KEY, "admin", "p", "r", "model.bin")
    store(server, b"newer")
    assert serve(ranged, [(b"range", b"bytes=2-4")]) == (206, b"w" + b"ne")


def test_reupload_between_lookup_and_open_serves_new_bytes(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    store(server, b"old")
    real_find = server._lookup
    calls = 0

    def find_then_reupload(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        found = real_find(*args)
        if calls == 1:
            store(server, b"new")  # the row just read now points at a deleted blob
        return found

    monkeypatch.setattr(server, "_lookup", find_then_reupload)
    assert serve(server.open_file(KEY, "admin", "p", "r", "model.bin")) == (200, b"new")
    assert calls == 2


def test_blob_gone_for_good_is_404(server: _Server) -> None:
    store(server, b"x")
    for blob in (server.config.blob_dir).rglob("*"):
        if blob.is_file():
            blob.unlink()
    with pytest.raises(HttpError) as exc:
        server.open_file(KEY, "admin", "p", "r", "model.bin")
    assert exc.value.status == 404


def test_direct_url_after_reupload_is_404(server: _Server) -> None:
    store(server, b"old")
    with server.sessions() as session:
        from wandb_files.server.db.models import File

        old = session.query(File).one()
    token = server.signer.blob_token(old.blob_key, size=3, md5=old.md5, mimetype=old.mimetype, filename="model.bin")
    response = server.open_blob_ref(server.signer.read_blob_token(token))
    assert response is not None
    response.close()
    store(server, b"new")
    assert server.open_blob_ref(server.signer.read_blob_token(token)) is None
