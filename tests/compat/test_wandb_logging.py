"""The real `wandb` SDK (0.31.x) logs runs into `wandb-files server` with only WANDB_BASE_URL and WANDB_API_KEY set.

Every test runs a training script in a subprocess, as a user would, then checks what it wrote through our SDK
(files and bytes) and through `wandb.Api()` (config, summary and tags as W&B's own client reads them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import ADMIN_KEY, LiveServer, start_server, stop_server
from wandb_files.query import fetch_series
from wandb_files.testing import FaultProxy

wandb = pytest.importorskip("wandb")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The script's preamble: the run's id and project come as arguments; the file stream sends every second (the
# client's default is every 15 s; wandb-core takes whole seconds, 0.2 counts as unset).
PREAMBLE = """
import os, sys, time
import wandb
PROJECT, RUN_ID = sys.argv[1], sys.argv[2]
FAST = wandb.Settings(x_file_stream_transmit_interval=1)
"""


def run_script(
    base_url: str, tmp_path: Path, body: str, project: str, run_id: str, *, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a training script with the real wandb SDK pointed at `base_url`; fails the test on a non-zero exit."""
    proc = start_script(base_url, tmp_path, body, project, run_id, extra_env=extra_env)
    proc.wait(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, script_output(proc), "")


def script_output(proc: subprocess.Popen[bytes]) -> str:
    """What a script started by `start_script` printed (stdout and stderr together)."""
    return Path(proc.args[-1]).read_text(errors="replace")  # type: ignore[index]


