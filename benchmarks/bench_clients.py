"""What a Python HTTP client costs for many small GETs: the candidates for a bulk-download engine, side by side.

    python benchmarks/bench_clients.py [--files 1000] [--size 100000] [--concurrency 16] [--rounds 3] [--tls]

Starts `wandb-files server` (BackgroundServer) and seeds --files files of --size random bytes, lists their `url`s,
then GETs every one (with the API key, each body read whole and md5-hashed, nothing written to disk) in a child
process per client, --concurrency at a time, and prints each child's wall time and CPU (user + sys, all
threads, from `os.wait4`; less the same child given no URL: the interpreter's start and the imports) relative to
curl's own (`curl --parallel`, bodies to /dev/null, plus `md5sum`'s CPU
over the same bytes once). Rounds interleave the clients. With --tls a FaultProxy terminates TLS in front of
the server (no added latency), so the clients' TLS cost counts too.

  urllib3   one PoolManager, a thread per concurrent request (what the pure-Python engine uses)
  requests  one Session, a thread each (requests' per-call machinery on top of urllib3)
  httpx     one httpx.Client (HTTP/1.1), a thread each
  aiohttp   one ClientSession, asyncio tasks on one thread
  pycurl    one CurlMulti, all transfers in one thread (what the curl engine uses)

Clients that are not installed are skipped. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_download import Graphql, child_usage, log, seed, start_proxy, stop_proxy, tls_files

from wandb_files.testing import BackgroundServer, free_port

CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time
    client, key, concurrency, urls_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    urls = json.load(open(urls_file))
    headers = {"Authorization": "Basic " + __import__("base64").b64encode(f"api:{key}".encode()).decode()}
    digests = []

    def threaded(get):
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(concurrency) as pool:
            digests.extend(pool.map(get, urls))

    if client == "urllib3":
        import urllib3
        manager = urllib3.PoolManager(maxsize=concurrency)
        def get(url):
            r = manager.request("GET", url, headers=headers, preload_content=False)
            md5 = hashlib.md5()
            while chunk := r.read1(1 << 20):
                md5.update(chunk)
            r.release_conn()
            return md5.hexdigest()
        threaded(get)
    elif client == "requests":
        import requests
        session = requests.Session()
        session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))
        session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))
        def get(url):
            with session.get(url, headers=headers, stream=True) as r:
                md5 = hashlib.md5()
                for chunk in r.iter_content(1 << 20):
                    md5.update(chunk)
                return md5.hexdigest()
        threaded(get)
    elif client == "httpx":
        import httpx
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.Client(limits=limits)
        def get(url):
            with http.stream("GET", url, headers=headers) as r:
                md5 = hashlib.md5()
                for chunk in r.iter_raw(1 << 20):
                    md5.update(chunk)
                return md5.hexdigest()
        threaded(get)
    elif client == "aiohttp":
        import asyncio, ssl, aiohttp
        async def main():
            connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl.create_default_context())
            async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
                async def get(url):
                    async with session.get(url, headers=headers) as r:
                        md5 = hashlib.md5()
                        async for chunk in r.content.iter_any():
                            md5.update(chunk)
                        return md5.hexdigest()
                digests.extend(await asyncio.gather(*map(get, urls)))
        asyncio.run(main())
    elif client == "pycurl":
        import os, pycurl
        from collections import deque
        multi, waiting, free, hashes = pycurl.CurlMulti(), deque(urls), [], {}
        ca = os.environ.get("REQUESTS_CA_BUNDLE")
        def start():
            handle = free.pop() if free else pycurl.Curl()
            hashes[handle] = md5 = hashlib.md5()
            handle.setopt(pycurl.URL, waiting.popleft())
            handle.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
            handle.setopt(pycurl.WRITEFUNCTION, md5.update)
            if ca:
                handle.setopt(pycurl.CAINFO, ca)
            multi.add_handle(handle)
        active = min(concurrency, len(urls))
        for _ in range(active):
            start()
        while active:
            multi.perform()
            _, ok, failed = multi.info_read()
            assert not failed, failed
            for handle in ok:
                multi.remove_handle(handle)
                digests.append(hashes[handle].hexdigest())
                free.append(handle)
                active -= 1
                if waiting:
                    start()
                    active += 1
            if active:
                multi.select(0.05)
    assert len(digests) == len(urls), (len(digests), len(urls))
    print(json.dumps(sorted(digests)))
    """
)
CLIENTS = ("urllib3", "requests", "httpx", "aiohttp", "pycurl")


