"""One big file behind a per-connection cap: the SDK's parallel Range parts against single-stream curl, in one run.

    python benchmarks/bench_ranges.py [--tls] [--mib 128] [--cap-mib 25] [--repeats 3] [--sweep]

Starts `wandb-files server` (BackgroundServer, data in a temp dir) with --public-url pointing at a FaultProxy
that runs in a process of its own and caps each response body at --cap-mib MiB/s (as S3 and most CDNs cap a
connection); every URL the server hands out goes through it. With --tls the proxy speaks HTTPS (a throwaway CA
from `trustme`, trusted by curl through --cacert and by the SDK through REQUESTS_CA_BUNDLE). Seeds one --mib MiB file of random bytes
(uploaded straight to the server), then times, best of --repeats:

  a. curl -o over the file's `url` through the proxy: one connection;
  b. run.file(name).download(root) through the proxy, in a child process under GNU time (its peak RSS), and
     the same child doing everything but the download (its baseline RSS): the delta is what the download held;
     then the same in one stream (THRESHOLD raised out of reach), once;
  c. parts against one stream straight from the server, without the proxy (no cap): what parts cost where a
     single connection is not limited.

Both outputs are checked against the server's md5. It prints the throughput ratio b / a and the RSS delta.

--sweep adds the measurements behind the defaults of `wandb_files.transfer.ranges`: for files of several sizes,
with the cap and without the proxy at all, the SDK with parts and with one stream (THRESHOLD raised out of
reach), and parts of other sizes and counts. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import requests

from wandb_files.testing import BackgroundServer, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_download import start_proxy, stop_proxy, tls_files

MiB = 1024 * 1024
PROJECT = "bench-ranges"
RUN = "big"

UPSERT_RUN = """
mutation UpsertRun($project: String, $run: String) { upsertBucket(input: {modelName: $project, name: $run}) {
  bucket { id } } }
"""
CREATE_FILES = """
mutation CreateFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    files { name uploadUrl } } }
"""
FILE_URL = """
query FileUrl($entity: String!, $project: String!, $run: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $run) { files(names: [$name]) {
    edges { node { url md5 } } } } } }
"""

CHILD = textwrap.dedent(
    """
    import sys, time
    import wandb_files
    from wandb_files.transfer import ranges
    from pathlib import Path
    from wandb_files import transfer
    base_url, key, path, name, root, threshold, part_size, at_once, direct = sys.argv[1:]
    ranges.THRESHOLD, ranges.PART_SIZE, ranges.PARTS_AT_ONCE = int(threshold), int(part_size), int(at_once)
    file = wandb_files.Api(api_key=key, base_url=base_url).run(path).file(name)
    if root != "-":  # "-": the baseline, imports and lookup only
        started = time.perf_counter()
        if direct == "-":
            file.download(root=root, replace=True).close()
        else:  # the same engine, straight to the server instead of the proxy its URLs name
            client = wandb_files.Api(api_key=key, base_url=direct).client  # the key goes to that origin only
            url = direct + "/files/" + file.url.split("/files/", 1)[1]
            transfer.download(client, url, Path(root, name), name=name, size=file.size, md5=file.md5)
        print(time.perf_counter() - started)
    """
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def gql(base_url: str, key: str, query: str, **variables: Any) -> Any:
    answer = requests.post(
        f"{base_url}/graphql", json={"query": query, "variables": variables}, auth=("api", key), timeout=120
    )
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def seed(server: BackgroundServer, name: str, mib: int, public_url: str, tmp: Path) -> str:
    """Upload `mib` MiB of random bytes as `name`, straight to the server; return its md5 (base64)."""
    source = tmp / "source.bin"
    md5 = hashlib.md5()
    with open(source, "wb") as fh:
        for _ in range(mib):
            chunk = os.urandom(MiB)
            md5.update(chunk)
            fh.write(chunk)
    gql(server.base_url, server.api_key, UPSERT_RUN, project=PROJECT, run=RUN)
    created = gql(server.base_url, server.api_key, CREATE_FILES, entity="admin", project=PROJECT, run=RUN, files=[name])
    url = created["createRunFiles"]["files"][0]["uploadUrl"].replace(public_url, server.base_url, 1)
    with open(source, "rb") as fh:
        requests.put(url, data=fh, timeout=600).raise_for_status()
    source.unlink()
    return base64.b64encode(md5.digest()).decode()


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def peak_rss_mib(command: list[str], tmp: Path) -> tuple[float, str]:
    """(peak RSS in MiB, stdout) of `command`, from GNU time: Linux carries a process's high-water RSS across
    exec, so a child forked straight from this interpreter would report this interpreter's size."""
    rss_file = tmp / "maxrss.txt"
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command], check=True, capture_output=True, text=True
    ).stdout
    return int(rss_file.read_text().split()[-1]) / 1024, out


