"""Latency of the embedded server's hot paths on loopback.

Starts `wandb-files server` with BackgroundServer in a temporary directory, fills a run with 200 files,
then times sequential requests over one keep-alive `requests.Session` and prints median and p99 per case.

    .venv/bin/python benchmarks/bench_server.py [--requests 200] [--max-seconds 20]

Every case stops after --requests requests or --max-seconds seconds, whichever comes first, so a slow
server cannot make the benchmark run for long. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from graphql import print_ast

from wandb_files import documents
from wandb_files.testing import BackgroundServer

FILES_IN_RUN = 200
PAGE_SIZE = 50
PAYLOAD_BYTES = 100 * 1024

VIEWER = "query { viewer { id } }"

UPSERT = """
mutation Upsert($project: String, $name: String) {
  upsertBucket(input: {modelName: $project, name: $name}) { bucket { id name } inserted }
}
"""

# The documents our SDK (and W&B's client) send, printed as they go over the wire.
CREATE_FILES = print_ast(documents.CREATE_RUN_FILES.document)
RUN_FILES = print_ast(documents.RUN_FILES.document)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `samples`."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def timed(case: Callable[[], None], n: int, max_seconds: float) -> list[float]:
    """Run `case` up to n times (after 5 warm-up calls) within max_seconds; return latencies in ms."""
    for _ in range(5):
        case()
    samples: list[float] = []
    deadline = time.monotonic() + max_seconds
    while len(samples) < n and time.monotonic() < deadline:
        start = time.perf_counter()
        case()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per case")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time limit per case")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wf-bench-") as tmp, BackgroundServer(Path(tmp) / "data") as server:
        http = requests.Session()
        http.auth = ("api", server.api_key)
        base = server.base_url

        def gql(query: str, variables: dict | None = None) -> dict:
            response = http.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)
            response.raise_for_status()
            body = response.json()
            if body.get("errors"):
                raise RuntimeError(body["errors"])
            return body["data"]

        entity, project, run = "admin", "bench", "run200"
        gql(UPSERT, {"project": project, "name": run})
        names = [f"dir{i % 10}/file-{i:04d}.bin" for i in range(FILES_IN_RUN)]
        created = gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": names})
        payload = os.urandom(PAYLOAD_BYTES)
        plain = requests.Session()  # upload URLs are signed; they carry no API key
        for f in created["createRunFiles"]["files"]:
            plain.put(f["uploadUrl"], data=payload, timeout=30).raise_for_status()
        put_url = created["createRunFiles"]["files"][0]["uploadUrl"]
        download_url = f"{base}/files/{entity}/{project}/{run}/{names[0]}"
        run_files_vars = {"entity": entity, "project": project, "name": run, "fileLimit": PAGE_SIZE}
        missing_vars = {"entity": entity, "project": project, "name": "no-such-run", "fileLimit": PAGE_SIZE}
        first_page = gql(RUN_FILES, run_files_vars)["project"]["run"]["files"]
        assert len(first_page["edges"]) == PAGE_SIZE and first_page["pageInfo"]["hasNextPage"]

        def healthz() -> None:
            http.get(f"{base}/healthz", timeout=30).raise_for_status()

        def viewer() -> None:
            gql(VIEWER)

        def run_files() -> None:
            gql(RUN_FILES, run_files_vars)

        def run_files_missing() -> None:
            gql(RUN_FILES, missing_vars)

        def download() -> None:
            response = http.get(download_url, timeout=30)
            response.raise_for_status()
            assert len(response.content) == PAYLOAD_BYTES

        def upload() -> None:
            plain.put(put_url, data=payload, timeout=30).raise_for_status()

        upload_names = iter(f"up/{i:06d}.bin" for i in range(10**6))

        def upload_cycle() -> None:
            # What uploading one file costs a client: createRunFiles, PUT, then RunFiles for its metadata.
            name = next(upload_names)
            url = gql(CREATE_FILES, {"entity": entity, "project": project, "run": "cycle", "files": [name]})
            plain.put(url["createRunFiles"]["files"][0]["uploadUrl"], data=b"x" * 100, timeout=30).raise_for_status()
            gql(RUN_FILES, {"entity": entity, "project": project, "name": "cycle", "fileNames": [name]})

        gql(UPSERT, {"project": project, "name": "cycle"})
        cases: list[tuple[str, Callable[[], None]]] = [
            ("GET /healthz", healthz),
            ("viewer { id }", viewer),
            ("RunFiles, missing run", run_files_missing),
            (f"RunFiles, {PAGE_SIZE} of {FILES_IN_RUN} files", run_files),
            (f"GET /files/... ({PAYLOAD_BYTES // 1024} KB)", download),
            (f"PUT /uploads/... ({PAYLOAD_BYTES // 1024} KB)", upload),
            ("upload cycle (3 requests)", upload_cycle),
        ]
        print(f"{'case':<32} {'n':>5} {'median ms':>10} {'p99 ms':>9}")
        for label, case in cases:
            samples = timed(case, args.requests, args.max_seconds)
            print(f"{label:<32} {len(samples):>5} {statistics.median(samples):>10.2f} {percentile(samples, 99):>9.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
