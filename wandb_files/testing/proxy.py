"""A loopback reverse proxy that adds latency and injects faults, for resilience tests and benchmarks.

    from wandb_files.testing import FaultProxy

    with FaultProxy(upstream=server.base_url, first_byte_delay_ms=30, fault_rate=0.2, seed=0,
                    paths=("/files/", "/blobs/")) as proxy:
        ...  # point the client at proxy.url; proxy.stats counts requests, connections and faults

It runs an aiohttp low-level server and an aiohttp client session on their own event loop in a daemon
thread. Given an ``ssl.SSLContext`` (`tls`), it terminates TLS as a CDN or a load balancer does: clients speak
HTTPS to it (``proxy.url`` starts with ``https://``) and it forwards plain HTTP to the upstream, with
``X-Forwarded-Proto: https`` (so a server that trusts it, as uvicorn trusts 127.0.0.1, hands out https URLs). Bodies are streamed both ways chunk by chunk (never buffered whole), connections are kept alive on
both sides, and method, path and query, headers (except hop-by-hop ones) and status pass unchanged.

Faults, applied to a random `fault_rate` share of the requests whose path starts with one of `paths`
(chosen with ``random.Random(seed)``, so a given request order gives the same faults):

========== ====================================================================================
``500``    answer 500 with a small JSON body; the request is not forwarded
``503``    answer 503 likewise
``429``    answer 429 with ``Retry-After: 1``
``reset``  forward; send status, headers and part of the body, then abort the connection (RST)
``truncate`` forward; send the headers (full Content-Length) and about half the body, then close
``flip``   forward; flip one byte in the middle of the body, keeping its length
``slow``   forward, but wait `slow_seconds` before the first byte
========== ====================================================================================

Imports nothing from the client; needs ``aiohttp`` (the ``proxy`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, TCPConnector, hdrs, web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, MultiMapping
from yarl import URL

__all__ = ["FAULTS", "FaultProxy"]

FAULTS: tuple[str, ...] = ("500", "503", "429", "reset", "truncate", "flip", "slow")

# RFC 9110 §7.6.1; Host is kept, so the upstream builds absolute URLs that point at the proxy.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
_READ_BUFFER = 1024 * 1024  # upstream socket reads; large chunks keep the per-chunk Python cost small


def _end_to_end(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """`headers` without hop-by-hop fields (including any the Connection header names)."""
    named = {token.strip().lower() for value in headers.getall(hdrs.CONNECTION, ()) for token in value.split(",")}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() not in named)


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of `upstream`, with added latency and injected faults.

    Args:
        upstream: The server to forward to, e.g. ``"http://127.0.0.1:8080"``.
        first_byte_delay_ms: Every response is held this long before its status line is sent (an RTT).
        connect_delay_ms: The first response on each connection is held this much longer: what setting a
            connection up costs far away (a TCP handshake, and TLS's; about 2 RTTs with TLS 1.3).
        fault_rate: Share of the eligible requests that get a fault, 0.0 to 1.0.
        faults: The fault kinds to choose from, uniformly (see the module docstring).
        seed: Seed of the ``random.Random`` that picks faulted requests and their kind.
        slow_seconds: The extra wait of a ``slow`` fault.
        paths: Only requests whose path starts with one of these are eligible for faults; None: all.
        bytes_per_second: Cap each request body and each response body at this rate (as a CDN or S3 caps
            one connection); None for no cap.
        host: The address to listen on.
        port: The port; a free one when omitted. Give one (e.g. ``free_port()``) to know `url` before
            starting, say to start a server with ``--public-url`` set to it first.
        tls: A server-side ``ssl.SSLContext`` (its certificate chain loaded): clients then speak HTTPS to the
            proxy; None for plain HTTP.

    Attributes:
        url: ``http://host:port``, or ``https://host:port`` with `tls`.
    """

    def __init__(
        self,
        upstream: str,
        *,
        first_byte_delay_ms: float = 0.0,
        connect_delay_ms: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        seed: int | None = None,
        slow_seconds: float = 5.0,
        paths: Iterable[str] | None = None,
        bytes_per_second: float | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.faults = tuple(faults)
        unknown = set(self.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"faults: unknown kinds {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        if fault_rate and not self.faults:
            raise ValueError("faults is empty but fault_rate is not 0")
        if first_byte_delay_ms < 0 or connect_delay_ms < 0 or slow_seconds < 0:
            raise ValueError("first_byte_delay_ms, connect_delay_ms and slow_seconds must not be negative")
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.bytes_per_second = bytes_per_second
        self.upstream = upstream.rstrip("/")
        self.first_byte_delay = first_byte_delay_ms / 1000.0
        self.connect_delay = connect_delay_ms / 1000.0
        # Handlers (by id) of connections that have not answered yet: their first response pays connect_delay, and
        # tells whether its TLS session was resumed.
        self._fresh: set[int] = set()
        self.fault_rate = fault_rate
        self.slow_seconds = slow_seconds
        self.paths = None if paths is None else tuple(paths)
        self.host = host
        self._rng = random.Random(seed)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port or 0))
        self.port: int = self._sock.getsockname()[1]
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.reset_stats()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- statistics ----------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot: ``requests`` seen, ``connections`` accepted from clients, ``upstream_errors`` (answered
        502: the upstream was unreachable or the forwarded request failed), ``client_aborts`` (the client left
        mid-response), ``faults`` injected in all, one count per fault kind (counted when chosen), and
        ``body_bytes``: the bytes of response bodies relayed to clients. With `tls` every connection is one TLS
        handshake: ``connections`` counts them too, and ``tls_resumed`` those that resumed an earlier session
        (counted at each connection's first request)."""
        with self._lock:
            return dict(self._counts)

    def reset_stats(self) -> None:
        """Set every count back to 0."""
        with self._lock:
            self._counts = dict.fromkeys(
                (
                    "requests",
                    "connections",
                    "tls_resumed",
                    "upstream_errors",
                    "client_aborts",
                    "faults",
                    "body_bytes",
                    *FAULTS,
                ),
                0,
            )

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start serving in a background thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        self._thread = threading.Thread(target=self._run, name=f"FaultProxy:{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"FaultProxy did not start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
        finally:
            self._ready.set()
            self._sock.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        session = ClientSession(
            connector=TCPConnector(limit=0, ttl_dns_cache=None),
            timeout=ClientTimeout(total=None, sock_connect=30),
            auto_decompress=False,
            read_bufsize=_READ_BUFFER,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        self._session = session
        server = web.Server(self._handle, auto_decompress=False, access_log=None)

        def accept() -> RequestHandler:
            self._count("connections")
            handler = server()
            if self.connect_delay or self.tls:
                self._fresh.add(id(handler))
            return handler

        listener = await self._loop.create_server(accept, sock=self._sock, backlog=1024, ssl=self.tls)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            listener.close()
            await server.shutdown(timeout=0.1)  # idle keep-alive connections wait out the whole timeout
            await session.close()
            with contextlib.suppress(Exception):
                await listener.wait_closed()

    # --- requests ----------------------------------------------------------------------------------------

    def _pick_fault(self, path: str) -> str | None:
        if not self.fault_rate:
            return None
        if self.paths is not None and not path.startswith(self.paths):
            return None
        if self._rng.random() >= self.fault_rate:
            return None
        return self._rng.choice(self.faults)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._count("requests")
        setup = 0.0
        if self._fresh and id(request.protocol) in self._fresh:
            self._fresh.discard(id(request.protocol))
            setup = self.connect_delay
            tls = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
            if tls is not None and tls.session_reused:
                self._count("tls_resumed")
        fault = self._pick_fault(request.path)
        if fault is not None:
            self._count("faults")
            self._count(fault)
        if fault in ("500", "503", "429"):
            status = int(fault)
            fault_headers = {"Content-Type": "application/json"}
            if status == 429:
                fault_headers["Retry-After"] = "1"
            fault_body = json.dumps({"error": f"injected by FaultProxy: {status}"}).encode()
            await asyncio.sleep(self.first_byte_delay + setup)
            return web.Response(status=status, body=fault_body, headers=fault_headers)

        headers = _end_to_end(request.headers)
        if self.tls:  # as TLS-terminating proxies say it: the upstream then builds https URLs for its answers
            headers[hdrs.X_FORWARDED_PROTO] = "https"
        if headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            # Answered here, as aiohttp's router would; the upstream then gets the body at once.
            del headers[hdrs.EXPECT]
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body: AsyncIterator[bytes] | None = None
        if request.body_exists:
            body = self._paced(request.content.iter_any())
        try:
            upstream = await self._session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),  # as sent: no re-quoting
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
                skip_auto_headers=None,
            )
        except (ClientError, OSError) as exc:
            self._count("upstream_errors")
            return web.Response(status=502, text=f"FaultProxy: upstream failed: {exc!r}\n")
        async with upstream:
            delay = self.first_byte_delay + setup + (self.slow_seconds if fault == "slow" else 0.0)
            if delay:
                await asyncio.sleep(delay)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(_end_to_end(upstream.headers))
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            try:
                if request.method == "HEAD":
                    pass
                elif fault in ("reset", "truncate"):
                    await self._cut(request, response, upstream, fault)
                    return response
                else:
                    await self._relay(response, upstream, flip=fault == "flip", pace=self._paced, count=self._count)
                await response.write_eof()
            except ConnectionError:
                self._count("client_aborts")  # the client went away mid-response; the upstream is closed on exit
        return response

    async def _paced(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """`chunks` (an async iterator of bytes) at no more than `bytes_per_second`, in pieces of 64 KiB."""
        if self.bytes_per_second is None:
            async for chunk in chunks:
                yield chunk
            return
        loop = asyncio.get_running_loop()
        started, sent = loop.time(), 0
        async for chunk in chunks:
            for start in range(0, len(chunk), 65536):
                piece = chunk[start : start + 65536]
                sent += len(piece)
                ahead = sent / self.bytes_per_second - (loop.time() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
                yield piece

    @staticmethod
    async def _relay(
        response: web.StreamResponse,
        upstream: ClientResponse,
        flip: bool,
        pace: Callable[[AsyncIterable[bytes]], AsyncIterator[bytes]],
        count: Callable[[str, int], None],
    ) -> None:
        """Stream the upstream body to the client, through `pace`; with `flip`, invert the byte in the middle
        of it (of its first chunk when the length is unknown)."""
        flip_at = (upstream.content_length // 2 if upstream.content_length is not None else None) if flip else -1
        sent = 0
        async for chunk in pace(upstream.content.iter_any()):
            if flip_at is None:
                flip_at = len(chunk) // 2
            if 0 <= flip_at - sent < len(chunk):
                changed = bytearray(chunk)
                changed[flip_at - sent] ^= 0xFF
                chunk = bytes(changed)
            sent += len(chunk)
            count("body_bytes", len(chunk))  # before it is sent: a client that has the bytes finds them counted
            await response.write(chunk)

    async def _cut(
        self, request: web.BaseRequest, response: web.StreamResponse, upstream: ClientResponse, fault: str
    ) -> None:
        """Send about half the body (up to the first chunk when the length is unknown), then drop the
        connection: an RST for ``reset``, an orderly close (FIN) for ``truncate``."""
        limit = (upstream.content_length or 0) // 2
        sent = 0
        async for chunk in upstream.content.iter_any():
            part = chunk[: max(0, limit - sent)] if upstream.content_length is not None else chunk
            if part:
                await response.write(part)
                sent += len(part)
            if sent >= limit:
                break
        transport = request.transport
        if transport is None:
            return
        if fault == "reset":
            # An abort drops what is still buffered: let the partial body reach the peer first.
            for _ in range(1000):
                if transport.is_closing() or not transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.001)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()  # asyncio flushes what is buffered, then sends FIN: the client sees a short body


def main(argv: list[str] | None = None) -> None:
    """`python -m wandb_files.testing.proxy UPSTREAM [options]`: run a FaultProxy in its own process.

    In a process of its own the proxy behaves like a hop on the network: it does not share a GIL with the
    client under test. It runs until SIGTERM or SIGINT, then prints its stats as one JSON line on stdout.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m wandb_files.testing.proxy", description=main.__doc__)
    parser.add_argument("upstream", help="the server to forward to, e.g. http://127.0.0.1:8080")
    parser.add_argument("--port", type=int, default=None, help="the port to listen on (a free one by default)")
    parser.add_argument("--first-byte-delay-ms", type=float, default=0.0)
    parser.add_argument("--connect-delay-ms", type=float, default=0.0, help="more on each connection's first answer")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault kinds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bytes-per-second", type=float, default=None, help="cap on each body's rate")
    parser.add_argument(
        "--tls-cert", default=None, help="PEM file with the certificate chain and its key: terminate TLS (HTTPS)"
    )
    args = parser.parse_args(argv)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert)
    proxy = FaultProxy(
        args.upstream,
        port=args.port,
        first_byte_delay_ms=args.first_byte_delay_ms,
        connect_delay_ms=args.connect_delay_ms,
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        seed=args.seed,
        bytes_per_second=args.bytes_per_second,
        tls=tls,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with proxy:
        print(f"proxy listening on {proxy.url}", file=__import__("sys").stderr, flush=True)
        stop.wait()
    print(json.dumps(proxy.stats), flush=True)


if __name__ == "__main__":
    main()
