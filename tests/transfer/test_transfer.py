"""Downloads, uploads and deletes against the live server: bytes, flags, integrity, safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import wandb_files
import wandb_files.retry
from tests.support import FAST_RETRY, LiveServer, md5_b64, run_with_files
from wandb_files import File, transfer
from wandb_files.errors import IntegrityError, NotFoundError

SIZES = {"empty.bin": 0, "one.bin": 1, "small.bin": 1000, "chunky/three_mib.bin": 3 * 1024 * 1024 + 7}


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    api.client.retry = FAST_RETRY
    return api


@pytest.fixture
def binary_run(api: wandb_files.Api, tmp_path: Path) -> tuple[wandb_files.Run, dict[str, bytes]]:
    contents = {name: os.urandom(size) for name, size in SIZES.items()}
    contents["deep/er/nested/notes.txt"] = "héllo wörld\n".encode()
    return run_with_files(api, tmp_path, contents, "transfer"), contents


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_md5_round_trip_of_random_binary_files(binary_run: tuple, tmp_path: Path) -> None:
    run, contents = binary_run
    dest = tmp_path / "out"
    for f in run.files():
        assert f.md5 == md5_b64(contents[f.name])
        f.download(root=dest).close()
    for name, data in contents.items():
        assert (dest / name).read_bytes() == data, name
    assert no_temp_files(dest)


def test_download_returns_the_opened_file(binary_run: tuple, tmp_path: Path) -> None:
    run, _ = binary_run
    with run.file("deep/er/nested/notes.txt").download(root=tmp_path) as opened:
        assert opened.read() == "héllo wörld\n"
        assert Path(opened.name) == (tmp_path / "deep/er/nested/notes.txt").resolve()


def test_existing_file_flags_follow_wandb(binary_run: tuple, tmp_path: Path) -> None:
    run, contents = binary_run
    f = run.file("small.bin")
    target = tmp_path / "small.bin"
    target.write_bytes(b"local edits")
    with pytest.raises(ValueError, match="replace=True"):
        f.download(root=tmp_path)
    assert target.read_bytes() == b"local edits"
    f.download(root=tmp_path, exist_ok=True).close()
    assert target.read_bytes() == b"local edits"  # exist_ok keeps it, no download
    f.download(root=tmp_path, replace=True).close()
    assert target.read_bytes() == contents["small.bin"]
    f.download(root=tmp_path, replace=True, exist_ok=True).close()
    assert target.read_bytes() == contents["small.bin"]


def test_download_with_another_api(binary_run: tuple, live_server: LiveServer, tmp_path: Path) -> None:
    run, contents = binary_run
    other = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    detached = File(None, {"name": "one.bin", "url": run.file("one.bin").url})  # type: ignore[arg-type]
    detached.download(root=tmp_path, api=other).close()
    assert (tmp_path / "one.bin").read_bytes() == contents["one.bin"]


def test_corrupted_bytes_raise_integrity_error_and_leave_nothing(
    binary_run: tuple, live_server: LiveServer, tmp_path: Path
) -> None:
    run, contents = binary_run
    blob = next(
        p
        for p in (live_server.data_dir / "blobs").rglob("*")
        if p.is_file() and p.read_bytes() == contents["small.bin"]
    )
    data = bytearray(blob.read_bytes())
    data[500] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="small.bin.*md5"):
        run.file("small.bin").download(root=tmp_path)
    assert not (tmp_path / "small.bin").exists()
    assert no_temp_files(tmp_path)


def test_names_that_escape_the_root_are_refused(api: wandb_files.Api, binary_run: tuple, tmp_path: Path) -> None:
    run, _ = binary_run
    url = run.file("one.bin").url
    root = tmp_path / "root"
    for name in ["../evil", "a/../../evil", "/etc/evil", "C:\\evil", "\\\\server\\evil", "a\x00b", ""]:
        with pytest.raises(ValueError, match="refusing"):
            File(api.client, {"name": name, "url": url}, run).download(root=root)
    assert not (tmp_path / "evil").exists()
    assert not root.exists() or not any(root.iterdir())


def test_symlink_out_of_root_is_refused(api: wandb_files.Api, binary_run: tuple, tmp_path: Path) -> None:
    run, _ = binary_run
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symbolic link"):
        File(api.client, {"name": "link/evil", "url": run.file("one.bin").url}, run).download(root=root)
    assert not (tmp_path / "evil").exists()


def test_a_symlinked_folder_inside_root_is_not_followed_either(
    api: wandb_files.Api, binary_run: tuple, tmp_path: Path
) -> None:
    """Even pointing inside root, a link would make the download change a path it does not name."""
    run, _ = binary_run
    root = tmp_path / "root"
    (root / "elsewhere").mkdir(parents=True)
    (root / "deep").symlink_to(root / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link"):
        run.file("deep/er/nested/notes.txt").download(root=root)
    assert list((root / "elsewhere").iterdir()) == []


def _precious(folder: Path) -> tuple[Path, Path]:
    """`folder/precious.ckpt` and a link `folder/one.bin` pointing at it, as a user's `latest` link would."""
    folder.mkdir(parents=True, exist_ok=True)
    precious = folder / "precious.ckpt"
    precious.write_bytes(b"weeks of training")
    (folder / "one.bin").symlink_to(precious.name)
    return precious, folder / "one.bin"


