"""Listing speed as ratios: our SDK against the replay floor, and the real `wandb` client against our SDK.

The replay floor: the SDK iterating a run against a stub HTTP server (its own process, loopback, uvicorn like
ours) that returns the very same response bodies our server gave, byte for byte. The bodies are recorded
first through the stub in record mode (a relay to our server), keyed by request body (and replayed in the
order they came for a body sent more than once). Against the stub the SDK pays all of its own work (HTTP,
JSON, building objects) and none of the server's, so `SDK against the server / SDK against the stub` is
what the server adds.

    .venv/bin/python benchmarks/bench_listing_replay.py                      # 20,000 files: floor ratios
    .venv/bin/python benchmarks/bench_listing_replay.py --wandb-files 100000 # and real wandb vs our SDK
    .venv/bin/python benchmarks/bench_listing_replay.py --repeat 3 --per-page 1000,50
    .venv/bin/python benchmarks/bench_listing_replay.py --versus "--inline-query-ms 0"   # two servers compared
    .venv/bin/python benchmarks/bench_listing_replay.py --versus "" --versus-pythonpath /tmp/before  # two trees

`--versus` starts a second server over the same database (other options, or with `--versus-pythonpath` the
`wandb_files` of another checkout) and walks both in the same rounds, interleaved with the floor: its ratio to
the first is a before/after figure that a busy machine moves far less than either time.

Seeding and the SDK's client process come from bench_listing.py. Each figure is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_listing import CLIENT, seed

# The stub: an ASGI app under uvicorn. `record` relays each request to the upstream server and keeps
# (request body -> response); `replay` answers from what was kept. Either way it writes nothing per request.
STUB = r"""
import collections, http.client, json, pickle, signal, sys, urllib.parse
import uvicorn
mode, port, store_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
upstream = urllib.parse.urlsplit(sys.argv[4]) if mode == "record" else None
recorded = collections.defaultdict(list)
if mode == "replay":
    with open(store_path, "rb") as f:
        recorded.update(pickle.load(f))
served = collections.Counter()

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                if mode == "record":
                    with open(store_path, "wb") as f:
                        pickle.dump(dict(recorded), f)
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    key = (scope["method"], scope["path"], body)
    if scope["path"] == "/healthz":
        status, headers, payload = 200, [(b"content-type", b"text/plain")], b"ok"
    elif mode == "record":
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port)
        hdrs = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() not in (b"host", b"connection")}
        conn.request(scope["method"], scope["path"], body=body, headers=hdrs)
        response = conn.getresponse()
        payload = response.read()
        status = response.status
        headers = [(b"content-type", (response.getheader("content-type") or "application/json").encode())]
        conn.close()
        recorded[key].append((status, headers, payload))
    else:
        answers = recorded[key]
        i = served[key]
        served[key] += 1
        status, headers, payload = answers[min(i, len(answers) - 1)]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})

uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
"""

# The real wandb client iterating the same run, timed like CLIENT times ours.
WANDB_CLIENT = r"""
import json, sys, time
import wandb
per_page = int(sys.argv[1])
api = wandb.Api(timeout=60)
run = api.run("admin/scale/big")
files = run.files(per_page=per_page)
count, last_name = 0, None
start = time.perf_counter()
for f in files:
    count += 1
    last_name = f.name
