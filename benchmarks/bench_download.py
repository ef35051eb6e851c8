"""Download speed side by side, on one embedded server in one run: our bulk download, the real wandb loop, curl.

    python benchmarks/bench_download.py [--rtt-ms 0|30] [--files 1000] [--size 100000] [--big-mib 1024] [--workers N]

Starts `wandb-files server` (BackgroundServer, data in a temp dir). With --rtt-ms > 0 a FaultProxy holds every
response that long before its first byte (fault_rate 0), and the server runs with --public-url = the proxy's URL,
so every URL it hands out (file `url`s included) goes through the proxy. It seeds run "small" with --files files
of --size random bytes and run "big" with one --big-mib MiB file (separate runs, so the many-files comparisons
are not dominated by the big file), then times:

  a. wandb_files.download_files(list(run.files(per_page=1000)), dest, max_workers=--workers, progress=False)
     (listing included, as in the wandb loop);
  b. the real wandb client: for f in wandb.Api().run(path).files(): f.download(root, replace=True);
  c. curl --parallel --parallel-max 16 over the same `url`s (listed beforehand, not timed), -u api:KEY;
  d. the big file: run.file(big).download(root, replace=True) in a subprocess, against curl -o; with each
     one's peak RSS (os.wait4 of the child, so this script's own memory is not counted).

Every method's output is checked against the server's md5s (all small files; the big file once per method), so
no method is fast by being wrong. Times are the best of --repeats (a method slower than 20 s runs once).
Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from wandb_files.testing import BackgroundServer, free_port

ENTITY = "admin"
PROJECT = "bench-download"
SMALL_RUN = "small"
BIG_RUN = "big"
BIG_NAME = "big.bin"
CURL_PARALLEL = 16
SLOW_SECONDS = 20.0  # a method slower than this is not repeated

UPSERT_RUN = """
mutation UpsertRun($project: String, $run: String) {
  upsertBucket(input: {modelName: $project, name: $run}) { bucket { id } }
}
"""
CREATE_FILES = """
mutation CreateFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    files { name uploadUrl }
  }
}
"""
LIST_FILES = """
query ListFiles($entity: String!, $project: String!, $run: String!, $after: String) {
  project(name: $project, entityName: $entity) {
    run(name: $run) {
      files(after: $after, first: 1000) {
        edges { node { name url sizeBytes md5 } }
        pageInfo { endCursor hasNextPage }
      }
    }
  }
}
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Graphql:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.url = f"{base_url}/graphql"
        self.session = requests.Session()
        self.session.auth = ("api", api_key)

    def __call__(self, query: str, **variables: Any) -> Any:
        answer = self.session.post(self.url, json={"query": query, "variables": variables}, timeout=120)
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def list_files(self, run: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = None
        while True:
            page = self(LIST_FILES, entity=ENTITY, project=PROJECT, run=run, after=after)["project"]["run"]["files"]
            found += [edge["node"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]


# --- seeding -------------------------------------------------------------------------------------------


def seed(gql: Graphql, server_url: str, public_url: str, args: argparse.Namespace, tmp: Path) -> str:
    """Upload the small files and the big one straight to the server (not through the proxy); return the
    big file's md5 (base64, as the server reports it)."""
    started = time.perf_counter()
    for run in (SMALL_RUN, BIG_RUN):
        gql(UPSERT_RUN, project=PROJECT, run=run)
    names = [f"data/f_{i:05d}.bin" for i in range(args.files)]
    upload_urls: list[str] = []
    for start in range(0, len(names), 1000):
        created = gql(CREATE_FILES, entity=ENTITY, project=PROJECT, run=SMALL_RUN, files=names[start : start + 1000])
        upload_urls += [f["uploadUrl"] for f in created["createRunFiles"]["files"]]
    local = threading.local()

    def put(url: str, data: Any) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        answer = local.session.put(url.replace(public_url, server_url, 1), data=data, timeout=600)
        answer.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda url: put(url, os.urandom(args.size)), upload_urls))
    log(f"seeded {args.files} x {args.size:,} B in {time.perf_counter() - started:.1f}s")
    if not args.big_mib:
        return ""

    big = tmp / "big-source.bin"
    md5 = hashlib.md5()
    with open(big, "wb") as fh:
        remaining = args.big_mib << 20
        while remaining:
            chunk = os.urandom(min(remaining, 16 << 20))
            md5.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    created = gql(CREATE_FILES, entity=ENTITY, project=PROJECT, run=BIG_RUN, files=[BIG_NAME])
    with open(big, "rb") as fh:
        put(created["createRunFiles"]["files"][0]["uploadUrl"], fh)
    big.unlink()
    log(f"seeded {BIG_NAME} ({args.big_mib} MiB) in {time.perf_counter() - started:.1f}s total")
    return base64.b64encode(md5.digest()).decode()