def test_a_download_replaces_a_symlink_at_its_target_and_never_writes_through_it(
    binary_run: tuple, tmp_path: Path
) -> None:
    run, contents = binary_run
    precious, link = _precious(tmp_path / "one")
    with pytest.raises(ValueError, match="one.bin.*symbolic link.*already exists") as info:
        run.file("one.bin").download(root=tmp_path / "one")
    assert "precious" not in str(info.value)  # the error names the path given, not the link's target
    run.file("one.bin").download(root=tmp_path / "one", replace=True).close()
    assert precious.read_bytes() == b"weeks of training"
    assert not link.is_symlink() and link.read_bytes() == contents["one.bin"]

    # Files.download: a link differs from the run's file (even if its target held the same bytes) ...
    precious, link = _precious(tmp_path / "bulk")
    with pytest.raises(wandb_files.LocalFilesDifferError, match="one.bin") as differ:
        run.files(names=["one.bin"]).download(root=tmp_path / "bulk", progress=False)
    assert differ.value.paths == [link]
    # ... and replace=True replaces the link itself.
    run.files(names=["one.bin"]).download(root=tmp_path / "bulk", replace=True, progress=False)
    assert precious.read_bytes() == b"weeks of training"
    assert not link.is_symlink() and link.read_bytes() == contents["one.bin"]

    # download_files replaces what differs: the link, not its target.
    precious, link = _precious(tmp_path / "frame" / run.id)
    wandb_files.download_files(run.files(names=["one.bin"]), tmp_path / "frame", progress=False)
    assert precious.read_bytes() == b"weeks of training"
    assert not link.is_symlink() and link.read_bytes() == contents["one.bin"]


def test_a_symlink_planted_where_the_temp_file_goes_is_refused(binary_run: tuple, tmp_path: Path) -> None:
    run, _ = binary_run
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    target = tmp_path / "out" / "small.bin"
    target.parent.mkdir()
    transfer.part_path(target).symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        run.file("small.bin").download(root=tmp_path / "out")
    assert victim.read_bytes() == b"keep me"


def test_root_that_is_a_file_is_refused(binary_run: tuple, tmp_path: Path) -> None:
    run, _ = binary_run
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ValueError, match="root"):
        run.file("one.bin").download(root=not_a_dir)
    with pytest.raises(ValueError, match="root.*is a file"):  # not NotADirectoryError
        run.file("one.bin").download(root=not_a_dir / "sub")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "deep").write_text("a file where a folder goes")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run.file("deep/er/nested/notes.txt").download(root=tmp_path / "x")
    assert (tmp_path / "x" / "deep").read_text() == "a file where a folder goes"


