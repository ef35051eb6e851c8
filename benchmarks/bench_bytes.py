"""Bytes out of the embedded server next to nginx serving the very same blob file, in one run.

    python benchmarks/bench_bytes.py [--seconds 5] [--big-mib 1024] [--server-args "--workers 2"]

Needs Debian's `nginx` and `wrk` (`make bench-tools` installs them). It starts `wandb-files server` with
BackgroundServer and nginx (sendfile, one worker, loopback, a config in a temp folder) over the blob folder of
that server, then measures with wrk (2 threads, 16 connections, keep-alive) a 100 KB file fetched:

- from nginx, the reference;
- through the file's `url` (with the API key, HTTP Basic);
- through its `directUrl` (signed, no key);

and prints requests/s and each ratio to nginx's. Then one big file (--big-mib) fetched with curl from nginx and
through `directUrl` and `url`: MB/s and the ratio. The server's resident memory (all its processes) is printed
before and after. Only 127.0.0.1 is used; every wrk and curl run is bounded in time.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

import wandb_files
from wandb_files.testing import BackgroundServer, free_port

SMALL_BYTES = 100 * 1024


def need(tool: str) -> str:
    """The path of `tool`, or exit saying how to get it."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path is None:
        sys.exit(f"{tool} is not installed: `make bench-tools` (Debian's nginx and wrk)")
    return path


def tree_rss_mib(pid: int) -> float:
    """Resident memory of `pid` and all its descendants (a server's workers), in MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


def start_nginx(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nginx serving `root` on a free loopback port: one worker, sendfile, no access log."""
    port = free_port()
    (work / "logs").mkdir(parents=True)
    user = "user root;" if os.geteuid() == 0 else ""  # the blobs are 0600, owned by whoever runs the server
    temp = "\n".join(
        f"    {name}_temp_path {work / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {work / "nginx.pid"};
error_log {work / "logs" / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temp}
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
    )
    process = subprocess.Popen(
        [need("nginx"), "-p", str(work), "-c", str(work / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(base + "/", timeout=1)
            return process, base
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                sys.exit(f"nginx did not start: {(work / 'logs' / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)


def wrk(url: str, seconds: float, headers: dict[str, str] | None = None) -> float:
    """Requests/s of wrk (2 threads, 16 connections) on `url`; exits if any response was not a 2xx."""
    args = [need("wrk"), "-t2", "-c16", f"-d{seconds:g}s", "--timeout", "5s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors on {urlsplit(url).path[:40]}...:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def curl_mb_s(url: str, headers: dict[str, str] | None = None, tries: int = 3) -> float:
    """The best download speed (MB/s) of `tries` curl GETs of `url` to /dev/null."""
    args = ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", "--max-time", "120"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    best = 0.0
    for _ in range(tries):
        speed, _size = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout.split()
        best = max(best, float(speed) / 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file (0: skip that part)")
    parser.add_argument("--server-args", default="", help="more `wandb-files server` options, e.g. '--workers 2'")
    args = parser.parse_args()
    need("nginx"), need("wrk")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        with BackgroundServer(data, workers=None, extra_args=shlex.split(args.server_args)) as server:
            api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
            run = api.create_run(project="bytes")
            src = tmp_path / "src"
            src.mkdir()
            (src / "small.bin").write_bytes(os.urandom(SMALL_BYTES))
            if args.big_mib:
                with open(src / "big.bin", "wb") as fh:
                    for _ in range(args.big_mib):
                        fh.write(os.urandom(1024 * 1024))
            run.upload_files(sorted(src.iterdir()), root=src, progress=False)
            files = {f.name: f for f in api.run("/".join(run.path)).files()}
            auth = {"Authorization": "Basic " + base64.b64encode(f"api:{server.api_key}".encode()).decode()}
            blob_root = data / "blobs"
            assert server.process is not None
            rss_before = tree_rss_mib(server.process.pid)
            nginx, nginx_base = start_nginx(blob_root, tmp_path / "nginx")
            try:

                def nginx_url(name: str) -> str:
                    # The blob the file row points at: the one file under blobs/ with that content.
                    wanted = (src / name).stat().st_size
                    blob = next(p for p in blob_root.rglob("*") if p.is_file() and p.stat().st_size == wanted)
                    return f"{nginx_base}/{blob.relative_to(blob_root)}"

                small = files["small.bin"]
                assert small.url is not None and small.direct_url is not None
                for url, headers in ((nginx_url("small.bin"), None), (small.url, auth), (small.direct_url, None)):
                    body = requests.get(url, headers=headers, timeout=10).content
                    assert body == (src / "small.bin").read_bytes(), url
                print(f"server: {args.server_args or '(defaults)'}; wrk -t2 -c16 -d{args.seconds:g}s, 100 KB file")
                reference = wrk(nginx_url("small.bin"), args.seconds)
                print(f"  nginx      {reference:9.0f} requests/s")
                for label, url, headers in (("url", small.url, auth), ("directUrl", small.direct_url, None)):
                    rate = wrk(url, args.seconds, headers)
                    print(f"  {label:10} {rate:9.0f} requests/s  {rate / reference:6.3f} x nginx")
                if args.big_mib:
                    big = files["big.bin"]
                    assert big.url is not None and big.direct_url is not None
                    print(f"{args.big_mib} MiB file, curl to /dev/null (best of 3)")
                    reference = curl_mb_s(nginx_url("big.bin"))
                    print(f"  nginx      {reference:9.0f} MB/s")
                    for label, url, headers in (("url", big.url, auth), ("directUrl", big.direct_url, None)):
                        speed = curl_mb_s(url, headers)
                        print(f"  {label:10} {speed:9.0f} MB/s        {speed / reference:6.3f} x nginx")
            finally:
                nginx.terminate()
                nginx.wait(timeout=10)
            rss_after = tree_rss_mib(server.process.pid)
            print(f"server memory (RSS, all processes): {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")


if __name__ == "__main__":
    main()