class Bench:
    def __init__(self, server: BackgroundServer, proxy_url: str, tmp: Path, repeats: int, ca: Path | None) -> None:
        self.server, self.proxy_url, self.tmp, self.repeats, self.ca = server, proxy_url, tmp, repeats, ca

    def curl(self, name: str, md5: str) -> float:
        url = gql(self.proxy_url, self.server.api_key, FILE_URL, entity="admin", project=PROJECT, run=RUN, name=name)
        url = url["project"]["run"]["files"]["edges"][0]["node"]["url"]
        times = []
        for _ in range(self.repeats):
            out = self.tmp / "curl.bin"
            started = time.perf_counter()
            trust = ["--cacert", str(self.ca)] if self.ca else []
            subprocess.run(
                ["curl", *trust, "-sS", "--fail", "-u", f"api:{self.server.api_key}", "-o", str(out), url], check=True
            )
            times.append(time.perf_counter() - started)
            if md5_of(out) != md5:
                raise SystemExit("curl: wrong bytes")
            out.unlink()
        return min(times)

    def sdk(
        self,
        name: str,
        md5: str,
        base_url: str,
        threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        at_once: int = 8,
        repeats: int | None = None,
        direct: bool = False,
    ) -> tuple[float, float]:
        """(best seconds of File.download, the largest peak-RSS delta over the baseline, in MiB)."""
        args = [base_url, self.server.api_key, f"admin/{PROJECT}/{RUN}", name]
        tuning = [str(threshold), str(part_size), str(at_once), self.server.base_url if direct else "-"]
        baseline, _ = peak_rss_mib([sys.executable, "-c", CHILD, *args, "-", *tuning], self.tmp)
        times, deltas = [], []
        for _ in range(repeats or self.repeats):
            root = self.tmp / "sdk"
            peak, out = peak_rss_mib([sys.executable, "-c", CHILD, *args, str(root), *tuning], self.tmp)
            times.append(float(out.strip()))
            deltas.append(peak - baseline)
            if md5_of(root / name) != md5:
                raise SystemExit("sdk: wrong bytes")
            shutil.rmtree(root)
        return min(times), max(deltas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", action="store_true", help="HTTPS: the proxy terminates TLS")
    parser.add_argument("--mib", type=int, default=128, help="size of the file")
    parser.add_argument("--cap-mib", type=float, default=25.0, help="each connection's cap, MiB/s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also measure other sizes, part sizes and counts")
    parser.add_argument("--tmp", type=Path, default=None, help="where the data and downloads go (default: $TMPDIR)")
    args = parser.parse_args()
    if shutil.which("curl") is None or not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs curl and GNU time (apt-get install -y curl time)")

    with tempfile.TemporaryDirectory(prefix="bench-ranges-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        ca, server_pem = tls_files(tmp) if args.tls else (None, None)
        if ca:  # this process's requests and every child's (the SDK); curl gets --cacert
            os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
        port = free_port()
        proxy_url = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}"
        with BackgroundServer(tmp / "data", extra_args=["--public-url", proxy_url]) as server:
            # A process of its own, like a hop on the network: it shares no GIL with the client measured.
            proxy = start_proxy(server.base_url, port, tls_cert=server_pem, bytes_per_second=args.cap_mib * MiB)
            try:
                bench = Bench(server, proxy_url, tmp, args.repeats, ca)
                name = f"big-{args.mib}.bin"
                md5 = seed(server, name, args.mib, proxy_url, tmp)
                log(f"seeded {name}; each connection through the proxy is capped at {args.cap_mib:g} MiB/s")
                curl = bench.curl(name, md5)
                log(f"curl, one stream: {curl:.2f}s ({args.mib / curl:.1f} MiB/s)")
                sdk, delta = bench.sdk(name, md5, proxy_url)
                log(f"File.download in parts: {sdk:.2f}s ({args.mib / sdk:.1f} MiB/s), peak RSS +{delta:.1f} MiB")
                one, one_delta = bench.sdk(name, md5, proxy_url, threshold=1 << 50, repeats=1)
                log(
                    f"File.download, one stream: {one:.2f}s ({args.mib / one:.1f} MiB/s), peak RSS +{one_delta:.1f} MiB"
                )
                free_one, _ = bench.sdk(name, md5, proxy_url, threshold=1 << 50, direct=True)
                free_parts, _ = bench.sdk(name, md5, proxy_url, direct=True)
                log(f"no proxy, no cap: one stream {free_one:.2f}s, parts {free_parts:.2f}s")
                print()
                print(
                    f"{args.mib} MiB, {'HTTPS' if args.tls else 'HTTP'}, each connection capped at {args.cap_mib:g} MiB/s:"
                )
                print(f"  curl, one stream       {args.mib / curl:7.1f} MiB/s")
                print(f"  File.download, parts   {args.mib / sdk:7.1f} MiB/s")
                print(f"  ratio                  {curl / sdk:7.2f} x curl's throughput (goal >= 3.5)")
                print(
                    f"  File.download's peak RSS over its baseline: {delta:.1f} MiB ({one_delta:.1f} MiB in one stream)"
                )
                print(f"straight from the server, no cap: parts take {free_parts / free_one:.2f} x one stream's time")
                if args.sweep:
                    sweep(bench, server, proxy_url, args, tmp)
            finally:
                log(f"proxy stats: {stop_proxy(proxy)}")


def sweep(bench: Bench, server: BackgroundServer, proxy_url: str, args: argparse.Namespace, tmp: Path) -> None:
    never = 1 << 50
    print("\nsize MiB | via        | one stream s | parts s | ratio | RSS delta MiB: one stream, parts")
    for mib in (8, 16, 32, 64, 512):
        name = f"sweep-{mib}.bin"
        md5 = seed(server, name, mib, proxy_url, tmp)
        for via in ("cap", "no proxy"):
            if via == "cap" and mib > 128:
                continue  # 20 s a stream, no news
            direct = via != "cap"
            single, single_rss = bench.sdk(name, md5, proxy_url, threshold=never, repeats=2, direct=direct)
            parts, parts_rss = bench.sdk(name, md5, proxy_url, threshold=1, repeats=2, direct=direct)
            print(
                f"{mib:8} | {via:10} | {single:12.2f} | {parts:7.2f} | {single / parts:5.2f} | "
                f"{single_rss:5.1f}, {parts_rss:5.1f}",
                flush=True,
            )
    name = f"big-{args.mib}.bin"
    md5 = md5_of_remote(server, name)
    print("\npart MiB | at once | via      | seconds | peak RSS delta MiB")
    for part_mib, at_once in ((4, 8), (8, 4), (8, 6), (8, 8), (8, 10), (8, 16), (16, 8), (32, 8)):
        for via in ("cap", "no proxy"):
            seconds, delta = bench.sdk(
                name, md5, proxy_url, threshold=1, part_size=part_mib * MiB, at_once=at_once, repeats=2,
                direct=via != "cap",
            )  # fmt: skip
            print(f"{part_mib:8} | {at_once:7} | {via:8} | {seconds:7.2f} | {delta:6.1f}", flush=True)


def md5_of_remote(server: BackgroundServer, name: str) -> str:
    found = gql(server.base_url, server.api_key, FILE_URL, entity="admin", project=PROJECT, run=RUN, name=name)
    return str(found["project"]["run"]["files"]["edges"][0]["node"]["md5"])


if __name__ == "__main__":
    main()
