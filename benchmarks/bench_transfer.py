"""The bulk engine's own cost against curl's, and listing overlapped with downloading, on one server in one run.

    python benchmarks/bench_transfer.py [--files 1000] [--size 100000] [--big-files 20000] [--big-size 1000]
                                        [--repeats 3] [--engines python,curl]

Starts `wandb-files server` (BackgroundServer with the server's default workers, data in a temp dir) and seeds, with bench_download's seeding:

1. Small files (--files x --size, run "small"), already listed. Each method runs in a process of its own and
   is measured the same way: wall time, and CPU seconds (user + sys, all threads) from `os.wait4`'s rusage.
   - curl --parallel --parallel-max 16 over the files' `url`s (-u api:KEY, --create-dirs), the whole process;
   - `download_files(listed, dest, progress=False)` in a child that lists the run first: its CPU is the
     child's rusage at the end less its rusage just before the call (so the interpreter's start, the imports
     and the listing are not counted; curl's own start is), its wall time is the call's. Once per engine
     (`WANDB_FILES_ENGINE=python`, and `curl` when pycurl is installed).
   Every output is checked against the server's md5s.
2. Pipelining (--big-files x --big-size, run "many"): `download_files(run.files())` (the lazy collection: listing
   overlapped with the download) against listing alone plus `download_files` of the pre-listed files (a list),
   each in a child of its own, --big-repeats times.

Prints the ratios: SDK CPU / curl CPU, SDK wall / curl wall, whole / (listing + pre-listed download).
Each figure is the best of --repeats rounds; a round runs every method once, so load changes hit them alike. Loopback only; run under `flock /tmp/wandb-files-bench.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_download import (  # the benchmarks folder is not a package: found through sys.path
    CREATE_FILES,
    ENTITY,
    PROJECT,
    UPSERT_RUN,
    Graphql,
    curl_supports_parallel,
    log,
    verify,
)

from wandb_files.testing import BackgroundServer

CURL_PARALLEL = 16
SMALL_RUN = "small"
MANY_RUN = "many"

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import pandas  # download_files returns a DataFrame: its import is not the download's cost
    import wandb_files

    base_url, key, path, dest, mode = sys.argv[1:]

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    api = wandb_files.Api(api_key=key, base_url=base_url)
    run = api.run(path)
    out = {}
    if mode == "listed":
        files = list(run.files(per_page=1000))
        cpu0, wall0 = cpu(), time.perf_counter()
        wandb_files.download_files(files, dest, progress=False)
    elif mode == "listing":
        cpu0, wall0 = cpu(), time.perf_counter()
        files = list(run.files(per_page=1000))
    else:  # "whole": the same call on the lazy collection, so listing and download overlap
        cpu0, wall0 = cpu(), time.perf_counter()
        wandb_files.download_files(run.files(per_page=1000), dest, progress=False)
    out["wall"] = time.perf_counter() - wall0
    out["cpu"] = cpu() - cpu0
    print(json.dumps(out))
    """
)


@dataclass
class Measured:
    wall: float
    cpu: float


def seed_run(gql: Graphql, server_url: str, run: str, count: int, size: int) -> None:
    import concurrent.futures
    import threading

    import requests

    started = time.perf_counter()
    gql(UPSERT_RUN, project=PROJECT, run=run)
    names = [f"data/{i // 1000:03d}/f_{i:06d}.bin" for i in range(count)]
    urls: list[str] = []
    for start in range(0, len(names), 1000):
        created = gql(CREATE_FILES, entity=ENTITY, project=PROJECT, run=run, files=names[start : start + 1000])
        urls += [f["uploadUrl"] for f in created["createRunFiles"]["files"]]
    local = threading.local()

    def put(url: str) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        local.session.put(url, data=os.urandom(size), timeout=600).raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, urls))
    log(f"seeded {run}: {count} x {size:,} B in {time.perf_counter() - started:.1f}s")


def child_usage(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, user+sys CPU seconds of the process and all its threads, stdout)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed with exit status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, out


def curl_once(listing: list[dict[str, str]], key: str, root: Path, tmp: Path) -> Measured:
    config = tmp / "curl-urls.txt"
    with open(config, "w") as fh:
        for f in listing:
            fh.write(f'url = "{f["url"]}"\noutput = "{root / f["name"]}"\n')
    command = ["curl", "--parallel", "--parallel-max", str(CURL_PARALLEL), "--create-dirs", "-sS"]
    command += ["--no-progress-meter", "--fail", "-u", f"api:{key}", "-K", str(config)]
    wall, cpu, _ = child_usage(command)
    return Measured(wall, cpu)


def sdk_once(base_url: str, key: str, run: str, root: Path, mode: str, engine: str | None) -> Measured:
    env = dict(os.environ, WANDB_FILES_DISABLE_PROGRESS="1")
    if engine:
        env["WANDB_FILES_ENGINE"] = engine
    _, _, out = child_usage(
        [sys.executable, "-c", CHILD, base_url, key, f"{ENTITY}/{PROJECT}/{run}", str(root), mode], env
    )
    figures = json.loads(out.strip().splitlines()[-1])
    return Measured(figures["wall"], figures["cpu"])


