"""Download speed side by side, on one embedded server in one run: both installs of ours, the real wandb loop, curl.

    python benchmarks/bench_download.py [--tls] [--rtt-ms 0|30|100] [--connect-rtts N] [--files 1000]
        [--size 100000] [--big-mib 0] [--repeats 3] [--wandb-files N] [--workers N]

Starts `wandb-files server` (BackgroundServer, data in a temp dir). With --rtt-ms > 0 or --tls, a FaultProxy in a
process of its own stands in front of it, and the server runs with --public-url = the proxy's URL, so every URL
it hands out (file `url`s included) goes through the proxy. The proxy holds every response --rtt-ms before its
first byte, and the first response on each connection --connect-rtts RTTs more (what TCP's handshake, and
TLS 1.3's, cost far away: 2 by default with --tls, 1 without; 0 gives the per-response delay alone). With --tls
it terminates TLS with a certificate from a throwaway CA (`trustme`), which every client is told to trust:
our SDK by REQUESTS_CA_BUNDLE (both engines), curl by --cacert, the wandb client by SSL_CERT_FILE (its Go
wandb-core) and REQUESTS_CA_BUNDLE (its Python side).

It seeds run "small" with --files files of --size random bytes (and run "big" with one --big-mib MiB file),
then runs rounds; each round runs every method once, in turn, so a change of the machine's load hits them alike:

  plain  the pure-Python engine (WANDB_FILES_ENGINE=python): an install without pycurl (Windows, Alpine, ...);
  full   the curl engine (WANDB_FILES_ENGINE=curl): what `pip install wandb-files` gives on Linux and macOS;
         each in a child process of its own, twice: listing included (`download_files(api.run(path).files())`,
         the run's lookup and the listing counted, the imports not) and listed beforehand (the download alone); the
         clock and the CPU count (user + sys, every thread) start in the child just before the call;
  curl   `curl --parallel --parallel-max 16` over the listed `url`s (-u api:KEY), the whole process; then
         `md5sum` over its output (the CPU figure's reference is curl's CPU plus md5sum's: ours verifies);
  wandb  the real wandb client: for f in wandb.Api().run(path).files(): f.download(root, replace=True), in this
         process. It is slow far away: --wandb-files N stops it after N files and scales its time by
         files / N (said in the output); it runs in the first round only when it takes over 20 s.

Every method's output is checked against the server's md5s. Figures are the best of the rounds, and each ratio
is also given per round (both sides from the same round). --big-mib > 0 adds one big file, our
File.download against curl -o, with each one's peak RSS. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import json
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
    def __init__(self, base_url: str, api_key: str, verify: str | bool = True) -> None:
        self.url = f"{base_url}/graphql"
        self.session = requests.Session()
        self.session.auth = ("api", api_key)
        self.session.verify = verify

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


def run_child(command: list[str], tmp: Path, ca: Path | None = None) -> tuple[float, float, str]:
    """Run a command; (wall seconds, its peak RSS in MB, its stdout).

    The peak RSS comes from GNU time, which forks the command from its own small process: Linux carries a
    process's high-water RSS across exec, so a child forked straight from this (large) interpreter would
    report this interpreter's size. Without /usr/bin/time it falls back to wait4 and says so.
    """
    rss_file = tmp / "maxrss.txt"
    use_time = os.path.exists("/usr/bin/time")
    wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command] if use_time else command
    started = time.perf_counter()
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(ca)) if ca else None
    child = subprocess.Popen(wrapped, stdout=subprocess.PIPE, env=env)
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


# --- the network in between ------------------------------------------------------------------------------


def tls_files(tmp: Path) -> tuple[Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (the CA's PEM, the server's chain + key PEM)."""
    try:
        import trustme
    except ImportError:
        raise SystemExit("--tls needs trustme: pip install trustme (it is in the dev extra)") from None
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, server_pem = tmp / "ca.pem", tmp / "server.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return ca_pem, server_pem


def start_proxy(
    upstream: str,
    port: int,
    *,
    rtt_ms: float = 0.0,
    connect_ms: float = 0.0,
    tls_cert: Path | None = None,
    bytes_per_second: float | None = None,
) -> subprocess.Popen[str]:
    """A FaultProxy in a process of its own, like a hop on the network: it shares no GIL with a client measured."""
    command = [sys.executable, "-m", "wandb_files.testing.proxy", upstream, "--port", str(port)]
    command += ["--first-byte-delay-ms", str(rtt_ms), "--connect-delay-ms", str(connect_ms)]
    if tls_cert is not None:
        command += ["--tls-cert", str(tls_cert)]
    if bytes_per_second is not None:
        command += ["--bytes-per-second", str(bytes_per_second)]
    proxy = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    wait_for_port(port)
    return proxy