def installed(client: str) -> bool:
    try:
        __import__(client)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="through a TLS-terminating FaultProxy")
    args = parser.parse_args()
    clients = [c for c in CLIENTS if installed(c)]
    with tempfile.TemporaryDirectory(prefix="bench-clients-") as tmp_name:
        tmp = Path(tmp_name)
        ca, server_pem = tls_files(tmp) if args.tls else (None, None)
        if ca:
            os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = str(ca)
        port = free_port()
        public = f"https://127.0.0.1:{port}" if args.tls else None
        with BackgroundServer(tmp / "data", extra_args=["--public-url", public] if public else []) as server:
            proxy = start_proxy(server.base_url, port, tls_cert=server_pem) if args.tls else None
            try:
                base = public or server.base_url
                seed(Graphql(server.base_url, server.api_key), server.base_url, base, args_for_seed(args), tmp)
                listing = Graphql(base, server.api_key).list_files("small")
                urls = [f["url"] for f in listing]
                expected = sorted(bytes.fromhex(base64_to_hex(f["md5"])).hex() for f in listing)
                urls_file = tmp / "urls.json"
                urls_file.write_text(json.dumps(urls))
                no_urls = tmp / "none.json"
                no_urls.write_text("[]")
                baseline = {
                    client: min(
                        child_usage([sys.executable, "-c", CHILD, client, "-", "1", str(no_urls)]) for _ in range(3)
                    )
                    for client in clients
                }
                curl_config = tmp / "curl.txt"
                curl_config.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls))
                results: dict[str, list[tuple[float, float]]] = {c: [] for c in ("curl", *clients)}
                for attempt in range(args.rounds):
                    command = ["curl", "--parallel", "--parallel-max", str(args.concurrency), "-sS", "--fail"]
                    command += ["-u", f"api:{server.api_key}", "-K", str(curl_config)]
                    wall, cpu, _ = child_usage(command + (["--cacert", str(ca)] if ca else []))
                    results["curl"].append((wall, cpu))
                    for client in clients:
                        wall, cpu, out = child_usage(
                            [sys.executable, "-c", CHILD, client, server.api_key, str(args.concurrency), str(urls_file)]
                        )
                        if json.loads(out) != expected:
                            raise SystemExit(f"{client}: wrong bytes")
                        wall, cpu = wall - baseline[client][0], cpu - baseline[client][1]
                        results[client].append((wall, cpu))
                        log(f"  round {attempt + 1} {client}: wall {wall:.3f}s cpu {cpu:.3f}s")
                md5sum = subprocess.run(["md5sum", "--version"], capture_output=True).returncode == 0
                md5_cpu = md5sum_cpu(tmp, args) if md5sum else 0.0
            finally:
                if proxy:
                    stop_proxy(proxy)
    curl_wall = min(w for w, _ in results["curl"])
    curl_cpu = min(c for _, c in results["curl"]) + md5_cpu
    print(f"\n{args.files} x {args.size:,} B, {args.concurrency} at once, {'HTTPS' if args.tls else 'HTTP'}")
    print(f"{'client':10} {'wall s':>7} {'CPU s':>7} {'wall/curl':>9} {'CPU/(curl+md5sum)':>18}")
    for client, runs in results.items():
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        print(f"{client:10} {wall:7.3f} {cpu:7.3f} {wall / curl_wall:9.2f} {cpu / curl_cpu:18.2f}")
    print(f"(md5sum over the same bytes: {md5_cpu:.3f} s CPU, added to curl's)")


def args_for_seed(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(files=args.files, size=args.size, big_mib=0)


def base64_to_hex(md5: str) -> str:
    import base64

    return base64.b64decode(md5).hex()


def md5sum_cpu(tmp: Path, args: argparse.Namespace) -> float:
    """md5sum's CPU over --files files of --size bytes (written here once, read from the page cache)."""
    folder = tmp / "md5"
    folder.mkdir()
    names = []
    for i in range(args.files):
        path = folder / f"{i}.bin"
        path.write_bytes(os.urandom(args.size))
        names.append(str(path))
    return min(child_usage(["md5sum", *names])[1] for _ in range(3))


if __name__ == "__main__":
    main()
