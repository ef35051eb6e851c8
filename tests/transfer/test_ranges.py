"""Big files in parallel Range parts (`wandb_files.transfer.ranges`): bytes exact against our server, through a
per-connection cap, from S3 presigned URLs; resumed after kill -9 without fetching finished parts again; a
server that ignores Range; a remote that changes mid-file; Ctrl-C."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wandb_files
from tests.support import FAST_RETRY, LiveServer, md5_b64, run_with_files
from tests.support.services import S3Service, s3_server, s3_service
from tests.support.static_http import StaticServer
from wandb_files import transfer
from wandb_files.errors import IntegrityError, NotFoundError
from wandb_files.graphql import GraphQLClient
from wandb_files.retry import RetryPolicy
from wandb_files.testing import FaultProxy
from wandb_files.transfer import ranges
from wandb_files.transfer.flow import Cancel, Cancelled

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Parts of 1 MiB from 2 MiB on, so that files of a few MiB make many parts; every test gives back the
    connections it took from the process's budget."""
    monkeypatch.setattr(ranges, "THRESHOLD", 2 * MiB)
    monkeypatch.setattr(ranges, "PART_SIZE", 1 * MiB)
    monkeypatch.setattr(ranges, "PARTS_AT_ONCE", 8)
    monkeypatch.setattr(ranges, "FAST_CONNECTION", 1 << 50)  # no connection is fast: parts, whatever the load
    yield
    deadline = time.monotonic() + 5
    while ranges._BUDGET._used and time.monotonic() < deadline:  # a part stopped by cancel may take a moment
        time.sleep(0.01)
    assert ranges._BUDGET._used == 0


@pytest.fixture(scope="module")
def big_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[wandb_files.Run, bytes]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    data = os.urandom(12 * MiB + 12345)  # 13 parts, the last one short
    return run_with_files(api, tmp_path_factory.mktemp("ranges"), {"model.ckpt": data}, "ranges"), data


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")] if root.exists() else []


def client_through(url: str, api_key: str) -> wandb_files.Api:
    api = wandb_files.Api(api_key=api_key, base_url=url)
    api.client.retry = FAST_RETRY
    return api


def test_a_big_file_comes_in_parts_byte_exact(live_server: LiveServer, big_run: tuple, tmp_path: Path) -> None:
    run, data = big_run
    with FaultProxy(live_server.base_url) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        proxy.reset_stats()
        with file.download(root=str(tmp_path)) as opened:
            assert opened.name == str(tmp_path / "model.ckpt")
        assert proxy.stats["requests"] == 13  # one GET a part, no more
        assert proxy.stats["body_bytes"] == len(data)
    assert (tmp_path / "model.ckpt").read_bytes() == data
    assert not temp_files(tmp_path)


def test_files_under_the_threshold_stay_one_stream(live_server: LiveServer, tmp_path: Path) -> None:
    api = client_through(live_server.base_url, live_server.api_key)
    data = os.urandom(2 * MiB - 1)
    run = run_with_files(api, tmp_path, {"small.bin": data}, "ranges")
    with FaultProxy(live_server.base_url) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("small.bin")
        proxy.reset_stats()
        file.download(root=str(tmp_path / "out")).close()
        assert proxy.stats["requests"] == 1
    assert (tmp_path / "out" / "small.bin").read_bytes() == data


def test_parts_beat_a_per_connection_cap(live_server: LiveServer, big_run: tuple, tmp_path: Path) -> None:
    """Each connection capped at 4 MiB/s: one stream needs 3 s for 12 MiB, eight connections far less."""
    run, data = big_run
    with FaultProxy(live_server.base_url, bytes_per_second=4 * MiB) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        started = time.monotonic()
        file.download(root=str(tmp_path)).close()
        elapsed = time.monotonic() - started
    assert (tmp_path / "model.ckpt").read_bytes() == data
    assert elapsed < len(data) / (4 * MiB) / 2, elapsed  # at least twice one stream's speed (about 5x here)


