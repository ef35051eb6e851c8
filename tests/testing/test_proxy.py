"""FaultProxy: transparent forwarding, latency, keep-alive, streaming, and every fault kind as a client sees it."""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("aiohttp")

from wandb_files.testing import (
    FaultProxy,
    free_port,
)

_BLOCK = random.Random(7).randbytes(1 << 20)


def body_of(size: int) -> bytes:
    """The bytes /bytes/<size> answers: a fixed random MiB, repeated and cut."""
    return (_BLOCK * (size // len(_BLOCK) + 1))[:size]


class Upstream(http.server.ThreadingHTTPServer):
    """A tiny HTTP/1.1 keep-alive upstream that counts connections and requests and echoes what it got."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.requests = 0
        self.trickle_release = threading.Event()  # /trickle sends its second half once this is set
        self.upload_started = threading.Event()  # set once /echo has the first chunk of a body
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: Upstream

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            parts = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.server.upload_started.set()
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        data = bytearray()
        while len(data) < length:
            chunk = self.rfile.read(min(1 << 16, length - len(data)))
            if not chunk:
                break
            data += chunk
            self.server.upload_started.set()
        return bytes(data)

    def _route(self) -> None:
        self.server.requests += 1
        path, _, query = self.path.partition("?")
        if path.startswith("/bytes/"):
            size = int(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("ETag", '"etag-1"')
            self.end_headers()
            if self.command != "HEAD":
                data = body_of(size)
                for offset in range(0, size, 1 << 20):
                    self.wfile.write(data[offset : offset + (1 << 20)])
        elif path.startswith("/chunked/"):  # no Content-Length: two chunks
            data = body_of(int(path.rsplit("/", 1)[1]))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(data) // 2
            for part in (data[:half], data[half:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(2 << 20))
            self.end_headers()
            self.wfile.write(body_of(1 << 20))
            self.wfile.flush()
            self.server.trickle_release.wait(10)
            self.wfile.write(body_of(1 << 20))
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self._send(status, b"status body", {"Location": "/elsewhere"} if status == 302 else None)
        else:  # /echo and anything else: what arrived
            body = self._read_body()
            answer = {
                "method": self.command,
                "path": self.path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "length": len(body),
                "md5": hashlib.md5(body).hexdigest(),
            }
            self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _route


@pytest.fixture(autouse=True)
def _no_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request here times out, so a proxy that stops answering fails a test instead of hanging it."""
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.trickle_release.set()
    server.shutdown()
    server.server_close()


def raw_get(url: str, path: str, timeout: float = 5.0) -> tuple[bytes, bytes, BaseException | None]:
    """GET over a bare socket: (head, body bytes received, the error that ended the read or None at EOF)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = bytearray()
        error: BaseException | None = None
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except OSError as exc:
                error = exc
                break
            if not chunk:
                break
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body, error


# --- transparent forwarding --------------------------------------------------------------------------


def test_passes_everything_byte_exact_when_fault_rate_is_zero(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, fault_rate=0.0) as proxy, requests.Session() as s:
        for size in (0, 1, 1000, 3 * (1 << 20) + 17):
            r = s.get(f"{proxy.url}/bytes/{size}")
            assert r.status_code == 200 and r.content == body_of(size)
            assert r.headers["Content-Length"] == str(size) and r.headers["ETag"] == '"etag-1"'
        head = s.head(f"{proxy.url}/bytes/12345")
        assert head.status_code == 200 and head.headers["Content-Length"] == "12345" and head.content == b""
        assert s.get(f"{proxy.url}/status/404").status_code == 404
        redirect = s.get(f"{proxy.url}/status/302", allow_redirects=False)
        assert redirect.status_code == 302 and redirect.headers["Location"] == "/elsewhere"

        sent_headers = {
            "Authorization": "Basic YXBpOmtleQ==",
            "Range": "bytes=10-19",
            "If-Range": '"etag-1"',
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped: named by Connection",
            "Keep-Alive": "timeout=5",
        }
        echo = s.post(f"{proxy.url}/echo/a%20b?x=1&y=%2F", headers=sent_headers, data=b"payload").json()
        assert echo["method"] == "POST" and echo["path"] == "/echo/a%20b?x=1&y=%2F"
        for key in ("Authorization", "Range", "If-Range", "X-Custom"):
            assert echo["headers"][key.lower()] == sent_headers[key]
        assert "x-hop" not in echo["headers"] and "keep-alive" not in echo["headers"]
        assert echo["headers"]["content-length"] == "7" and echo["md5"] == hashlib.md5(b"payload").hexdigest()
        assert echo["headers"]["host"] == proxy.url.removeprefix("http://")  # upstream builds URLs to the proxy

        unsized = s.get(f"{proxy.url}/chunked/100000")
        assert unsized.content == body_of(100000) and "Content-Length" not in unsized.headers

        chunked = s.put(f"{proxy.url}/echo", data=iter([b"a" * 1000, b"b" * 5000])).json()
        assert chunked["length"] == 6000 and chunked["md5"] == hashlib.md5(b"a" * 1000 + b"b" * 5000).hexdigest()
        assert proxy.stats["faults"] == 0


def test_live_server_range_and_auth_through_proxy(live_server: Any, unique: str) -> None:
    key, base = live_server.api_key, live_server.base_url

    def gql(query: str, variables: dict[str, Any]) -> Any:
        answer = requests.post(f"{base}/graphql", json={"query": query, "variables": variables}, auth=("api", key))
        return answer.json()["data"]

    gql(
        "mutation($p: String, $n: String) { upsertBucket(input: {modelName: $p, name: $n}) { bucket { id } } }",
        {"p": unique, "n": "run"},
    )
    created = gql(
        'mutation($p: String!, $f: [String!]!) { createRunFiles(input: {entityName: "admin", projectName: $p,'
        ' runName: "run", files: $f}) { files { uploadUrl } } }',
        {"p": unique, "f": ["data.bin"]},
    )
    data = body_of(300_000)
    with FaultProxy(base) as proxy:
        upload_url = created["createRunFiles"]["files"][0]["uploadUrl"].replace(base, proxy.url)
        assert requests.put(upload_url, data=data).status_code == 200
        url = f"{proxy.url}/files/admin/{unique}/run/data.bin"
        assert requests.get(url).status_code == 401
        whole = requests.get(url, auth=("api", key))
        assert whole.status_code == 200 and whole.content == data
        ranged = {"Range": "bytes=100-199", "If-Range": whole.headers["ETag"]}
        part = requests.get(url, auth=("api", key), headers=ranged)
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"


def test_keep_alive_on_both_sides(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy, requests.Session() as s:
        for _ in range(50):
            assert s.get(f"{proxy.url}/bytes/100").content == body_of(100)
        assert proxy.stats["requests"] == 50
        assert proxy.stats["connections"] == 1
        assert upstream.connections == 1


def test_fifty_megabytes_stream_intact_both_ways(upstream: Upstream) -> None:
    size = 50 * (1 << 20)
    with FaultProxy(upstream.url) as proxy:
        r = requests.get(f"{proxy.url}/bytes/{size}", stream=True, timeout=5)
        md5 = hashlib.md5()
        received = 0
        for chunk in r.iter_content(1 << 20):
            md5.update(chunk)
            received += len(chunk)
        assert received == size and md5.hexdigest() == hashlib.md5(body_of(size)).hexdigest()

        echo = requests.put(f"{proxy.url}/echo", data=body_of(size)).json()
        assert echo["length"] == size and echo["md5"] == md5.hexdigest()


def test_bodies_are_streamed_not_buffered(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy:
        # Download: the upstream sends its second half only after the client has the first.
        r = requests.get(f"{proxy.url}/trickle", stream=True, timeout=5)
        first = r.raw.read(1 << 20)
        assert first == body_of(1 << 20)
        upstream.trickle_release.set()
        assert len(r.raw.read()) == 1 << 20

        # Upload: the client sends its second chunk only after the upstream has the first.
        def chunks() -> Iterator[bytes]:
            yield b"x" * (1 << 20)
            assert upstream.upload_started.wait(5), "the proxy held the upload's first chunk back"
            yield b"y" * (1 << 20)

        echo = requests.put(f"{proxy.url}/echo", data=chunks(), timeout=10).json()
        assert echo["length"] == 2 << 20


def test_first_byte_delay_is_applied(upstream: Upstream) -> None:
    def best_of_three(url: str) -> float:
        times = []
        with requests.Session() as s:
            for _ in range(3):
                started = time.perf_counter()
                s.get(url).raise_for_status()
                times.append(time.perf_counter() - started)
        return min(times)

    with FaultProxy(upstream.url) as fast, FaultProxy(upstream.url, first_byte_delay_ms=150) as slow:
        assert best_of_three(f"{fast.url}/bytes/10") < 0.1
        assert best_of_three(f"{slow.url}/bytes/10") >= 0.15


def test_bytes_per_second_caps_each_body_both_ways(upstream: Upstream) -> None:
    size = 600_000
    with FaultProxy(upstream.url, bytes_per_second=1_000_000) as proxy:
        started = time.perf_counter()
        body = requests.get(f"{proxy.url}/bytes/{size}", timeout=10).content
        down = time.perf_counter() - started
        started = time.perf_counter()
        echo = requests.put(f"{proxy.url}/echo", data=body_of(size), timeout=10).json()
        up = time.perf_counter() - started
    assert body == body_of(size) and echo["length"] == size
    assert 0.5 <= down < 2.0 and 0.5 <= up < 2.0, (down, up)  # 0.6 s at the cap; uncapped it is milliseconds


def test_given_port_is_known_before_start(upstream: Upstream) -> None:
    port = free_port()
    proxy = FaultProxy(upstream.url, port=port)
    assert proxy.url == f"http://127.0.0.1:{port}"
    with proxy:
        assert requests.get(f"http://127.0.0.1:{port}/bytes/5").content == body_of(5)


def test_unreachable_upstream_is_502() -> None:
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        assert requests.get(f"{proxy.url}/x").status_code == 502
        assert proxy.stats["upstream_errors"] == 1


# --- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "503", "429"])
def test_status_faults_are_answered_without_forwarding(upstream: Upstream, kind: str) -> None:
    with FaultProxy(upstream.url, fault_rate=1.0, faults=(kind,)) as proxy:
        r = requests.get(f"{proxy.url}/bytes/100", timeout=5)
        assert r.status_code == int(kind)
        assert r.headers.get("Retry-After") == ("1" if kind == "429" else None)
        assert upstream.requests == 0
        assert proxy.stats[kind] == 1 and proxy.stats["faults"] == 1 and proxy.stats["requests"] == 1


def test_reset_sends_part_of_the_body_then_an_rst(upstream: Upstream) -> None:
    size = 400_000
    with FaultProxy(upstream.url, fault_rate=1.0, faults=("reset",)) as proxy:
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="ConnectionResetError"):
            requests.get(f"{proxy.url}/bytes/{size}", timeout=5)
        head, body, error = raw_get(proxy.url, f"/bytes/{size}")
        assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {size}".encode() in head
        assert 0 < len(body) < size and body == body_of(size)[: len(body)]
        assert isinstance(error, ConnectionResetError)
        assert proxy.stats["reset"] == 2


def test_truncate_closes_after_about_half_the_body(upstream: Upstream) -> None:
    size = 400_000
    with FaultProxy(upstream.url, fault_rate=1.0, faults=("truncate",)) as proxy:
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
            requests.get(f"{proxy.url}/bytes/{size}", timeout=5)
        head, body, error = raw_get(proxy.url, f"/bytes/{size}")
        assert error is None  # an orderly close, not a reset
        assert f"Content-Length: {size}".encode() in head
        assert len(body) == size // 2 and body == body_of(size)[: size // 2]
        assert proxy.stats["truncate"] == 2


def test_flip_changes_one_byte_in_the_middle(upstream: Upstream) -> None:
    size = 1_000_001
    with FaultProxy(upstream.url, fault_rate=1.0, faults=("flip",)) as proxy:
        r = requests.get(f"{proxy.url}/bytes/{size}", timeout=5)
        expected = body_of(size)
        assert r.status_code == 200 and len(r.content) == size
        assert [i for i in range(size) if r.content[i] != expected[i]] == [size // 2]
        assert hashlib.md5(r.content).digest() != hashlib.md5(expected).digest()


def test_flip_without_content_length_still_flips_one_byte(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, fault_rate=1.0, faults=("flip",)) as proxy:
        got, expected = requests.get(f"{proxy.url}/chunked/100000").content, body_of(100000)
        assert len(got) == len(expected) and sum(a != b for a, b in zip(got, expected, strict=True)) == 1


def test_a_client_leaving_mid_download_is_counted_and_harmless(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy:
        with requests.get(f"{proxy.url}/bytes/{100 << 20}", stream=True) as r:
            assert len(r.raw.read(1 << 20)) == 1 << 20
        deadline = time.monotonic() + 5
        while proxy.stats["client_aborts"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.stats["client_aborts"] == 1
        assert requests.get(f"{proxy.url}/bytes/10").content == body_of(10)


def test_slow_waits_before_the_first_byte(upstream: Upstream) -> None:
    with FaultProxy(upstream.url, fault_rate=1.0, faults=("slow",), slow_seconds=0.5) as proxy:
        started = time.perf_counter()
        r = requests.get(f"{proxy.url}/bytes/1000", timeout=5)
        assert time.perf_counter() - started >= 0.5
        assert r.content == body_of(1000) and proxy.stats["slow"] == 1


def test_faults_only_on_given_paths_and_reproducible_by_seed(upstream: Upstream) -> None:
    def statuses(seed: int) -> list[int]:
        with (
            FaultProxy(
                upstream.url, fault_rate=0.5, faults=("500", "503", "429"), seed=seed, paths=("/bytes/",)
            ) as proxy,
            requests.Session() as s,
        ):
            for _ in range(20):
                assert s.get(f"{proxy.url}/echo").status_code == 200  # not an eligible path
            return [s.get(f"{proxy.url}/bytes/10").status_code for _ in range(60)]

    first, again, other = statuses(1), statuses(1), statuses(2)
    assert first == again and first != other
    assert set(first) == {200, 500, 503, 429}
    assert 15 <= sum(status != 200 for status in first) <= 45


def test_rejects_unknown_fault_kinds() -> None:
    with pytest.raises(ValueError, match="unknown"):
        FaultProxy("http://127.0.0.1:1", faults=("boom",))