def test_a_name_and_a_folder_of_that_name_in_one_download_clash_before_any_byte(
    api: wandb_files.Api, binary_run: tuple, tmp_path: Path
) -> None:
    """W&B allows `a` and `a/b` in one run; no file system does. `a` is written, `a/b` refused, no temp file."""
    run, contents = binary_run
    url = run.file("one.bin").url
    files = [
        File(api.client, {"name": n, "url": url, "sizeBytes": 1, "md5": md5_b64(contents["one.bin"])}, run)
        for n in ("a", "a/b", "a/c/d")
    ]
    with pytest.raises(wandb_files.DownloadError) as info:
        jobs = [f.download_job(tmp_path / "dest") for f in files]
        transfer.download_many(api.client, jobs, engine=transfer.choose_engine(api.client), progress=False)
    assert sorted(name for name, _ in info.value.failures) == ["a/b", "a/c/d"]
    assert all("a path cannot be both" in str(exc) for _, exc in info.value.failures)
    assert (tmp_path / "dest" / "a").read_bytes() == contents["one.bin"]
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["a"]  # no temp file, nothing else


@pytest.mark.parametrize(
    "name", ["x" * 256, "dir/" + "é" * 128, "report\u202etxt.exe", "esc\x1b[31mred", "csi\u009b2J", "a\u2028b"]
)
def test_names_no_file_system_or_terminal_should_take_are_refused_before_any_byte(
    api: wandb_files.Api, binary_run: tuple, tmp_path: Path, name: str
) -> None:
    run, _ = binary_run
    with pytest.raises(ValueError, match="refusing to write") as info:
        File(api.client, {"name": name, "url": run.file("one.bin").url}, run).download(root=tmp_path / "dest")
    assert "\u202e" not in str(info.value) and "\x1b" not in str(info.value)  # the message is safe to print
    assert not (tmp_path / "dest").exists()


def test_upload_names_are_relative_to_root_and_reupload_replaces(api: wandb_files.Api, tmp_path: Path) -> None:
    run = api.create_run(project="transfer")
    (tmp_path / "sub").mkdir()
    local = tmp_path / "sub" / "model.ckpt"
    local.write_bytes(b"v1")
    first = run.upload_file(local, root=tmp_path)
    assert first.name == "sub/model.ckpt" and first.size == 2 and first.md5 == md5_b64(b"v1")
    local.write_bytes(b"version two")
    second = run.upload_file(str(local), root=str(tmp_path / "sub"))
    assert second.name == "model.ckpt"
    local.write_bytes(b"version three")
    third = run.upload_file(local, root=tmp_path)
    assert third.md5 == md5_b64(b"version three") and third.size == 13
    assert sorted(f.name for f in run.files()) == ["model.ckpt", "sub/model.ckpt"]