def best(label: str, repeats: int, once: object, check: object, tmp: Path) -> Measured:
    results: list[Measured] = []
    for attempt in range(repeats):
        root = tmp / f"out-{label.split()[0]}-{attempt}"
        measured = once(root)  # type: ignore[operator]
        results.append(measured)
        log(f"  {label}: wall {measured.wall:.3f}s cpu {measured.cpu:.3f}s")
        if attempt == repeats - 1 and check is not None:
            check(root)  # type: ignore[operator]
    # Outputs are removed only now: ext4 avoids reusing inodes deleted moments ago, and that search would cost
    # the next method's file creations (sys time) more than any client's own work.
    for attempt in range(repeats):
        shutil.rmtree(tmp / f"out-{label.split()[0]}-{attempt}", ignore_errors=True)
    return Measured(min(r.wall for r in results), min(r.cpu for r in results))


def engines_available(wanted: list[str]) -> list[str]:
    usable = []
    for engine in wanted:
        if engine == "curl":
            try:
                import pycurl  # noqa: F401
            except ImportError:
                log("pycurl is not installed (pip install pycurl): skipping the curl engine")
                continue
        usable.append(engine)
    return usable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--big-files", type=int, default=20_000, help="files of the pipelining run; 0 skips it")
    parser.add_argument("--big-size", type=int, default=1000)
    parser.add_argument("--big-repeats", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="python,curl", help="WANDB_FILES_ENGINE values to measure")
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()
    if not curl_supports_parallel():
        raise SystemExit("curl with --parallel (>= 7.66) is needed: apt-get install -y curl")
    engines = engines_available(args.engines.split(","))
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-transfer-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        with BackgroundServer(tmp / "data", workers=None) as server:  # the server's default workers, as deployed
            key, base_url = server.api_key, server.base_url
            gql = Graphql(base_url, key)
            seed_run(gql, base_url, SMALL_RUN, args.files, args.size)
            listing = gql.list_files(SMALL_RUN)
            expected = {f["name"]: f["md5"] for f in listing}
            # Rounds interleave the methods, so that a change in the machine's load hits them all alike.
            methods = {"curl-cli": lambda root: curl_once(listing, key, root, tmp)}
            for engine in engines:
                methods[f"sdk-{engine}"] = lambda root, engine=engine: sdk_once(
                    base_url, key, SMALL_RUN, root, "listed", engine
                )
            runs: dict[str, list[Measured]] = {name: [] for name in methods}
            for attempt in range(args.repeats):
                for name, once in methods.items():
                    root = tmp / f"out-{name}-{attempt}"
                    measured = once(root)
                    runs[name].append(measured)
                    log(f"  {name}: wall {measured.wall:.3f}s cpu {measured.cpu:.3f}s")
                    if attempt == args.repeats - 1:
                        verify(name, root if name == "curl-cli" else root / SMALL_RUN, expected)
            for name in methods:  # removed only now (see `best`)
                for attempt in range(args.repeats):
                    shutil.rmtree(tmp / f"out-{name}-{attempt}", ignore_errors=True)
            best_of = {name: Measured(min(r.wall for r in rs), min(r.cpu for r in rs)) for name, rs in runs.items()}
            curl = best_of["curl-cli"]
            lines.append(f"{args.files} x {args.size:,} B, listed: curl wall {curl.wall:.3f}s cpu {curl.cpu:.3f}s")
            for engine in engines:
                ours = best_of[f"sdk-{engine}"]
                lines.append(
                    f"  engine {engine:6}: SDK CPU / curl CPU = {ours.cpu / curl.cpu:.2f}  "
                    f"SDK wall / curl wall = {ours.wall / curl.wall:.2f}  "
                    f"(wall {ours.wall:.3f}s cpu {ours.cpu:.3f}s)"
                )
            if args.big_files:
                seed_run(gql, base_url, MANY_RUN, args.big_files, args.big_size)
                for engine in engines:
                    listing_only = best(
                        f"listing-{engine}",
                        args.big_repeats,
                        lambda root, engine=engine: sdk_once(base_url, key, MANY_RUN, root, "listing", engine),
                        None,
                        tmp,
                    )
                    listed = best(
                        f"prelisted-{engine}",
                        args.big_repeats,
                        lambda root, engine=engine: sdk_once(base_url, key, MANY_RUN, root, "listed", engine),
                        None,
                        tmp,
                    )
                    whole = best(
                        f"whole-{engine}",
                        args.big_repeats,
                        lambda root, engine=engine: sdk_once(base_url, key, MANY_RUN, root, "whole", engine),
                        None,
                        tmp,
                    )
                    lines.append(
                        f"{args.big_files} x {args.big_size:,} B, engine {engine}: whole / (listing + pre-listed) = "
                        f"{whole.wall / (listing_only.wall + listed.wall):.2f}  (whole {whole.wall:.2f}s, listing "
                        f"{listing_only.wall:.2f}s, pre-listed download {listed.wall:.2f}s)"
                    )
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