def test_a_bulk_download_of_big_and_small_files_shares_the_budget(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ranges, "EXTRA_STREAMS", 5)
    api = client_through(live_server.base_url, live_server.api_key)
    contents = {f"big_{i}.bin": os.urandom(4 * MiB + i) for i in range(4)}
    contents.update({f"small_{i}.txt": os.urandom(1000) for i in range(10)})
    run = run_with_files(api, tmp_path, contents, "ranges")
    most = [0]
    real_take = ranges._BUDGET.take

    def take() -> bool:
        taken = real_take()
        most[0] = max(most[0], ranges._BUDGET._used)
        return taken

    monkeypatch.setattr(ranges._BUDGET, "take", take)
    with FaultProxy(live_server.base_url, bytes_per_second=4 * MiB) as proxy:  # slow connections want company
        files = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).files()
        paths = files.download(root=tmp_path / "out", max_workers=8, progress=False)
    assert len(paths) == len(contents)
    assert {p.name: p.read_bytes() for p in paths} == contents
    assert most[0] == 5  # the extra connections of all four big files together
    assert not temp_files(tmp_path / "out")


def test_a_fast_connection_gets_no_company(
    live_server: LiveServer, big_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where one connection already moves more than FAST_CONNECTION, the first part shows it and the rest
    comes as one stream (more connections would only compete for the client's CPU); behind a cap below it,
    the parts go in parallel."""
    run, data = big_run
    taken: list[bool] = []
    real_take = ranges._BUDGET.take
    monkeypatch.setattr(ranges._BUDGET, "take", lambda: taken.append(real_take()) or taken[-1])
    monkeypatch.setattr(ranges, "FAST_CONNECTION", 1 * MiB)  # any loopback connection beats it
    with FaultProxy(live_server.base_url, bytes_per_second=8 * MiB) as proxy:  # 1.5 s on one connection
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        proxy.reset_stats()
        file.download(root=str(tmp_path / "fast")).close()
        assert not taken and proxy.stats["requests"] == 2 and proxy.stats["connections"] <= 1  # a part, the rest
        monkeypatch.setattr(ranges, "FAST_CONNECTION", 100 * MiB)  # now 8 MiB/s is slow
        file.download(root=str(tmp_path / "slow")).close()
        assert taken.count(True) == 7
    assert (tmp_path / "fast" / "model.ckpt").read_bytes() == data == (tmp_path / "slow" / "model.ckpt").read_bytes()


def test_faulty_parts_are_retried_and_the_file_comes_whole(live_server: LiveServer, tmp_path: Path) -> None:
    """A third of the answers faulted (5xx, 429, resets, truncated and flipped bodies, slow starts): each
    part resumes where it broke; a flipped byte fails the md5, and the whole file starts over."""
    api = client_through(live_server.base_url, live_server.api_key)
    data = os.urandom(6 * MiB + 5)
    run = run_with_files(api, tmp_path, {"f.bin": data}, "ranges")
    with FaultProxy(live_server.base_url, fault_rate=0.33, seed=3, slow_seconds=0.3, paths=("/files/",)) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("f.bin")
        file.client.retry = RetryPolicy(max_attempts=12, backoff_base=0.01, backoff_max=0.05, total_timeout=60)
        file.download(root=str(tmp_path / "out")).close()
        assert proxy.stats["faults"] >= 3
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
    assert not temp_files(tmp_path / "out")


def test_a_server_that_ignores_range_gets_one_clean_stream(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 3)
    client = GraphQLClient("http://127.0.0.1:9", "k" * 40, retry=FAST_RETRY)  # the key stays at that origin
    with StaticServer(data, ranges=False) as server:
        target = tmp_path / "out" / "big.bin"
        transfer.download(client, server.url, target, name="big.bin", size=len(data), md5=md5_b64(data))
        assert server.statuses == [200, 200]  # the first part's answer showed it; then one whole stream
        assert server.ranges_asked[0] == "bytes=0-1048575" and server.ranges_asked[1] is None
    assert target.read_bytes() == data
    assert not temp_files(tmp_path)


def test_an_expired_presigned_url_is_replaced_by_following_url_again(tmp_path: Path) -> None:
    """`url` redirects to a URL good for 4 GETs: the parts go there, and when it answers 403 `url` is followed
    again for a fresh one."""
    data = os.urandom(10 * MiB)
    client = GraphQLClient("http://127.0.0.1:9", "k" * 40, retry=FAST_RETRY)
    with StaticServer(data, token_uses=4) as server:
        transfer.download(client, server.url, tmp_path / "f", name="f", size=len(data), md5=md5_b64(data))
        assert server.redirects >= 3  # 10 parts, 4 a URL
        assert server.statuses.count(206) == 10  # statuses counts answered GETs of the file, 403s excluded
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("listed_md5", [False, True])
def test_a_remote_that_changes_mid_file_starts_over_cleanly(tmp_path: Path, listed_md5: bool) -> None:
    """After 3 answers the server holds new bytes: the next parts' If-Range no longer matches (200). Never a
    mix of two versions: with the old md5 listed, an IntegrityError and nothing kept; without it, the new
    version whole."""
    old, new = os.urandom(6 * MiB), os.urandom(6 * MiB)
    client = GraphQLClient("http://127.0.0.1:9", "k" * 40, retry=FAST_RETRY)
    target = tmp_path / "big.bin"
    with StaticServer(old, then=new, change_after=3) as server:
        if listed_md5:
            with pytest.raises(IntegrityError, match="changed on the server since it was listed"):
                transfer.download(client, server.url, target, name="big.bin", size=len(old), md5=md5_b64(old))
            assert not target.exists()
        else:
            transfer.download(client, server.url, target, name="big.bin", size=len(old), md5=None)
            assert hashlib.md5(target.read_bytes()).digest() == hashlib.md5(new).digest()
        assert 200 in server.statuses  # If-Range caught the change
    assert not temp_files(tmp_path)


def test_a_reupload_on_our_server_mid_download_is_never_mixed_in(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our server answers If-Range with the ETag of the old version by a 200: the parts stop, and the listed
    md5 (the old one) no longer matches the remote: an IntegrityError, nothing under the final name."""
    monkeypatch.setattr(ranges, "PARTS_AT_ONCE", 2)  # parts 3 to 8 are asked for after the re-upload
    api = client_through(live_server.base_url, live_server.api_key)
    old, new = os.urandom(8 * MiB), os.urandom(8 * MiB)
    run = run_with_files(api, tmp_path, {"w.bin": old}, "ranges")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "w.bin").write_bytes(new)
    reuploaded = threading.Event()

    def progress(n: int) -> None:  # after the first MiB, in another thread: a new version of the file
        if n > 0 and not reuploaded.is_set():
            reuploaded.set()
            threading.Thread(
                target=run.upload_file, args=(str(tmp_path / "new" / "w.bin"),), kwargs={"root": str(tmp_path / "new")}
            ).start()

    with FaultProxy(live_server.base_url, bytes_per_second=2 * MiB) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("w.bin")
        target = tmp_path / "out" / "w.bin"
        with pytest.raises(IntegrityError, match="changed on the server since it was listed"):
            transfer.download(
                file.client, file.url, target, name="w.bin", size=file.size, md5=file.md5, progress=progress
            )
    assert not target.exists() and not temp_files(tmp_path / "out")
    assert run.file("w.bin").md5 == md5_b64(new)


def test_a_server_without_etag_or_md5_goes_as_one_stream(tmp_path: Path) -> None:
    """With neither an ETag nor an md5, nothing would tell parts of two versions apart."""
    data = os.urandom(3 * MiB)
    client = GraphQLClient("http://127.0.0.1:9", "k" * 40, retry=FAST_RETRY)
    with StaticServer(data, send_etag=False) as server:
        transfer.download(client, server.url, tmp_path / "f", name="f", size=len(data), md5=None)
        assert server.statuses == [206, 200]
    assert (tmp_path / "f").read_bytes() == data


def test_cancel_stops_every_part_within_a_second_and_keeps_what_finished(
    live_server: LiveServer, big_run: tuple, tmp_path: Path
) -> None:
    run, data = big_run
    target = tmp_path / "model.ckpt"
    part = transfer.part_path(target)
    with FaultProxy(live_server.base_url, bytes_per_second=1 * MiB) as proxy:  # 13 parts of a second each
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        cancel = Cancel()
        failure: list[BaseException] = []

        def download() -> None:
            try:
                transfer.download(
                    file.client, file.url, target, name=file.name, size=file.size, md5=file.md5, cancel=cancel
                )
            except BaseException as exc:  # noqa: BLE001 - inspected below
                failure.append(exc)

        thread = threading.Thread(target=download)
        thread.start()
        deadline = time.monotonic() + 20
        while not (ranges._load_state(part) or ranges._State(0, None, 1)).done:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        started = time.monotonic()
        cancel.set()
        thread.join(timeout=5)
        assert time.monotonic() - started < 1.0
        assert isinstance(failure[0], Cancelled)
    state = ranges._load_state(part)
    assert state is not None and 1 <= len(state.done) < 13
    assert part.stat().st_size == len(data)  # the temp file is kept, preallocated
    run.file("model.ckpt").download(root=str(tmp_path)).close()  # straight to the server: it resumes
    assert target.read_bytes() == data and not temp_files(tmp_path)


CHILD = textwrap.dedent(
    """
    import sys
    import wandb_files
    from wandb_files.transfer import ranges

    base_url, key, path, root = sys.argv[1:5]
    ranges.THRESHOLD, ranges.PART_SIZE, ranges.PARTS_AT_ONCE = 2 << 20, 1 << 20, 4
    wandb_files.Api(api_key=key, base_url=base_url).run(path).file("model.ckpt").download(root=root)
    """
)


def test_kill_9_mid_download_then_a_rerun_fetches_only_the_unfinished_parts(
    live_server: LiveServer, big_run: tuple, tmp_path: Path
) -> None:
    run, data = big_run
    target = tmp_path / "model.ckpt"
    part = transfer.part_path(target)
    with FaultProxy(live_server.base_url, bytes_per_second=1 * MiB) as proxy:  # 4 at a time: about 3.5 s
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, proxy.url, live_server.api_key, "/".join(run.path), str(tmp_path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while len((ranges._load_state(part) or ranges._State(0, None, 1)).done) < 5:
            assert time.monotonic() < deadline and child.poll() is None, child.communicate()
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not target.exists()
    state = ranges._load_state(part)
    assert state is not None and 5 <= len(state.done) < 13
    done = state.done

    with FaultProxy(live_server.base_url) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        proxy.reset_stats()
        file.download(root=str(tmp_path)).close()
        assert proxy.stats["requests"] == 13 - len(done)  # finished parts are never asked for again
        assert proxy.stats["body_bytes"] == len(data) - len(done) * MiB  # the short last part is never done first
    assert 12 not in done
    assert target.read_bytes() == data
    assert not temp_files(tmp_path)


SIGINT_CHILD = textwrap.dedent(
    """
    import sys, time
    import wandb_files
    from wandb_files.transfer import ranges

    base_url, key, path, root = sys.argv[1:5]
    ranges.THRESHOLD, ranges.PART_SIZE, ranges.PARTS_AT_ONCE = 2 << 20, 1 << 20, 4
    file = wandb_files.Api(api_key=key, base_url=base_url).run(path).file("model.ckpt")
    try:
        file.download(root=root)
    except KeyboardInterrupt:
        print(time.monotonic(), flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_stops_file_download_within_a_second_and_the_finished_parts_stay(
    live_server: LiveServer, big_run: tuple, tmp_path: Path
) -> None:
    run, data = big_run
    part = transfer.part_path(tmp_path / "model.ckpt")
    with FaultProxy(live_server.base_url, bytes_per_second=1 * MiB) as proxy:
        child = subprocess.Popen(
            [sys.executable, "-c", SIGINT_CHILD, proxy.url, live_server.api_key, "/".join(run.path), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while len((ranges._load_state(part) or ranges._State(0, None, 1)).done) < 2:
            assert time.monotonic() < deadline and child.poll() is None, child.communicate()
            time.sleep(0.01)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert float(out) - sent < 1.0  # clocks of one machine: CLOCK_MONOTONIC is system-wide
    state = ranges._load_state(part)
    assert state is not None and 2 <= len(state.done) < 13
    run.file("model.ckpt").download(root=str(tmp_path)).close()
    assert (tmp_path / "model.ckpt").read_bytes() == data and not temp_files(tmp_path)


def test_a_refused_big_file_leaves_no_temp_file(live_server: LiveServer, big_run: tuple, tmp_path: Path) -> None:
    run, data = big_run
    file = run.file("model.ckpt")
    with pytest.raises(NotFoundError):
        transfer.download(
            file.client, file.url + "-gone", tmp_path / "x.bin", name="x.bin", size=len(data), md5=file.md5
        )
    assert not temp_files(tmp_path)


def test_a_symbolic_link_planted_where_the_state_goes_is_never_followed(
    live_server: LiveServer, big_run: tuple, tmp_path: Path
) -> None:
    run, data = big_run
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out" / "model.ckpt"
    target.parent.mkdir()
    state = ranges.state_path(transfer.part_path(target))
    state.symlink_to(victim)
    run.file("model.ckpt").download(root=str(tmp_path / "out")).close()
    assert target.read_bytes() == data
    assert victim.read_text() == "precious" and not state.exists() and not state.is_symlink()

    new = state.with_name(state.name.replace(".ranges.", ".ranges-new."))
    new.symlink_to(victim)
    target.unlink()
    with pytest.raises(ValueError, match="symbolic link"):
        run.file("model.ckpt").download(root=str(tmp_path / "out")).close()
    assert victim.read_text() == "precious" and not target.exists()


def test_a_temp_file_that_one_stream_began_is_resumed_in_parts(
    live_server: LiveServer, big_run: tuple, tmp_path: Path
) -> None:
    """A prefix left by one stream (say a fast link's, or an older version's) and no state: its whole parts
    count as done, as one stream would have resumed it."""
    run, data = big_run
    target = tmp_path / "model.ckpt"
    transfer.part_path(target).write_bytes(data[: 5 * MiB + 100])
    with FaultProxy(live_server.base_url) as proxy:
        file = client_through(proxy.url, live_server.api_key).run("/".join(run.path)).file("model.ckpt")
        proxy.reset_stats()
        file.download(root=str(tmp_path)).close()
        assert proxy.stats["requests"] == 13 - 5
        assert proxy.stats["body_bytes"] == len(data) - 5 * MiB
    assert target.read_bytes() == data and not temp_files(tmp_path)


def test_the_resume_state_survives_its_round_trip() -> None:
    state = ranges._State(100 * MiB, "abc", MiB, '"e"', {0, 1, 2, 3, 7, 9, 10})
    text = state.to_json()
    assert '"done": [[0, 3], [7, 7], [9, 10]]' in text
    assert ranges._State.from_json(text) == state
    assert ranges._State.from_json("{not json") is None
    assert ranges._State.from_json('{"version": 2}') is None


# --- S3: presigned URLs, as our server in S3 mode hands them out (moto on loopback) ---------------------------


@pytest.fixture(scope="module")
def s3() -> S3Service:
    return s3_service()


@pytest.fixture(scope="module")
def s3_live(s3: S3Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = s3_server(tmp_path_factory.mktemp("s3") / "data", s3, s3.create_bucket())
    yield server
    server.stop()


def test_s3_presigned_urls_come_in_parts(s3_live: LiveServer, tmp_path: Path) -> None:
    """`url` answers 302 to a presigned GET: only the first part asks our server, the others go to the
    bucket; a `directUrl` (presigned already) works alike, without the key."""
    api = client_through(s3_live.base_url, s3_live.api_key)
    data = os.urandom(5 * MiB + 77)
    run = run_with_files(api, tmp_path, {"w.bin": data}, "ranges")
    with FaultProxy(s3_live.base_url) as proxy:
        file = client_through(proxy.url, s3_live.api_key).run("/".join(run.path)).file("w.bin")
        proxy.reset_stats()
        file.download(root=str(tmp_path / "url")).close()
        # Only the first part asks our server (stream_get asks twice: its fast path does not follow a redirect);
        # the 6 parts come from the bucket.
        assert proxy.stats["requests"] <= 2
    assert (tmp_path / "url" / "w.bin").read_bytes() == data
    assert file.direct_url
    target = tmp_path / "direct" / "w.bin"
    transfer.download(api.client, file.direct_url, target, name="w.bin", size=len(data), md5=file.md5)
    assert target.read_bytes() == data
    assert not temp_files(tmp_path / "url") and not temp_files(tmp_path / "direct")