def stop_proxy(proxy: subprocess.Popen[str]) -> dict[str, int]:
    """Stop it; its stats (requests, connections = TCP and TLS handshakes, ...)."""
    proxy.terminate()
    out = proxy.communicate(timeout=30)[0].strip()
    return dict(json.loads(out.splitlines()[-1])) if out else {}


# --- the methods -----------------------------------------------------------------------------------------

OURS = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import pandas  # download_files returns a DataFrame: its import is not the download's cost
    import wandb_files

    base_url, key, path, dest, mode, workers = sys.argv[1:]
    workers = int(workers) if workers != "-" else None
    wandb_files.Api, wandb_files.download_files  # their modules are imported lazily: imports are not the listing

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    if mode == "listed":
        files = list(wandb_files.Api(api_key=key, base_url=base_url).run(path).files(per_page=1000))
        cpu0, wall0 = cpu(), time.perf_counter()
        wandb_files.download_files(files, dest, progress=False, max_workers=workers)
    else:  # "whole": the run's lookup and the listing (read page by page, overlapped with the download) count
        cpu0, wall0 = cpu(), time.perf_counter()
        run = wandb_files.Api(api_key=key, base_url=base_url).run(path)
        wandb_files.download_files(run.files(per_page=1000), dest, progress=False, max_workers=workers)
    print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": cpu() - cpu0}))
    """
)


@dataclass
class Measured:
    wall: float
    cpu: float | None = None
    note: str = ""


def child_usage(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, user+sys CPU seconds of the process, its threads and the children it waited for, stdout)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[0]} failed with exit status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, out


class Methods:
    """Each method of a round: it downloads into `root` and says what it took."""

    def __init__(
        self,
        args: argparse.Namespace,
        base_url: str,
        key: str,
        listing: list[dict[str, Any]],
        tmp: Path,
        ca: Path | None,
    ) -> None:
        self.args, self.base_url, self.key, self.listing, self.tmp, self.ca = args, base_url, key, listing, tmp, ca
        self.path = f"{ENTITY}/{PROJECT}/{SMALL_RUN}"

    def ours(self, root: Path, engine: str, mode: str) -> Measured:
        env = dict(os.environ, WANDB_FILES_ENGINE=engine, WANDB_FILES_DISABLE_PROGRESS="1")
        if self.ca:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca)
        workers = str(self.args.workers) if self.args.workers else "-"
        _, _, out = child_usage(
            [sys.executable, "-c", OURS, self.base_url, self.key, self.path, str(root), mode, workers], env
        )
        figures = json.loads(out.strip().splitlines()[-1])
        return Measured(figures["wall"], figures["cpu"])

    def curl(self, root: Path) -> Measured:
        config = self.tmp / "curl-urls.txt"
        with open(config, "w") as fh:
            for f in self.listing:
                fh.write(f'url = "{f["url"]}"\noutput = "{root / f["name"]}"\n')
        command = ["curl", "--parallel", "--parallel-max", str(CURL_PARALLEL), "--create-dirs", "-sS"]
        command += ["--no-progress-meter", "--fail", "-u", f"api:{self.key}", "-K", str(config)]
        if self.ca:
            command += ["--cacert", str(self.ca)]
        wall, cpu, _ = child_usage(command)
        return Measured(wall, cpu)

    def md5sum(self, root: Path) -> Measured:
        wall, cpu, _ = child_usage(["md5sum", "--", *(str(root / f["name"]) for f in self.listing)])
        return Measured(wall, cpu)

    def wandb_loop(self, root: Path, wandb: Any) -> Measured:
        limit = self.args.wandb_files or len(self.listing)
        started = time.perf_counter()
        done = 0
        for f in wandb.Api().run(self.path).files():
            f.download(root=str(root), replace=True)
            done += 1
            if done >= limit:
                break
        wall = time.perf_counter() - started
        if done < len(self.listing):
            return Measured(wall * len(self.listing) / done, note=f"{done} files in {wall:.2f}s, scaled")
        return Measured(wall)


def measure(
    args: argparse.Namespace, server: BackgroundServer, base_url: str, tmp: Path, ca: Path | None, wandb: Any
) -> tuple[dict[str, list[Measured]], dict[str, Result]]:
    key = server.api_key
    verify_with: str | bool = str(ca) if ca else True
    big_md5 = seed(Graphql(server.base_url, key), server.base_url, base_url, args, tmp)
    listing = Graphql(base_url, key, verify_with).list_files(SMALL_RUN)
    expected = {f["name"]: f["md5"] for f in listing}
    assert len(expected) == args.files, f"listed {len(expected)} files, seeded {args.files}"
    assert all(f["url"].startswith(base_url) for f in listing), "the server hands out URLs that bypass the proxy"
    methods = Methods(args, base_url, key, listing, tmp, ca)
    if wandb is not None:
        os.environ.update(
            WANDB_BASE_URL=base_url,
            WANDB_API_KEY=key,
            WANDB_SILENT="true",
            WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
            WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
            WANDB_DIR=str(tmp / "wandb-dir"),
        )
        if ca:  # wandb-core (Go) reads SSL_CERT_FILE; the Python side is requests
            os.environ.update(SSL_CERT_FILE=str(ca), REQUESTS_CA_BUNDLE=str(ca))
    ours_root = SMALL_RUN  # download_files writes <destination>/<run id>/<name>
    plan: list[tuple[str, Callable[[Path], Measured], str]] = [
        ("plain", lambda root: methods.ours(root, "python", "whole"), ours_root),
        ("full", lambda root: methods.ours(root, "curl", "whole"), ours_root),
        ("curl", methods.curl, ""),
        ("plain listed", lambda root: methods.ours(root, "python", "listed"), ours_root),
        ("full listed", lambda root: methods.ours(root, "curl", "listed"), ours_root),
    ]
    if wandb is not None:
        plan.append(("wandb", lambda root: methods.wandb_loop(root, wandb), ""))
    rounds: dict[str, list[Measured]] = {name: [] for name, _, _ in plan}
    rounds["md5sum"] = []
    log(f"timing {args.files} files x {args.size:,} B via {base_url}, {args.repeats} rounds")
    outputs: list[Path] = []
    for attempt in range(args.repeats):
        for name, once, subdir in plan:
            if name == "wandb" and rounds[name] and rounds[name][0].wall > SLOW_SECONDS:
                continue
            root = tmp / f"out-{name.replace(' ', '-')}-{attempt}"
            measured = once(root)
            rounds[name].append(measured)
            extra = f" cpu {measured.cpu:.3f}s" if measured.cpu is not None else ""
            log(f"  round {attempt + 1} {name}: wall {measured.wall:.3f}s{extra} {measured.note}")
            if name == "curl":
                rounds["md5sum"].append(methods.md5sum(root))
            if attempt == 0 and name != "wandb":
                verify(name, root / subdir, expected)
            elif name == "wandb" and not args.wandb_files:
                verify(name, root, expected)
            outputs.append(root)
    # Outputs are removed only now: ext4 avoids reusing inodes deleted moments ago, and that search would cost the
    # next method's file creations more than any client's own work.
    for root in outputs:
        shutil.rmtree(root, ignore_errors=True)
    big = measure_big(args, base_url, key, big_md5, tmp, ca) if args.big_mib else {}
    return rounds, big


def measure_big(
    args: argparse.Namespace, base_url: str, key: str, big_md5: str, tmp: Path, ca: Path | None
) -> dict[str, Result]:
    """d. one big file, each download in a child process so its peak RSS is its own."""
    results: dict[str, Result] = {}
    _, baseline, _ = run_child(
        [sys.executable, "-c", OUR_BIG_DOWNLOAD, base_url, key, f"{ENTITY}/{PROJECT}/{BIG_RUN}", BIG_NAME, "-"], tmp, ca
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
                *(["--cacert", str(ca)] if ca else []),
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
        best: Result | None = None
        for attempt in range(repeats):
            root = tmp / f"big-{attempt}"
            wall, rss, out = run_child(command(root), tmp, ca)
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


def report(args: argparse.Namespace, rounds: dict[str, list[Measured]], big: dict[str, Result]) -> None:
    where = f"{'HTTPS' if args.tls else 'HTTP'}, rtt {args.rtt_ms:g} ms"
    if args.rtt_ms:
        where += f" (+{args.connect_rtts:g} RTT on a connection's first answer)"
    print()
    print(f"{where}; {args.files} files x {args.size:,} B; workers {args.workers or 'default'}; {args.repeats} rounds")
    curl = rounds["curl"]
    print(f"{'method':14} {'best wall s':>11} {'CPU s':>7} {'x curl (per round)':>32}")
    for name, runs in rounds.items():
        if not runs or name == "md5sum":
            continue
        best = min(runs, key=lambda m: m.wall)
        cpu = f"{min(m.cpu for m in runs if m.cpu is not None):7.3f}" if best.cpu is not None else "      -"
        per_round = " ".join(f"{m.wall / c.wall:.2f}" for m, c in zip(runs, curl, strict=False))
        print(f"{name:14} {best.wall:11.3f} {cpu} {per_round:>32} {best.note}")
    md5 = min(m.cpu or 0.0 for m in rounds["md5sum"])
    print(f"{'md5sum':14} {'':11} {md5:7.3f}   (over curl's output, after it)")
    print("(x curl: wall time relative to curl's, in the same round; below 1 is faster)")

    print("\ntargets (each ratio: best of the per-round ratios, then all of them)")

    def target(text: str, ratios: list[float], ok: Callable[[float], bool], unit: str = "x") -> None:
        if not ratios:
            print(f"  [n/a ] {text}")
            return
        best = min(ratios) if ok(0.0) else max(ratios)
        verdict = "PASS" if ok(best) else "FAIL"
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  [{verdict}] {text:58} {best:.2f} {unit}  (rounds: {shown})")

    def ratios(a: str, b: str, field: str = "wall") -> list[float]:
        return [
            getattr(x, field) / getattr(y, field) for x, y in zip(rounds.get(a, []), rounds.get(b, []), strict=False)
        ]

    wandb_runs = rounds.get("wandb") or []
    wandb_best = min((m.wall for m in wandb_runs), default=None)
    for install in ("plain", "full"):
        if args.rtt_ms > 0 or args.tls:
            target(f"{install}: listing included <= 1.0 x curl's time", ratios(install, "curl"), lambda r: r <= 1.0)
        else:
            target(f"{install}: listing included <= 1.5 x curl's time", ratios(install, "curl"), lambda r: r <= 1.5)
            target(f"{install}: listed, wall <= 1.2 x curl's", ratios(f"{install} listed", "curl"), lambda r: r <= 1.2)
            cpu_ratios = [
                (m.cpu or 0.0) / ((c.cpu or 0.0) + (s.cpu or 0.0))
                for m, c, s in zip(rounds[f"{install} listed"], curl, rounds["md5sum"], strict=False)
            ]
            target(f"{install}: listed, CPU <= 1.0 x (curl's + md5sum's)", cpu_ratios, lambda r: r <= 1.0)
        if wandb_best is not None:
            faster = [wandb_best / m.wall for m in rounds[install]]
            at_least = 8.0 if args.rtt_ms > 0 else 1.0
            text = f"{install}: >= {at_least:g} x faster than the wandb loop (its best)"
            target(text, faster, lambda r, at_least=at_least: r >= at_least, "x faster")
    if big:
        big_ours, big_curl = big.get("big-ours"), big.get("big-curl")
        if big_ours and big_curl:
            print(
                f"  big file: ours {big_ours.mb_per_s:.0f} MB/s ({big_ours.rss_mb:.0f} MB peak RSS, "
                f"{big_ours.baseline_rss_mb:.0f} MB without the download), curl {big_curl.mb_per_s:.0f} MB/s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", action="store_true", help="HTTPS: the proxy terminates TLS (a trustme CA)")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="first-byte delay of every response (proxy)")
    parser.add_argument(
        "--connect-rtts",
        type=float,
        default=None,
        help="RTTs more on each connection's first answer (2 with TLS, else 1)",
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100_000, help="bytes per small file")
    parser.add_argument("--big-mib", type=int, default=0, help="size of the big file; 0 (the default) skips it")
    parser.add_argument("--workers", type=int, default=None, help="max_workers of download_files (default: its own)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds")
    parser.add_argument("--wandb-files", type=int, default=None, help="the wandb loop stops after this many files")
    parser.add_argument("--tmp", type=Path, default=None, help="where the data and downloads go (default: $TMPDIR)")
    args = parser.parse_args()
    if args.connect_rtts is None:
        args.connect_rtts = 2.0 if args.tls else 1.0
    if not curl_supports_parallel():
        raise SystemExit("curl with --parallel (>= 7.66) is needed: apt-get install -y curl")
    try:
        import wandb
    except ImportError:
        wandb = None
        log("wandb is not importable (pip install 'wandb-files[compat]'): skipping the wandb loop")

    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        ca, server_pem = tls_files(tmp) if args.tls else (None, None)
        if ca:  # this process's requests (the listing, the wandb client's Python side) and every child's
            os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
        proxied = args.rtt_ms > 0 or args.tls
        proxy_port = free_port() if proxied else None
        public = f"{'https' if args.tls else 'http'}://127.0.0.1:{proxy_port}" if proxied else None
        extra = ["--public-url", public] if public else []
        with BackgroundServer(tmp / "data", extra_args=extra) as server:
            proxy = None
            if proxy_port:
                proxy = start_proxy(
                    server.base_url,
                    proxy_port,
                    rtt_ms=args.rtt_ms,
                    connect_ms=args.rtt_ms * args.connect_rtts,
                    tls_cert=server_pem,
                )
            try:
                rounds, big = measure(args, server, public or server.base_url, tmp, ca, wandb)
            finally:
                if proxy:
                    log(f"proxy stats: {stop_proxy(proxy)}")
    report(args, rounds, big)


if __name__ == "__main__":
    main()
