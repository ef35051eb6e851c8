"""Fault tolerance: a fault-injecting proxy between client and server (500, 503, 429 + Retry-After, resets,
truncated bodies, flipped bytes, responses slower than the read timeout).

At 20 % faults a bulk download completes with every file md5-verified and no partial file; at 100 % it fails
within a bounded time with one clear error.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, md5_b64
from wandb_files.retry import RetryPolicy
from wandb_files.testing import FAULTS, FaultProxy

N_FILES = 500
#: Each attempt waits 1 s for an answer (the proxy's slow faults take 3 s); a call has 60 s for its retries.
PATIENT = RetryPolicy(max_attempts=12, backoff_base=0.02, backoff_max=1.0, total_timeout=60, attempt_timeout=1.0)


@pytest.fixture(scope="module")
def many_files(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, bytes]]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(project="faults")
    contents = {f"f/{i % 10}/{i:03d}.bin": os.urandom(2000 + 50 * i) for i in range(N_FILES)}
    contents["big.bin"] = os.urandom(5 * 1024 * 1024)  # spans several chunks: resets and truncation mid-body
    source = tmp_path_factory.mktemp("faults-src")
    for name, data in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    run.upload_files([source / n for n in contents], root=source, max_workers=8, progress=False)
    return "/".join(run.path), contents


def through(proxy: FaultProxy, live_server: LiveServer, timeout: float = 60.0) -> wandb_files.Api:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url, timeout=timeout)
    api.client.retry = PATIENT
    return api


@pytest.mark.slow
def test_bulk_download_at_20_percent_faults_completes_verified(
    live_server: LiveServer, many_files: tuple, tmp_path: Path
) -> None:
    path, contents = many_files
    with FaultProxy(live_server.base_url, fault_rate=0.2, seed=1, slow_seconds=3.0) as proxy:
        api = through(proxy, live_server)
        files = api.run(path).files(per_page=100)  # GraphQL goes through the faults too
        paths = files.download(root=tmp_path, max_workers=16, progress=False)
        stats = proxy.stats
    assert len(paths) == len(contents)
    for name, data in contents.items():
        assert md5_b64((tmp_path / name).read_bytes()) == md5_b64(data), name
    assert not list(tmp_path.rglob("*.part"))
    assert stats["faults"] >= 0.15 * stats["requests"]  # the faults really happened…
    assert all(stats[kind] > 0 for kind in FAULTS), stats  # …of every kind


def test_uploads_survive_faults_too(live_server: LiveServer, tmp_path: Path) -> None:
    contents = {f"u/{i:02d}.bin": os.urandom(3000 + i) for i in range(40)}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with FaultProxy(
        live_server.base_url,
        fault_rate=0.2,
        seed=2,
        faults=("500", "503", "429", "reset"),
        paths=("/uploads/", "/graphql"),
    ) as proxy:
        api = through(proxy, live_server)
        run = api.create_run(project="faults-up")
        uploaded = run.upload_files([tmp_path / n for n in contents], root=tmp_path, max_workers=8, progress=False)
        assert proxy.stats["faults"] > 0
    assert {f.name: f.md5 for f in uploaded} == {n: md5_b64(d) for n, d in contents.items()}


def test_at_100_percent_faults_it_fails_fast_with_one_clear_error(
    live_server: LiveServer, many_files: tuple, tmp_path: Path
) -> None:
    path, _contents = many_files
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    files = list(api.run(path).files(per_page=1000))[:50]
    with FaultProxy(live_server.base_url, fault_rate=1.0, seed=3, faults=("500", "503", "reset", "flip")) as proxy:
        broken = through(proxy, live_server)
        broken.client.retry = RetryPolicy(max_attempts=4, backoff_base=0.05, backoff_max=0.5, total_timeout=5)
        moved = [
            wandb_files.File(
                broken.client,
                {
                    "name": f.name,
                    "url": f.url.replace(live_server.base_url, proxy.url),
                    "sizeBytes": f.size,
                    "md5": f.md5,
                },
                f.run,
            )
            for f in files
        ]
        started = time.monotonic()
        with pytest.raises(wandb_files.DownloadError) as info:
            wandb_files.transfer.download_many(
                broken.client,
                [f.download_job(tmp_path / "out") for f in moved],
                engine=wandb_files.transfer.choose_engine(broken.client),
                max_workers=16,
                progress=False,
            )
        elapsed = time.monotonic() - started
    assert elapsed < 20
    assert len(info.value.failures) == 50 and info.value.results == []
    assert "50 of 50 files failed to download" in str(info.value)
    reasons = {type(exc).__name__ for _, exc in info.value.failures}
    assert reasons <= {"ServerError", "TransportError", "IntegrityError"}, reasons
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.endswith(".part")]


def test_graphql_queries_retry_through_429_with_retry_after(live_server: LiveServer, many_files: tuple) -> None:
    path, contents = many_files
    with FaultProxy(live_server.base_url, fault_rate=0.5, seed=4, faults=("429", "503"), paths=("/graphql",)) as proxy:
        api = through(proxy, live_server)
        with ThreadPoolExecutor(4) as pool:
            counts = list(pool.map(lambda _: len(api.run(path).files(per_page=200)), range(8)))
        assert proxy.stats["429"] > 0
    assert counts == [len(contents)] * 8


def test_mutations_that_are_not_safe_to_repeat_are_not_retried(live_server: LiveServer, many_files: tuple) -> None:
    path, _ = many_files
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    victim = api.run(path).files(per_page=1)[0]
    with FaultProxy(live_server.base_url, fault_rate=1.0, seed=5, faults=("503",), paths=("/graphql",)) as proxy:
        broken = through(proxy, live_server)
        f = wandb_files.File(broken.client, {"id": victim.id, "name": victim.name}, victim.run)
        with pytest.raises(wandb_files.ServerError):
            f.delete()
        assert proxy.stats["requests"] == 1  # deleteFiles was sent once, not repeated blindly