def start_script(
    base_url: str, tmp_path: Path, body: str, project: str, run_id: str, *, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a training script in its own working directory; its output goes to a file (a pipe nobody reads
    could fill and stop it), whose path is the last argument."""
    work = tmp_path / f"work-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    script = work / "train.py"
    script.write_text(PREAMBLE + textwrap.dedent(body))
    env = {
        # Not WANDB_SERVICE: a wandb-core this test process started (wandb.Api() in another test) would be shared,
        # and its debug log would hold that client's requests too.
        **{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
        "WANDB_BASE_URL": base_url,
        "WANDB_API_KEY": ADMIN_KEY,
        "WANDB_DIR": str(work),
        "WANDB_CONFIG_DIR": str(work / "config"),
        "WANDB_CACHE_DIR": str(work / "cache"),
        "WANDB_DATA_DIR": str(work / "data"),
        **(extra_env or {}),
    }
    log = work / f"output-{time.monotonic_ns()}.txt"
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(script), project, run_id, str(log)], cwd=work, env=env, stdout=out, stderr=out
        )


def check_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:]


def debug_log_errors(work: Path) -> list[str]:
    """The ERROR lines of the client's debug logs (wandb-core's and its internal process's)."""
    lines: list[str] = []
    for log in work.glob("wandb/*run-*/logs/debug-*.log"):
        lines += [line for line in log.read_text(errors="replace").splitlines() if '"level":"ERROR"' in line]
    return lines


def client_dropped_run_files(work: Path) -> bool:
    """Whether wandb-core logged that a `CreateRunFiles` call failed: it then drops that batch of files for good
    (it retries a failed request, but not an answer whose connection was reset while it read the body), so the
    server never hears of them. A fault proxy that resets one answer in five does that to about one run in 15."""
    return any("runfiles: CreateRunFiles returned error" in line for line in debug_log_errors(work))


def read_file(run: wandb_files.Run, name: str, tmp_path: Path) -> bytes:
    """The bytes of run file `name`, downloaded with our SDK."""
    target = tmp_path / f"dl-{time.monotonic_ns()}"
    run.file(name).download(root=target).close()
    return (target / name).read_bytes()


def history_rows(server: LiveServer, run: wandb_files.Run) -> list[dict[str, Any]]:
    """The history rows the server stored for `run`, read from its database: what was stored, whatever serving
    it does (test_wandb_history.py reads it through W&B's client)."""
    from wandb_files.server.config import ServerConfig
    from wandb_files.server.db.database import create_db_engine, make_session_factory
    from wandb_files.server.db.models import Run
    from wandb_files.server.db.streams import HISTORY, stream_lines

    engine = create_db_engine(
        ServerConfig(data_dir=server.data_dir, database_url=server.database_url).database, migrate=False
    )
    try:
        with make_session_factory(engine)() as session:
            (row_id,) = [r.id for r in session.query(Run).filter(Run.name == run.id)]
            return [json.loads(line) for line in stream_lines(session, row_id, HISTORY)]
    finally:
        engine.dispose()


# --- init, log, save, finish ---------------------------------------------------------------------------------

FULL_RUN = """
import numpy as np
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, name="nice name", config={"lr": 0.1, "layers": [1, 2]},
                 tags=["a", "b"], group="g1", job_type="train", notes="some notes", settings=FAST)
print("hello from stdout")
print("to stderr", file=sys.stderr)
rng = np.random.default_rng(0)
for step in range(4):
    row = {"loss": 1.0 / (step + 1)}
    if step % 2 == 1:
        row["pred"] = wandb.Image(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    run.log(row)
run.log({"page": wandb.Html("<b>hi</b>")}, step=4)
os.makedirs("out", exist_ok=True)
open("out/now.txt", "w").write("first")
wandb.save("out/now.txt", policy="now")
open("out/end.txt", "w").write("at the end")
wandb.save("out/end.txt", policy="end")
run.summary["best"] = 42
run.finish()
"""


def test_init_log_save_finish(
    live_server: LiveServer, our_api: wandb_files.Api, wandb_api: Any, tmp_path: Path, unique: str
) -> None:
    pytest.importorskip("PIL", reason="wandb.Image needs pillow (the [compat] extra)")
    project, run_id = f"p{unique}", f"r{unique}"
    result = run_script(live_server.base_url, tmp_path, FULL_RUN, project, run_id)
    check_ok(result)
    assert debug_log_errors(tmp_path / f"work-{run_id}") == []

    theirs = wandb_api.run(f"admin/{project}/{run_id}")
    assert theirs.state == "finished"
    assert theirs.name == "nice name"
    assert theirs.config["lr"] == 0.1 and theirs.config["layers"] == [1, 2]
    assert theirs.tags == ["a", "b"] and theirs.group == "g1" and theirs.job_type == "train"
    assert theirs.notes == "some notes"
    assert theirs.summary["best"] == 42 and theirs.summary["loss"] == 0.25 and theirs.summary["_step"] == 4

    run = our_api.run(f"admin/{project}/{run_id}")
    names = {f.name for f in run.files()}
    images = sorted(n for n in names if n.startswith("media/images/"))
    assert [n.split("_")[1] for n in images] == ["1", "3"]  # media/images/pred_<step>_<hash>.png
    assert {"output.log", "config.yaml", "wandb-metadata.json", "requirements.txt", "wandb-summary.json"} <= names
    assert {"out/now.txt", "out/end.txt"} <= names
    assert any(n.startswith("media/html/page_4_") for n in names)
    for name in images:
        assert read_file(run, name, tmp_path).startswith(PNG_MAGIC)
    assert read_file(run, "output.log", tmp_path).decode().splitlines()[:2] == ["hello from stdout", "to stderr"]
    assert read_file(run, "out/end.txt", tmp_path) == b"at the end"
    summary_file = json.loads(read_file(run, "wandb-summary.json", tmp_path))
    assert summary_file["best"] == 42 and summary_file["_step"] == 4

    series = fetch_series(f"admin/{project}", runs=[run_id], attributes="pred", api=our_api)
    assert [step for _, step in series.index] == [1.0, 3.0]

    rows = history_rows(live_server, run)
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r.get("loss") for r in rows[:4]] == [1.0, 0.5, 1 / 3, 0.25]


# --- resume ----------------------------------------------------------------------------------------------------

RESUMABLE = """
mode = os.environ.get("RESUME") or None
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, resume=mode, settings=FAST)
print("session", os.environ["SESSION"])
for _ in range(3):
    run.log({"x": int(os.environ["SESSION"])})
run.finish()
"""