def test_upload_default_root_is_the_working_directory(
    api: wandb_files.Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("here.txt").write_text("cwd")
    assert api.create_run(project="transfer").upload_file("here.txt").name == "here.txt"


def test_upload_arguments_are_checked_before_any_request(api: wandb_files.Api, tmp_path: Path) -> None:
    run = api.create_run(project="transfer")
    with pytest.raises(ValueError, match="not a file"):
        run.upload_file(tmp_path / "missing.txt", root=tmp_path)
    with pytest.raises(ValueError, match="not a file"):
        run.upload_file(tmp_path, root=tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(ValueError, match="not inside root"):
        run.upload_file(outside, root=tmp_path / "elsewhere")
    with pytest.raises(TypeError, match="path"):
        run.upload_file(42)  # type: ignore[arg-type]
    assert len(run.files()) == 0


def test_delete_removes_the_file(binary_run: tuple) -> None:
    run, contents = binary_run
    f = run.file("one.bin")
    f.delete()
    assert "one.bin" not in [g.name for g in run.files()]
    assert len(run.files()) == len(contents) - 1
    with pytest.raises(NotFoundError):
        f.delete()
    with pytest.raises(ValueError, match="no id"):
        File(run.client, {"name": "x"}, run).delete()


def test_other_users_cannot_download_or_delete(binary_run: tuple, live_server: LiveServer, tmp_path: Path) -> None:
    run, _ = binary_run
    bob = wandb_files.Api(api_key=live_server.add_user("bob"), base_url=live_server.base_url)
    bob.client.retry = FAST_RETRY
    f = run.file("small.bin")
    stolen = File(bob.client, {"id": f.id, "name": f.name, "url": f.url}, None)
    with pytest.raises(NotFoundError):  # another user's file answers as a missing one
        stolen.download(root=tmp_path)
    assert not (tmp_path / "small.bin").exists()
    with pytest.raises(NotFoundError):
        stolen.delete()
    assert run.file("small.bin").id == f.id


def test_key_is_not_sent_to_other_hosts(api: wandb_files.Api) -> None:
    base = api.base_url
    assert api.client.auth_for(base + "/files/a/b/c/d") is not None
    assert api.client.auth_for(base.replace("127.0.0.1", "localhost") + "/files/x") is None
    assert api.client.auth_for("https://bucket.s3.amazonaws.com/key") is None
    port = int(base.rsplit(":", 1)[1])
    assert api.client.auth_for(f"http://127.0.0.1:{port + 1}/files/x") is None


def test_key_does_not_follow_a_redirect_to_another_host(tmp_path: Path) -> None:
    """The base URL redirects the download to another host (as a bucket would): the key must not go along."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = os.urandom(4096)
    seen: dict[str, str | None] = {}

    class Storage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen["storage"] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)

    class Base(Storage):
        def do_GET(self) -> None:
            seen["base"] = self.headers.get("Authorization")
            self.send_response(302)
            # Same machine, other host name: for the client it is another host.
            self.send_header("Location", f"http://localhost:{storage.server_port}/bucket/key")
            self.send_header("Content-Length", "0")
            self.end_headers()

    base = ThreadingHTTPServer(("127.0.0.1", 0), Base)
    for server in (storage, base):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = wandb_files.Api(api_key="k" * 40, base_url=f"http://127.0.0.1:{base.server_port}")
        attrs = {
            "name": "moved.bin",
            "url": f"http://127.0.0.1:{base.server_port}/files/a/b/c/moved.bin",
            "sizeBytes": len(body),
            "md5": md5_b64(body),
        }
        File(api.client, attrs).download(root=tmp_path).close()
    finally:
        base.shutdown()
        storage.shutdown()
    assert (tmp_path / "moved.bin").read_bytes() == body
    assert seen["base"] is not None and seen["base"].startswith("Basic ")
    assert seen["storage"] is None


def test_a_file_replaced_since_it_was_listed_fails_at_once_and_says_so(api: wandb_files.Api, tmp_path: Path) -> None:
    import time

    api.client.retry = wandb_files.retry.RetryPolicy(max_attempts=6, backoff_base=2.0, total_timeout=60)
    run = run_with_files(api, tmp_path, {"model.bin": b"version one"}, "transfer")
    listed = run.file("model.bin")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "model.bin").write_bytes(b"version two!")
    run.upload_file(tmp_path / "v2" / "model.bin", root=tmp_path / "v2")
    started = time.monotonic()
    with pytest.raises(IntegrityError, match="changed on the server since it was listed"):
        listed.download(root=tmp_path / "out")
    assert time.monotonic() - started < 1.5  # no backoff: retrying could not help
    assert not (tmp_path / "out" / "model.bin").exists()
    run.file("model.bin").download(root=tmp_path / "out").close()  # listed again: fine
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"version two!"