total = time.perf_counter() - start
print(json.dumps({"files": count, "total": total, "last": last_name}))
"""


class Stub:
    """The stub server in its own process: `record` through to `upstream`, or `replay` from `store`."""

    def __init__(self, mode: str, store: Path, upstream: str = "") -> None:
        from wandb_files.testing.background import free_port

        self.port = free_port("127.0.0.1")
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", STUB, mode, str(self.port), str(store), upstream])
        deadline = time.monotonic() + 30
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the stub did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(2)  # SIGINT: uvicorn shuts down and the recorder writes its store
        self.proc.wait(30)


def sdk(base_url: str, api_key: str, per_page: int) -> dict[str, object]:
    """Our SDK iterating the run in a client process of its own (bench_listing's CLIENT)."""
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, base_url, api_key, str(per_page)], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def real_wandb(base_url: str, api_key: str, per_page: int, tmp: Path) -> dict[str, object]:
    """The real wandb client iterating the run, pointed at `base_url` by environment only."""
    env = {**os.environ, "WANDB_BASE_URL": base_url, "WANDB_API_KEY": api_key, "WANDB_SILENT": "true"}
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        env[var] = str(tmp / var.lower())
    out = subprocess.run(
        [sys.executable, "-c", WANDB_CLIENT, str(per_page)], capture_output=True, text=True, check=True, env=env
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def best(runs: list[dict[str, object]]) -> float:
    return min(float(str(r["total"])) for r in runs)


def floor_ratios(
    n_files: int, per_pages: list[int], repeat: int, extra_args: list[str], versus: tuple[list[str], str] | None
) -> None:
    """SDK against our server and against the replay of its answers, per page size; and against a second server
    (`versus`: its options and PYTHONPATH) in the same rounds."""
    from wandb_files.testing import BackgroundServer

    api_key = uuid.uuid4().hex + "abcdefgh"
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        data_dir.mkdir()
        seed(data_dir / "wandb-files.db", n_files, api_key)
        # workers=None: the server's default, as a user runs it.
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(
                BackgroundServer(data_dir, api_key=api_key, workers=None, extra_args=extra_args)
            )
            other = None
            if versus is not None:
                env = {"PYTHONPATH": versus[1]} if versus[1] else None
                other = stack.enter_context(
                    BackgroundServer(data_dir, api_key=api_key, workers=None, extra_args=versus[0], env=env)
                )
            for per_page in per_pages:
                store = tmp / f"recorded-{per_page}.pickle"
                recorder = Stub("record", store, server.base_url)
                try:
                    recorded = sdk(recorder.base_url, api_key, per_page)
                finally:
                    recorder.stop()
                assert recorded["files"] == n_files, recorded
                replay = Stub("replay", store)
                try:
                    ours, floor, theirs = [], [], []
                    for _ in range(repeat):  # interleaved, so a busy moment hits all alike
                        ours.append(sdk(server.base_url, api_key, per_page))
                        floor.append(sdk(replay.base_url, api_key, per_page))
                        if other is not None:
                            theirs.append(sdk(other.base_url, api_key, per_page))
                finally:
                    replay.stop()
                for r in ours + floor + theirs:
                    assert r["files"] == n_files and r["last"] == recorded["last"], r
                print(
                    f"{n_files:,} files, per_page={per_page}: SDK against the server {best(ours):.2f} s, "
                    f"against the replay floor {best(floor):.2f} s: {best(ours) / best(floor):.2f} x the floor",
                    flush=True,
                )
                if theirs:
                    print(
                        f"{n_files:,} files, per_page={per_page}: the --versus server {best(theirs):.2f} s, "
                        f"{best(theirs) / best(floor):.2f} x the floor, {best(theirs) / best(ours):.2f} x the first",
                        flush=True,
                    )


def wandb_ratio(n_files: int, per_page: int, repeat: int, extra_args: list[str]) -> None:
    """The real wandb client against our SDK over the same run and server."""
    from wandb_files.testing import BackgroundServer

    api_key = uuid.uuid4().hex + "abcdefgh"
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        data_dir.mkdir()
        seed(data_dir / "wandb-files.db", n_files, api_key)
        # workers=None: the server's default, as a user runs it.
        with BackgroundServer(data_dir, api_key=api_key, workers=None, extra_args=extra_args) as server:
            ours, theirs = [], []
            for _ in range(repeat):
                ours.append(sdk(server.base_url, api_key, per_page))
                theirs.append(real_wandb(server.base_url, api_key, per_page, tmp))
        for r in ours + theirs:
            assert r["files"] == n_files, r
        print(
            f"{n_files:,} files, per_page={per_page}: our SDK {best(ours):.2f} s, real wandb "
            f"{best(theirs):.2f} s: {best(theirs) / best(ours):.2f} x our SDK's time",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000, help="files of the run for the floor ratios (0: skip)")
    parser.add_argument("--per-page", default="1000,50", help="page sizes for the floor ratios (50 is the default)")
    parser.add_argument("--wandb-files", type=int, default=0, help="files for real wandb vs our SDK (0: skip)")
    parser.add_argument("--wandb-per-page", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-args", default="", help="extra `wandb-files server` options, space separated")
    parser.add_argument("--versus", default=None, help="options of a second server walked in the same rounds")
    parser.add_argument("--versus-pythonpath", default="", help="PYTHONPATH of the second server (another tree)")
    args = parser.parse_args()
    extra = args.server_args.split()
    versus = None
    if args.versus is not None or args.versus_pythonpath:
        versus = ((args.versus or "").split(), args.versus_pythonpath)
    if args.files:
        floor_ratios(args.files, [int(p) for p in args.per_page.split(",")], args.repeat, extra, versus)
    if args.wandb_files:
        wandb_ratio(args.wandb_files, args.wandb_per_page, args.repeat, extra)


if __name__ == "__main__":
    main()
