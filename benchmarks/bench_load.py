"""A bounded loopback load test of the server: N client threads mixing listings, uploads, downloads, deletes.

    python benchmarks/bench_load.py [--clients 16] [--seconds 10] [--size 10000]

Prints requests/s and latency percentiles per operation, and the error count (must be 0). Traffic goes only to
a server this script starts on 127.0.0.1, and stops after --seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import wandb_files
from wandb_files.testing import BackgroundServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(Path(tmp) / "data") as server:
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
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

    total = sum(len(v) for v in latencies.values())
    print(
        f"{args.clients} clients, {elapsed:.1f} s, {total} operations ({total / elapsed:.0f}/s), {len(errors)} errors"
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
