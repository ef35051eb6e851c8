"""How downloads through `url` should be served, and how the real wandb client's loop compares with ours.

Starts the embedded server, seeds N files, and times on the same server in one run:
  1. the real `wandb` client's loop: `for f in api.run(path).files(): f.download(root, replace=True)`;
  2. our SDK's sequential loop (same shape, plus size/md5 checks and atomic rename);
  3. `url` streamed directly (what the server does): one authenticated GET per file;
  4. `url` answered with a redirect to the signed `directUrl`, approximated as an authenticated HEAD of `url`
     (auth + lookup, no body: what a 302 costs) followed by a GET of `directUrl`.

    python benchmarks/bench_wandb_download.py [--files 200] [--size 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

import wandb_files
from wandb_files.testing import BackgroundServer


def timed(label: str, fn: Callable[[], None], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    best = min(times)
    print(f"  {label:58} best {best:7.3f}s  median {statistics.median(times):7.3f}s")
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, BackgroundServer(Path(tmp) / "data") as server:
        api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
        run = api.create_run(project="bench")
        source = Path(tmp) / "src"
        source.mkdir()
        for i in range(args.files):
            (source / f"f_{i:04d}.bin").write_bytes(os.urandom(args.size))
            run.upload_file(source / f"f_{i:04d}.bin", root=source)
        files = list(run.files(per_page=1000))
        path = "/".join(run.path)
        print(f"{args.files} files x {args.size:,} bytes, loopback, sequential")

        os.environ.update(WANDB_BASE_URL=server.base_url, WANDB_API_KEY=server.api_key, WANDB_SILENT="true")
        import wandb

        wandb_api = wandb.Api()

        def wandb_loop() -> None:
            for f in wandb_api.run(path).files():
                f.download(root=str(Path(tmp) / "wandb"), replace=True)

        def our_loop() -> None:
            for f in api.run(path).files():
                f.download(root=Path(tmp) / "ours", replace=True).close()

        session = requests.Session()
        auth = ("api", server.api_key)

        def direct() -> None:
            for f in files:
                assert len(session.get(f.url, auth=auth).content) == args.size  # type: ignore[arg-type]

        def redirect() -> None:
            for f in files:
                session.head(f.url, auth=auth)  # type: ignore[arg-type]
                assert len(session.get(f.direct_url).content) == args.size  # type: ignore[arg-type]

        t_wandb = timed("real wandb 0.31 loop (list + download)", wandb_loop)
        t_ours = timed("wandb_files loop (list + download + md5 + rename)", our_loop)
        t_direct = timed("GET url, streamed directly", direct)
        t_redirect = timed("GET url -> redirect hop -> GET directUrl", redirect)
        print(f"ratios: ours/wandb {t_ours / t_wandb:.2f}  redirect/direct {t_redirect / t_direct:.2f}")


if __name__ == "__main__":
    main()
