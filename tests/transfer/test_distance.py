"""Far from the server (#25): both engines over HTTPS through a TLS-terminating proxy with latency. They trust the
certificates requests would trust (REQUESTS_CA_BUNDLE, or the session's `verify`), keep their connections for
the next files, and the curl engine leaves the disk alone until a file's bytes are there."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, random_files, write_files
from wandb_files.errors import DownloadError, TransportError
from wandb_files.transfer.curl import curl_available
from wandb_files.transfer.locks import claim_part, release_if_empty
from wandb_files.transfer.paths import part_path

trustme = pytest.importorskip("trustme")
pytest.importorskip("aiohttp")

from wandb_files.testing import FaultProxy  # noqa: E402  (needs aiohttp)

ENGINES = ["python", pytest.param("curl", marks=pytest.mark.skipif(not curl_available(), reason="no pycurl"))]
needs_curl = pytest.mark.skipif(not curl_available(), reason="no pycurl")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WANDB_FILES_ENGINE", request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA's PEM file, and a server context with a certificate for 127.0.0.1 that it signed."""
    authority = trustme.CA()
    pem = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(pem))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return pem, context


@pytest.fixture(scope="module")
def seeded(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, bytes]]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(project="distance")
    contents = {f"d{i % 2}/{name}": data for i, (name, data) in enumerate(random_files(24, 30_000).items())}
    source = tmp_path_factory.mktemp("distance-src")
    write_files(source, contents)
    run.upload_files([source / n for n in contents], root=source, progress=False)
    return "/".join(run.path), contents


@pytest.fixture
def https_proxy(live_server: LiveServer, ca: tuple[Path, ssl.SSLContext]) -> Iterator[FaultProxy]:
    with FaultProxy(live_server.base_url, tls=ca[1], first_byte_delay_ms=5) as proxy:
        yield proxy


@pytest.fixture
def curl_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="wandb_files.transfer.curl")
    return caplog


def _by_curl(caplog: pytest.LogCaptureFixture) -> int:
    """How many files the curl engine itself verified (not handed to the Python path)."""
    return sum("bytes verified (curl)" in record.getMessage() for record in caplog.records)


def _check(root: Path, contents: dict[str, bytes]) -> None:
    assert {n: (root / n).read_bytes() for n in contents} == contents
    assert not list(root.rglob("*.part"))


def test_both_engines_trust_requests_ca_bundle_over_https(
    engine: str,
    https_proxy: FaultProxy,
    live_server: LiveServer,
    seeded: tuple,
    ca: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    curl_log: pytest.LogCaptureFixture,
) -> None:
    path, contents = seeded
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))
    api = wandb_files.Api(api_key=live_server.api_key, base_url=https_proxy.url)
    files = list(api.run(path).files())
    assert all(f.url.startswith(https_proxy.url + "/") for f in files)  # the bytes come over HTTPS too
    wandb_files.download_files(files, tmp_path, progress=False, max_workers=4)
    _check(tmp_path / path.rsplit("/", 1)[1], contents)
    assert https_proxy.stats["body_bytes"] >= sum(map(len, contents.values()))
    assert _by_curl(curl_log) == (len(contents) if engine == "curl" else 0)


def test_both_engines_refuse_a_certificate_requests_would_refuse(
    engine: str,
    https_proxy: FaultProxy,
    live_server: LiveServer,
    seeded: tuple,
    ca: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_FILE is OpenSSL's variable, not requests': naming the CA there alone, neither engine trusts it
    (the curl engine once did, and the same download succeeded or failed by the engine)."""
    path, _ = seeded
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))
    api = wandb_files.Api(api_key=live_server.api_key, base_url=https_proxy.url, timeout=2)
    files = list(api.run(path).files())[:2]
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))
    api.client.session._environment.clear()  # the session read the variables once per origin: read them again
    api.client._direct_pools.clear()
    with pytest.raises(DownloadError) as raised:
        wandb_files.download_files(files, tmp_path, progress=False)
    assert len(raised.value.failures) == 2
    assert all(isinstance(error, TransportError) for _, error in raised.value.failures)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_files_reuse_their_connections_far_away(
    engine: str, https_proxy: FaultProxy, live_server: LiveServer, seeded: tuple, ca: tuple, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every TLS connection costs round trips far away: 24 files on 3 workers open a handful, not one a file."""
    path, contents = seeded
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))
    api = wandb_files.Api(api_key=live_server.api_key, base_url=https_proxy.url)
    files = list(api.run(path).files())
    https_proxy.reset_stats()
    wandb_files.download_files(files, tmp_path, progress=False, max_workers=3)
    stats = https_proxy.stats
    assert stats["requests"] == len(contents)
    assert stats["connections"] <= 3, stats  # the listing's connection is the Python engine's first


@needs_curl
def test_the_curl_engine_claims_the_temp_file_when_the_bytes_are_there(
    live_server: LiveServer, seeded: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a file's answer is on its way, the curl engine's loop has created nothing on disk (a slow disk would
    hold up every transfer); a temp file claimed meanwhile by another download sends it to the Python path,
    which waits for that claim and then finishes the file."""
    path, contents = seeded
    monkeypatch.setenv("WANDB_FILES_ENGINE", "curl")
    name = sorted(contents)[0]
    with FaultProxy(live_server.base_url, first_byte_delay_ms=600) as proxy:
        api = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        file = api.run(path).file(name)
        target = tmp_path / path.rsplit("/", 1)[1] / name  # download_files writes <destination>/<run id>/<name>
        outcome: list[object] = []
        worker = threading.Thread(
            target=lambda: outcome.append(wandb_files.download_files([file], tmp_path, progress=False))
        )
        started = time.monotonic()
        worker.start()
        time.sleep(0.2)
        found = list(tmp_path.rglob("*.part"))
        assert time.monotonic() - started < 0.6 or not found  # checked while the answer was still on its way
        assert not found
        with claim_part(part_path(target)) as fd:  # another download holds the temp file as the bytes arrive
            time.sleep(0.8)
            release_if_empty(fd, part_path(target))
        worker.join(30)
    assert outcome and target.read_bytes() == contents[name]
    assert not list(tmp_path.rglob("*.part"))