def test_resume_allow_continues_and_never_is_refused(
    live_server: LiveServer, our_api: wandb_files.Api, wandb_api: Any, tmp_path: Path, unique: str
) -> None:
    project, run_id = f"p{unique}", f"r{unique}"
    url = live_server.base_url
    check_ok(run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "1"}))
    check_ok(run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "2", "RESUME": "allow"}))

    run = our_api.run(f"admin/{project}/{run_id}")
    rows = history_rows(live_server, run)
    assert [(r["_step"], r["x"]) for r in rows] == [(s, 1 + s // 3) for s in range(6)]
    # W&B's client reads the history of both sessions back.
    theirs = wandb_api.run(f"admin/{project}/{run_id}")
    assert theirs.lastHistoryStep == 5
    assert [(r["_step"], r["x"]) for r in theirs.scan_history()] == [(s, 1 + s // 3) for s in range(6)]
    assert [r["x"] for r in theirs.history(keys=["x"], pandas=False)] == [1, 1, 1, 2, 2, 2]
    # The client uploads an output.log of its own session only as it finishes; the server's holds both.
    output = read_file(run, "output.log", tmp_path).decode()
    assert [line for line in output.splitlines() if line.startswith("session")] == ["session 1", "session 2"]
    assert wandb_api.run(f"admin/{project}/{run_id}").state == "finished"

    refused = run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "3", "RESUME": "never"})
    assert refused.returncode != 0
    assert f"Run ({run_id}) already exists" in refused.stdout
    assert len(history_rows(live_server, our_api.run(f"admin/{project}/{run_id}"))) == 6


@pytest.mark.slow
def test_resume_must(live_server: LiveServer, our_api: wandb_files.Api, tmp_path: Path, unique: str) -> None:
    project, run_id = f"p{unique}", f"r{unique}"
    url = live_server.base_url
    missing = run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "1", "RESUME": "must"})
    assert missing.returncode != 0 and "does not exist" in missing.stdout
    check_ok(run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "1", "RESUME": "allow"}))
    check_ok(run_script(url, tmp_path, RESUMABLE, project, run_id, extra_env={"SESSION": "2", "RESUME": "must"}))
    rows = history_rows(live_server, our_api.run(f"admin/{project}/{run_id}"))
    assert [(r["_step"], r["x"]) for r in rows] == [(s, 1 + s // 3) for s in range(6)]


# --- offline, then wandb sync ----------------------------------------------------------------------------------

OFFLINE = """
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, config={"lr": 0.5})
print("offline line")
for step in range(5):
    run.log({"acc": step / 10})
wandb.save("train.py", policy="now")
run.finish()
"""


def test_offline_run_then_wandb_sync(
    live_server: LiveServer, our_api: wandb_files.Api, wandb_api: Any, tmp_path: Path, unique: str
) -> None:
    project, run_id = f"p{unique}", f"r{unique}"
    check_ok(run_script(live_server.base_url, tmp_path, OFFLINE, project, run_id, extra_env={"WANDB_MODE": "offline"}))
    with pytest.raises(wandb_files.errors.NotFoundError):
        our_api.run(f"admin/{project}/{run_id}")
    work = tmp_path / f"work-{run_id}"
    (offline_dir,) = work.glob("wandb/offline-run-*")
    env = {**os.environ, "WANDB_BASE_URL": live_server.base_url, "WANDB_API_KEY": ADMIN_KEY, "HOME": str(work)}
    synced = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "sync", str(offline_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr

    theirs = wandb_api.run(f"admin/{project}/{run_id}")
    assert theirs.state == "finished" and theirs.config["lr"] == 0.5 and theirs.summary["acc"] == 0.4
    run = our_api.run(f"admin/{project}/{run_id}")
    names = {f.name for f in run.files()}
    assert {"output.log", "config.yaml", "wandb-summary.json", "train.py"} <= names
    assert "offline line" in read_file(run, "output.log", tmp_path).decode()
    assert [r["acc"] for r in history_rows(live_server, run)] == [0.0, 0.1, 0.2, 0.3, 0.4]


# --- a crash ---------------------------------------------------------------------------------------------------

KILLED = """
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, settings=FAST)
for step in range(3):
    print(f"line {step}", flush=True)
    run.log({"step_value": step})
print("READY", flush=True)
# Printing keeps the file stream busy: the client's own heartbeat comes only every 30 s.
while True:
    print("tick", flush=True)
    time.sleep(0.3)
"""


@pytest.fixture
def quick_timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that marks a run crashed after 3 s without a file stream request."""
    server = start_server(tmp_path_factory.mktemp("crash") / "data", ADMIN_KEY, "--run-timeout", "3")
    yield server
    stop_server(server)


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigkill_mid_run_keeps_output_and_marks_crashed(
    quick_timeout_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    server = quick_timeout_server
    api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
    project, run_id = f"p{unique}", f"r{unique}"
    proc = start_script(server.base_url, tmp_path, KILLED, project, run_id)
    try:
        wait_for(lambda: "READY" in script_output(proc), timeout=60, what="the script to log")

        def output_streamed() -> bool:
            try:
                run = api.run(f"admin/{project}/{run_id}")
                return "line 2" in read_file(run, "output.log", tmp_path).decode()
            except (wandb_files.errors.NotFoundError, ValueError):
                return False

        # Readable while the run is still running.
        wait_for(output_streamed, what="output.log to hold the printed lines")
        time.sleep(4)  # past the timeout: the streamed lines keep the run alive
        assert api.run(f"admin/{project}/{run_id}").state == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_for(lambda: api.run(f"admin/{project}/{run_id}").state == "crashed", what="the run to be marked crashed")
    run = api.run(f"admin/{project}/{run_id}")
    assert read_file(run, "output.log", tmp_path).decode().splitlines()[:3] == ["line 0", "line 1", "line 2"]
    assert [r["step_value"] for r in history_rows(server, run)] == [0, 1, 2]


# --- two runs at once ------------------------------------------------------------------------------------------

CONCURRENT = """
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, settings=FAST)
for step in range(50):
    print(f"{RUN_ID} {step}")
    run.log({"v": step})
run.finish()
"""


def test_two_runs_logging_at_once(
    live_server: LiveServer, our_api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    project = f"p{unique}"
    procs = [start_script(live_server.base_url, tmp_path, CONCURRENT, project, f"r{i}{unique}") for i in range(2)]
    for proc in procs:
        proc.wait(timeout=240)
        assert proc.returncode == 0, script_output(proc)[-3000:]
    for i in range(2):
        run = our_api.run(f"admin/{project}/r{i}{unique}")
        assert run.state == "finished"
        assert [r["v"] for r in history_rows(live_server, run)] == list(range(50))
        lines = read_file(run, "output.log", tmp_path).decode().splitlines()
        assert [line for line in lines if line.startswith("r")] == [f"r{i}{unique} {s}" for s in range(50)]


# --- reliability -----------------------------------------------------------------------------------------------

RELIABLE = """
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, config={"k": 1}, settings=wandb.Settings(
    x_file_stream_transmit_interval=1, x_file_stream_retry_wait_min_seconds=0.2,
    x_file_stream_retry_wait_max_seconds=1))
for step in range(200):
    print(f"line {step}")
    run.log({"v": step})
    if step % 50 == 0:
        time.sleep(0.3)
open("saved.txt", "w").write("kept")
wandb.save("saved.txt", policy="now")
run.finish()
"""


@pytest.mark.slow
@pytest.mark.parametrize("faults", [("500", "503", "429"), ("reset",), ("slow",)])
def test_faults_between_client_and_server(
    live_server: LiveServer, our_api: wandb_files.Api, tmp_path: Path, unique: str, faults: tuple[str, ...]
) -> None:
    project, run_id = f"p{unique}", f"r{unique}"
    with FaultProxy(
        live_server.base_url, fault_rate=0.2, faults=faults, seed=1, slow_seconds=3, paths=("/graphql", "/files/")
    ) as proxy:
        result = run_script(proxy.url, tmp_path, RELIABLE, project, run_id)
        assert proxy.stats["faults"] > 0
    check_ok(result)
    run = our_api.run(f"admin/{project}/{run_id}")
    assert run.state == "finished"
    assert [r["v"] for r in history_rows(live_server, run)] == list(range(200))
    lines = read_file(run, "output.log", tmp_path).decode().splitlines()
    assert [line for line in lines if line.startswith("line ")] == [f"line {s}" for s in range(200)]
    if not client_dropped_run_files(tmp_path / f"work-{run_id}"):
        assert read_file(run, "saved.txt", tmp_path) == b"kept"


@pytest.fixture
def postgres_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server over PostgreSQL and an S3 bucket (moto): uploads go straight to the bucket, presigned."""
    from tests.support.services import postgres_cluster, s3_server, s3_service

    s3 = s3_service()
    database_url = postgres_cluster().create_database()
    server = s3_server(tmp_path_factory.mktemp("pgs3") / "data", s3, s3.create_bucket(), database_url=database_url)
    yield server
    server.stop()


@pytest.mark.slow
def test_faults_on_postgres_and_s3(postgres_s3_server: LiveServer, tmp_path: Path, unique: str) -> None:
    server = postgres_s3_server
    api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
    project, run_id = f"p{unique}", f"r{unique}"
    with FaultProxy(
        server.base_url, fault_rate=0.2, faults=("500", "503", "reset"), seed=2, paths=("/graphql", "/files/")
    ) as proxy:
        result = run_script(proxy.url, tmp_path, RELIABLE, project, run_id)
        assert proxy.stats["faults"] > 0
    check_ok(result)
    run = api.run(f"admin/{project}/{run_id}")
    assert run.state == "finished"
    assert [r["v"] for r in history_rows(server, run)] == list(range(200))
    lines = read_file(run, "output.log", tmp_path).decode().splitlines()
    assert [line for line in lines if line.startswith("line ")] == [f"line {s}" for s in range(200)]
    if not client_dropped_run_files(tmp_path / f"work-{run_id}"):
        assert read_file(run, "saved.txt", tmp_path) == b"kept"
