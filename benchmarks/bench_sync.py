"""`sync` of a project: a first sync, a resync with nothing changed, and a resync after one file changed.

    python benchmarks/bench_sync.py [--runs 50] [--files 200] [--size 2000] [--per-page 10000]

Starts the embedded server on 127.0.0.1, seeds `--runs` runs of `--files` files each (bulk-inserted rows and
blobs, as an upload would leave them), and times the three syncs through a counting proxy. Prints the times,
the requests each made (a no-change resync must make no byte request), the KiB of response bodies, and the
ratio of the resync to the first sync (target: at most 0.05). `--per-page` is the page size of sync's listing.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import wandb_files
import wandb_files.mirror
from wandb_files.mirror import sync
from wandb_files.paginator import BATCH_SIZE
from wandb_files.testing import BackgroundServer, FaultProxy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--per-page", type=int, default=wandb_files.mirror._LISTING_PAGE)
    args = parser.parse_args()
    wandb_files.mirror._LISTING_PAGE = args.per_page

    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(Path(tmp) / "data") as server:
        api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
        source = Path(tmp) / "src"
        for i in range(args.files):
            path = source / f"media/images/examples_{i}_{i:06x}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(args.size))
        local = sorted(p for p in source.rglob("*") if p.is_file())
        started = time.perf_counter()
        runs = []
        for r in range(args.runs):
            run = api.create_run(run_id=f"run{r:03d}", project="mirror")
            run.upload_files(local, root=source, progress=False)
            runs.append(run)
        print(f"seeded {args.runs} runs x {args.files} files of {args.size} B in {time.perf_counter() - started:.1f} s")

        dest = Path(tmp) / "mirror"
        with FaultProxy(server.base_url) as proxy:
            through = wandb_files.Api(api_key=server.api_key, base_url=proxy.url)
            rows = []
            for label in ("first sync", "no-change resync", "one file changed"):
                if label == "one file changed":
                    changed = Path(tmp) / "changed"
                    path = changed / "media/images/examples_0_000000.png"
                    path.parent.mkdir(parents=True)
                    path.write_bytes(os.urandom(args.size))
                    runs[min(7, len(runs) - 1)].upload_file(path, root=changed)
                proxy.reset_stats()
                started = time.perf_counter()
                result = sync("admin/mirror", dest, api=through, progress=False)
                seconds = time.perf_counter() - started
                stats = proxy.stats
                assert not result.failed, result.failed
                # The runs page, the light listing's pages, and per run one RunFiles by name per batch fetched.
                per_run = Counter(path.relative_to(dest).parts[0] for path in result.fetched)
                graphql = 1 + args.runs * math.ceil(args.files / args.per_page)
                graphql += sum(math.ceil(n / BATCH_SIZE) for n in per_run.values())
                rows.append((label, seconds, result, stats["requests"], graphql, stats["body_bytes"]))
        print(
            f"{'':20} {'seconds':>8} {'fetched':>8} {'unchanged':>10} {'requests':>9} {'byte requests':>14} {'KiB':>8}"
        )
        for label, seconds, result, requests, graphql, body in rows:
            print(
                f"{label:20} {seconds:8.2f} {len(result.fetched):8d} {result.unchanged:10d} {requests:9d} "
                f"{requests - graphql:14d} {body / 1024:8.0f}"
            )
        ratio = rows[1][1] / rows[0][1]
        print(f"no-change resync / first sync: {ratio:.3f} (target <= 0.05)")
        print(f"one changed file / first sync: {rows[2][1] / rows[0][1]:.3f}")


if __name__ == "__main__":
    main()