# --- verification --------------------------------------------------------------------------------------


def md5_b64(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def verify(method: str, root: Path, expected: dict[str, str]) -> None:
    """Every expected file exists under root with the server's md5."""
    bad = [name for name, md5 in expected.items() if not (root / name).is_file() or md5_b64(root / name) != md5]
    if bad:
        raise SystemExit(f"{method}: {len(bad)} of {len(expected)} files missing or wrong, e.g. {bad[:3]}")


# --- timing --------------------------------------------------------------------------------------------


@dataclass
class Result:
    method: str
    seconds: float
    nbytes: int
    runs: int
    rss_mb: float | None = None
    baseline_rss_mb: float | None = None  # the same child without the download

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def best_of(
    method: str, nbytes: int, repeats: int, once: Callable[[Path], None], check: Callable[[Path], None], tmp: Path
) -> Result:
    """Run `once(fresh_dir)` up to `repeats` times (once if it takes over SLOW_SECONDS); check the last output."""
    times: list[float] = []
    for attempt in range(repeats):
        target = tmp / f"out-{method.split()[0]}-{attempt}"
        started = time.perf_counter()
        once(target)
        times.append(time.perf_counter() - started)
        log(f"  {method}: {times[-1]:.2f}s")
        last = attempt == repeats - 1 or times[-1] > SLOW_SECONDS
        if last:
            check(target)
        shutil.rmtree(target, ignore_errors=True)
        if last:
            break
    return Result(method, min(times), nbytes, len(times))


def run_child(command: list[str], tmp: Path) -> tuple[float, float, str]:
    """Run a command; (wall seconds, its peak RSS in MB, its stdout).

    The peak RSS comes from GNU time, which forks the command from its own small process: Linux carries a
    process's high-water RSS across exec, so a child forked straight from this (large) interpreter would
    report this interpreter's size. Without /usr/bin/time it falls back to wait4 and says so.
    """
    rss_file = tmp / "maxrss.txt"
    use_time = os.path.exists("/usr/bin/time")
    wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command] if use_time else command
    started = time.perf_counter()
    child = subprocess.Popen(wrapped, stdout=subprocess.PIPE)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed with exit status {os.waitstatus_to_exitcode(status)}")
    if use_time:
        rss_kib = int(rss_file.read_text().split()[-1])
    else:
        log("  /usr/bin/time not found (apt-get install -y time): peak RSS includes this script's own size")
        rss_kib = usage.ru_maxrss
    return seconds, rss_kib / 1024, out


OUR_BIG_DOWNLOAD = textwrap.dedent(
    """
    import sys, time
    import wandb_files
    base_url, key, path, name, root = sys.argv[1:]
    api = wandb_files.Api(api_key=key, base_url=base_url)
    file = api.run(path).file(name)
    if root == "-":  # only the baseline: imports and lookup
        sys.exit(0)
    started = time.perf_counter()
    file.download(root=root, replace=True).close()
    print(time.perf_counter() - started)
    """
)


