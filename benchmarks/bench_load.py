"""A bounded loopback load test of the server: N client threads mixing listings, uploads, downloads, deletes.

    python benchmarks/bench_load.py [--clients 16] [--seconds 10] [--size 10000] [--database sqlite|postgresql]
        [--server-args "--workers 2"]

Prints operations/s and latency percentiles (p50, p99) per operation, the error count (must be 0), and the CPU
seconds the server (all its processes) and the clients (this process) used, which tells which side was the
limit. --database postgresql starts a throwaway PostgreSQL cluster (initdb in a temp folder, loopback only,
as tests/support/services.py does) for the server. Traffic goes only to a server this script starts on
127.0.0.1, and stops after --seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import wandb_files
from wandb_files.testing import BackgroundServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support (PostgreSQL), run from anywhere


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (a server's workers)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            stats[int(stat.parent.name)] = fields
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        if p in stats:
            total += int(stats[p][11]) + int(stats[p][12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def database_url(kind: str) -> str | None:
    """None for SQLite (the server's own file), else the URL of a new database in a throwaway cluster."""
    if kind == "sqlite":
        return None
    from tests.support.services import postgres_cluster

    return postgres_cluster().create_database()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--server-args", default="", help="more `wandb-files server` options, e.g. '--workers 2'")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        BackgroundServer(
            Path(tmp) / "data",
            database_url=database_url(args.database),
            workers=None,  # the server's default, as a user runs it
            extra_args=shlex.split(args.server_args),
        ) as server,
    ):
        assert server.process is not None
        api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
        run = api.create_run(project="load")
        seed = Path(tmp) / "seed"
        seed.mkdir()
        for i in range(50):
            (seed / f"f{i:02d}.bin").write_bytes(os.urandom(args.size))
        run.upload_files(sorted(seed.iterdir()), root=seed, progress=False)
        path = "/".join(run.path)
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds

        def client(n: int) -> None:
            rng = random.Random(n)
            mine = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
            my_run = mine.run(path)
            local = Path(tmp) / f"client{n}"
            local.mkdir()
            while time.monotonic() < deadline:
                op = rng.choices(["list page", "download", "upload", "delete"], [4, 4, 2, 1])[0]
                name = f"f{rng.randrange(60):02d}.bin"
                started = time.perf_counter()
                try:
                    if op == "list page":
                        my_run.files(per_page=50)[0]
                    elif op == "download":
                        for f in my_run.files(names=[name]):
                            f.download(root=local, replace=True).close()
                    elif op == "upload":
                        (local / name).write_bytes(os.urandom(args.size))
                        my_run.upload_file(local / name, root=local)
                    else:
                        for f in my_run.files(names=[name]):
                            f.delete()
                except (wandb_files.NotFoundError, wandb_files.IntegrityError):
                    pass  # races between clients on one name are expected
                except Exception as exc:  # noqa: BLE001 - counted and printed
                    with lock:
                        errors.append(f"{op}: {type(exc).__name__}: {exc}")
                    continue
                with lock:
                    latencies[op].append(time.perf_counter() - started)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        server_cpu = tree_cpu_seconds(server.process.pid)
        client_cpu = time.process_time()
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        server_cpu = tree_cpu_seconds(server.process.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu

    total = sum(len(v) for v in latencies.values())
    print(f"{args.database}, server {args.server_args or '(defaults)'}")
    print(
        f"{args.clients} clients, {elapsed:.1f} s, {total} operations ({total / elapsed:.0f}/s), {len(errors)} errors"
    )
    print(
        f"CPU: server {server_cpu:.1f} s ({server_cpu / elapsed:.2f} cores), "
        f"clients {client_cpu:.1f} s ({client_cpu / elapsed:.2f} cores)"
    )
    print(f"{'operation':12} {'count':>6} {'ops/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for op, values in sorted(latencies.items()):
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(
            f"{op:12} {len(values):6d} {len(values) / elapsed:7.0f} {statistics.median(values) * 1000:8.1f} "
            f"{p99 * 1000:8.1f}"
        )
    for line in errors[:10]:
        print("  error:", line)


if __name__ == "__main__":
    main()
