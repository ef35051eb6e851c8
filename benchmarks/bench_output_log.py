"""Server time of one console file stream request on a run with many stored console lines (output.log made again).

    python benchmarks/bench_output_log.py [--store s3|local] [--lines 10000 100000] [--repeats 8]

In this process: the server's state object over SQLite (tests/support/inprocess.py) and, with --store s3 (the
default), a moto S3 server on loopback as its blob store, in a process of its own (so its work, which S3 does
on its own machines, does not share this process's interpreter lock). For each --lines count it
seeds a run with that many console lines of about 90 bytes (requests of 10,000 lines), then times --repeats
calls of `store_stream` (the whole request's server work: the write transaction, output.log made and stored)
carrying 10 new lines, and as many rewriting the last line (a progress bar redrawn). The reference, measured in
the same run: as many requests of 10 new lines after the server forgot what it made (as after a restart), so
output.log is made from every stored line, as each console request did before. Prints the median and the
minimum of each, in wall time (waiting on the store included) and in this process's CPU time, each median's
ratio to the reference's, and checks the stored output.log against the lines at the end.
"""

from __future__ import annotations

import argparse
import atexit
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support, when run from anywhere

from sqlalchemy import select

from tests.support.inprocess import ADMIN_KEY, in_process_server
from tests.support.services import S3_CREDENTIALS, S3Service
from wandb_files.server.db.models import File
from wandb_files.server.db.streams import OUTPUT, StreamRequest, console_text
from wandb_files.server.http.app import _Server
from wandb_files.server.storage import S3BlobStore

SEED_CHUNK = 10_000


def line(i: int) -> str:
    return f"2026-12-06T10:13:20.876729 step {i:>8} loss 0.{i % 9973:04d} accuracy 0.{i % 8191:04d} lr 3e-4 " + "#" * 38


def send(srv: _Server, offset: int, texts: list[str]) -> tuple[float, float]:
    """The wall and CPU seconds (of this process, all threads) one request took."""
    started, cpu = time.perf_counter(), time.process_time()
    srv.store_stream(ADMIN_KEY, "admin", "p", "r", StreamRequest(lines={OUTPUT: (offset, texts)}))
    return time.perf_counter() - started, time.process_time() - cpu


def stored(srv: _Server) -> bytes:
    with srv.sessions() as session:
        key = session.scalars(select(File.blob_key).where(File.run_id == 1, File.name == "output.log")).one()
    store = srv.store
    if isinstance(store, S3BlobStore):
        body: bytes = store.client.get_object(Bucket=store.bucket, Key=store.object_key(key))["Body"].read()
        return body
    return store.resolve(key).read_bytes()  # type: ignore[attr-defined]


_moto: str | None = None


def start_moto() -> str:
    """The endpoint of a moto S3 server in a child process (started on first use, stopped at exit)."""
    global _moto
    if _moto is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(child.terminate)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                S3Service(endpoint, dict(S3_CREDENTIALS)).client().list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        _moto = endpoint
    return _moto


def measure(store: str, count: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config: dict[str, str] = {}
        if store == "s3":
            endpoint = start_moto()
            os.environ.update(S3_CREDENTIALS)
            bucket = f"bench-{os.getpid()}-{count}"
            S3Service(endpoint, dict(S3_CREDENTIALS)).client().create_bucket(Bucket=bucket)
            config = {"blob_store": f"s3://{bucket}/blobs", "s3_endpoint_url": endpoint}
        srv = in_process_server(Path(tmp), **config)  # type: ignore[arg-type]
        lines = [line(i) for i in range(count)]
        for start in range(0, count, SEED_CHUNK):
            send(srv, start, lines[start : start + SEED_CHUNK])
        appends: list[tuple[float, float]] = []
        rewrites: list[tuple[float, float]] = []
        remakes: list[tuple[float, float]] = []
        for r in range(repeats):
            for series in (appends, remakes):
                if series is remakes:
                    srv.__dict__.pop("_output_logs", None)  # forgotten: the next file is made from every line
                new = [line(len(lines) + i) for i in range(10)]
                series.append(send(srv, len(lines), new))
                lines += new
            lines[-1] = line(r) + " 100%"
            rewrites.append(send(srv, len(lines) - 1, [lines[-1]]))
        assert stored(srv) == console_text(lines), "output.log differs from the stored lines"
        size = len(console_text(lines))
        reference = [statistics.median(t[i] for t in remakes) for i in (0, 1)]
        series_named = (
            ("10 new lines", appends),
            ("the last line rewritten", rewrites),
            ("reference: a remake", remakes),
        )
        for name, times in series_named:
            wall = [t[0] * 1000 for t in times]
            cpu = [t[1] * 1000 for t in times]
            ratio = [statistics.median(t[i] for t in times) / reference[i] for i in (0, 1)]
            print(
                f"{store:5} {count:>8,} lines ({size / 1e6:.1f} MB)  {name:24}  wall median {statistics.median(wall):6.1f}"
                f" ms (min {min(wall):6.1f}, x{ratio[0]:.2f} of a remake)  CPU median {statistics.median(cpu):6.1f}"
                f" ms (min {min(cpu):6.1f}, x{ratio[1]:.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["s3", "local"], default="s3")
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    for count in args.lines:
        measure(args.store, count, args.repeats)


if __name__ == "__main__":
    main()