def curl_supports_parallel() -> bool:
    if shutil.which("curl") is None:
        return False
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    number = tuple(int(part) for part in version.split()[1].split(".")[:2])
    return number >= (7, 66)  # --parallel arrived in 7.66.0


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="first-byte delay of every response (proxy)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000, help="bytes per small file")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file; 0 skips part d")
    parser.add_argument("--workers", type=int, default=None, help="max_workers of download_files (default: its own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=None, help="where the data and downloads go (default: $TMPDIR)")
    args = parser.parse_args()

    have_curl = curl_supports_parallel()
    if not have_curl:
        log("curl with --parallel (>= 7.66) not found: install it (apt-get install -y curl); skipping curl")
    try:
        import wandb
    except ImportError:
        wandb = None
        log("wandb is not importable (pip install 'wandb-files[compat]'): skipping the wandb loop")
    download_files = getattr(__import__("wandb_files"), "download_files", None)
    if download_files is None:
        log("wandb_files.download_files does not exist yet: skipping our bulk download (a)")

    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        proxy_port = free_port() if args.rtt_ms > 0 else None
        extra = ["--public-url", f"http://127.0.0.1:{proxy_port}"] if proxy_port else []
        with BackgroundServer(tmp / "data", extra_args=extra) as server:
            proxy = None
            if proxy_port:
                # A process of its own, like a hop on the network: in this process it would share a GIL with
                # our download (a) but not with curl or wandb-core, which are processes of their own.
                proxy = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "wandb_files.testing.proxy",
                        server.base_url,
                        "--port",
                        str(proxy_port),
                        "--first-byte-delay-ms",
                        str(args.rtt_ms),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                wait_for_port(proxy_port)
            try:
                base_url = f"http://127.0.0.1:{proxy_port}" if proxy else server.base_url
                results = measure(args, server, base_url, tmp, have_curl, wandb, download_files)
            finally:
                if proxy:
                    proxy.terminate()
                    log(f"proxy stats: {proxy.communicate(timeout=30)[0].strip()}")
    report(args, results)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def measure(
    args: argparse.Namespace,
    server: BackgroundServer,
    base_url: str,
    tmp: Path,
    have_curl: bool,
    wandb: Any,
    download_files: Any,
) -> dict[str, Result]:
    key = server.api_key
    big_md5 = seed(Graphql(server.base_url, key), server.base_url, base_url, args, tmp)
    listing = Graphql(base_url, key).list_files(SMALL_RUN)
    expected = {f["name"]: f["md5"] for f in listing}
    assert len(expected) == args.files, f"listed {len(expected)} files, seeded {args.files}"
    assert all(f["url"].startswith(base_url) for f in listing), "the server hands out URLs that bypass the proxy"
    small_bytes = sum(int(f["sizeBytes"]) for f in listing)
    small_path = f"{ENTITY}/{PROJECT}/{SMALL_RUN}"
    results: dict[str, Result] = {}
    log(f"timing {args.files} files x {args.size:,} B at rtt {args.rtt_ms:g} ms via {base_url}")

    if download_files is not None:
        import wandb_files

        api = wandb_files.Api(api_key=key, base_url=base_url)

        def ours(root: Path) -> None:
            files = list(api.run(small_path).files(per_page=1000))
            download_files(files, root, max_workers=args.workers, progress=False)

        listed = list(api.run(small_path).files(per_page=1000))

        def ours_listed(root: Path) -> None:  # like curl, given the files: the download alone
            download_files(listed, root, max_workers=args.workers, progress=False)

        # download_files writes <destination>/<run id>/<name>
        results["ours"] = best_of(
            "wandb_files.download_files + listing",
            small_bytes,
            args.repeats,
            ours,
            lambda root: verify("ours", root / SMALL_RUN, expected),
            tmp,
        )
        results["ours-listed"] = best_of(
            "wandb_files.download_files alone",
            small_bytes,
            args.repeats,
            ours_listed,
            lambda root: verify("ours", root / SMALL_RUN, expected),
            tmp,
        )

    if wandb is not None:
        os.environ.update(
            WANDB_BASE_URL=base_url,
            WANDB_API_KEY=key,
            WANDB_SILENT="true",
            WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
            WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
            WANDB_DIR=str(tmp / "wandb-dir"),
        )

        def wandb_loop(root: Path) -> None:
            for f in wandb.Api().run(small_path).files():
                f.download(root=str(root), replace=True)

        results["wandb"] = best_of(
            "wandb 0.31 loop", small_bytes, args.repeats, wandb_loop, lambda root: verify("wandb", root, expected), tmp
        )

    if have_curl:

        def curl_bulk(root: Path) -> None:
            config = tmp / "curl-urls.txt"
            with open(config, "w") as fh:
                for f in listing:
                    fh.write(f'url = "{f["url"]}"\noutput = "{root / f["name"]}"\n')
            subprocess.run(
                [
                    "curl",
                    "--parallel",
                    "--parallel-max",
                    str(CURL_PARALLEL),
                    "--create-dirs",
                    "-sS",
                    "--no-progress-meter",
                    "--fail",
                    "-u",
                    f"api:{key}",
                    "-K",
                    str(config),
                ],
                check=True,
            )

        results["curl"] = best_of(
            f"curl --parallel-max {CURL_PARALLEL}",
            small_bytes,
            args.repeats,
            curl_bulk,
            lambda root: verify("curl", root, expected),
            tmp,
        )

    if args.big_mib:
        results.update(measure_big(args, base_url, key, big_md5, have_curl, tmp))
    return results


def measure_big(
    args: argparse.Namespace, base_url: str, key: str, big_md5: str, have_curl: bool, tmp: Path
) -> dict[str, Result]:
    """d. one big file, each download in a child process so its peak RSS is its own."""
    results: dict[str, Result] = {}
    _, baseline, _ = run_child(
        [sys.executable, "-c", OUR_BIG_DOWNLOAD, base_url, key, f"{ENTITY}/{PROJECT}/{BIG_RUN}", BIG_NAME, "-"], tmp
    )
    log(f"  our child without the download (imports + lookup): peak RSS {baseline:.0f} MB")
    big_bytes = args.big_mib << 20
    big_url = f"{base_url}/files/{ENTITY}/{PROJECT}/{BIG_RUN}/{BIG_NAME}"
    repeats = args.repeats if args.big_mib <= 256 else 1
    for label, command in (
        (
            "big: wandb_files File.download",
            lambda root: [
                sys.executable,
                "-c",
                OUR_BIG_DOWNLOAD,
                base_url,
                key,
                f"{ENTITY}/{PROJECT}/{BIG_RUN}",
                BIG_NAME,
                str(root),
            ],
        ),
        (
            "big: curl -o",
            lambda root: [
                "curl",
                "-sS",
                "--fail",
                "--create-dirs",
                "-u",
                f"api:{key}",
                "-o",
                str(root / BIG_NAME),
                big_url,
            ],
        ),
    ):
        if label.startswith("big: curl") and not have_curl:
            continue
        best: Result | None = None
        for attempt in range(repeats):
            root = tmp / f"big-{attempt}"
            wall, rss, out = run_child(command(root), tmp)
            # our child reports the download alone (its interpreter start and listing excluded)
            seconds = float(out.strip().splitlines()[-1]) if "wandb_files" in label else wall
            log(f"  {label}: {seconds:.2f}s, peak RSS {rss:.0f} MB")
            if best is None or seconds < best.seconds:
                best = Result(label, seconds, big_bytes, attempt + 1, rss)
            if attempt == repeats - 1:
                got = md5_b64(root / BIG_NAME)
                if got != big_md5:
                    raise SystemExit(f"{label}: md5 {got} != {big_md5}")
            shutil.rmtree(root, ignore_errors=True)
        assert best is not None
        best.runs = repeats
        if "wandb_files" in label:
            best.baseline_rss_mb = baseline
        results["big-ours" if "wandb_files" in label else "big-curl"] = best
    return results


def report(args: argparse.Namespace, results: dict[str, Result]) -> None:
    ours, wandb_r, curl = results.get("ours"), results.get("wandb"), results.get("curl")
    print()
    print(
        f"rtt {args.rtt_ms:g} ms, {args.files} files x {args.size:,} B, workers {args.workers or 'default'}; "
        f"big file {args.big_mib} MiB"
    )
    print(f"{'method':34} {'runs':>4} {'wall s':>8} {'MB/s':>8} {'x curl':>7} {'x wandb':>8} {'peak RSS':>9}")
    for r in results.values():
        reference_curl = results.get("big-curl") if r.method.startswith("big") else curl
        vs_curl = f"{r.seconds / reference_curl.seconds:.2f}" if reference_curl else "-"
        vs_wandb = f"{r.seconds / wandb_r.seconds:.2f}" if wandb_r and not r.method.startswith("big") else "-"
        rss = f"{r.rss_mb:.0f} MB" if r.rss_mb is not None else "-"
        print(f"{r.method:34} {r.runs:>4} {r.seconds:>8.2f} {r.mb_per_s:>8.1f} {vs_curl:>7} {vs_wandb:>8} {rss:>9}")
    print("(x curl / x wandb: wall time relative to theirs; below 1 is faster)")

    print("\ntargets")

    def target(text: str, ok: bool | None, measured: str) -> None:
        verdict = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        print(f"  [{verdict}] {text:48} measured: {measured}")

    def ratio(a: Result | None, b: Result | None) -> float | None:
        return a.seconds / b.seconds if a and b else None

    # The wandb loop lists the run too: compare it with ours listing included. curl is handed the URLs:
    # compare it with our download alone.
    to_curl, to_wandb = ratio(results.get("ours-listed") or ours, curl), ratio(ours, wandb_r)
    if args.rtt_ms <= 0:
        target(
            "bulk time <= 1.5 x curl",
            None if to_curl is None else to_curl <= 1.5,
            "-" if to_curl is None else f"{to_curl:.2f} x",
        )
        target(
            "bulk faster than the wandb loop",
            None if to_wandb is None else to_wandb < 1,
            "-" if to_wandb is None else f"{to_wandb:.3f} x its time ({1 / to_wandb:.1f} x faster)",
        )
    else:
        target(
            "bulk >= 8 x faster than the wandb loop",
            None if to_wandb is None else 1 / to_wandb >= 8,
            "-" if to_wandb is None else f"{1 / to_wandb:.1f} x faster",
        )
        target(
            "bulk time <= 1.3 x curl",
            None if to_curl is None else to_curl <= 1.3,
            "-" if to_curl is None else f"{to_curl:.2f} x",
        )
    big_ours, big_curl = results.get("big-ours"), results.get("big-curl")
    if big_ours and big_curl:
        share = big_ours.mb_per_s / big_curl.mb_per_s
        note = " (the target is set for rtt 0)" if args.rtt_ms > 0 else ""
        target("big file >= 90 % of curl's throughput", share >= 0.9, f"{share:.0%}{note}")
    if big_ours:
        target(
            "big file peak RSS < 100 MB",
            (big_ours.rss_mb or 0) < 100,
            f"{big_ours.rss_mb:.0f} MB (the same child without the download: {big_ours.baseline_rss_mb:.0f} MB)",
        )


if __name__ == "__main__":
    main()
