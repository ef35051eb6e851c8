"""The real wandb SDK logging a run into `wandb-files server`, against the same script in offline mode (the floor).

The script logs 1,000 steps of scalars and 100 images (one every 10 steps) and saves 20 files; the time is
from `wandb.init` to `run.finish()` returning, measured inside the script. The server's CPU (user + system, from
/proc/<pid>/stat) is read before and after the online run.

    python benchmarks/bench_wandb_init.py [--repeat 3]

Needs wandb 0.31 and pillow (the [compat] extra) and the server extra; Linux for the CPU figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from wandb_files.testing import BackgroundServer

STEPS = 1000
IMAGES = 100
SAVED = 20

SCRIPT = textwrap.dedent(
    f"""
    import os, sys, time
    import numpy as np
    import wandb
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range({IMAGES})]
    os.makedirs("saved", exist_ok=True)
    for i in range({SAVED}):
        with open(f"saved/f{{i}}.txt", "w") as fh:
            fh.write("x" * 1000 * (i + 1))
    start = time.perf_counter()
    run = wandb.init(project="bench", entity="admin", id=sys.argv[1], config={{"lr": 0.1}})
    started = time.perf_counter()
    for step in range({STEPS}):
        row = {{"loss": 1.0 / (step + 1), "acc": step / {STEPS}}}
        if step % ({STEPS} // {IMAGES}) == 0:
            row["img"] = wandb.Image(pixels[step // ({STEPS} // {IMAGES})])
        run.log(row)
    for i in range({SAVED}):
        wandb.save(f"saved/f{{i}}.txt", policy="now")
    logged = time.perf_counter()
    run.finish()
    end = time.perf_counter()
    print("PHASES", started - start, logged - started, end - logged)
    print("ELAPSED", end - start)
    """
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its reaped children (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_script(work: Path, env: dict[str, str], run_id: str) -> tuple[float, list[float]]:
    work.mkdir(parents=True)
    script = work / "train.py"
    script.write_text(SCRIPT)
    env = {**env, "WANDB_DIR": str(work), "WANDB_CONFIG_DIR": str(work / "cfg"), "WANDB_CACHE_DIR": str(work / "c")}
    done = subprocess.run(
        [sys.executable, str(script), run_id], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    phases = [float(x) for x in done.stdout.split("PHASES")[-1].split("\n")[0].split()]
    return float(done.stdout.split("ELAPSED")[-1].strip()), phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind (the median is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = BackgroundServer(root / "server", workers=1).start()
        try:
            assert server.process is not None
            env = {**os.environ, "WANDB_BASE_URL": server.base_url, "WANDB_API_KEY": server.api_key}
            env.pop("WANDB_MODE", None)
            online: list[float] = []
            offline: list[float] = []
            phases: dict[str, list[list[float]]] = {"online": [], "offline": []}
            cpu: list[float] = []
            for i in range(args.repeat):
                elapsed, split = run_script(root / f"off{i}", {**env, "WANDB_MODE": "offline"}, f"off{i}")
                offline.append(elapsed)
                phases["offline"].append(split)
                before = cpu_seconds(server.process.pid)
                elapsed, split = run_script(root / f"on{i}", env, f"on{i}")
                online.append(elapsed)
                phases["online"].append(split)
                cpu.append(cpu_seconds(server.process.pid) - before)
        finally:
            server.stop()
    on, off, server_cpu = statistics.median(online), statistics.median(offline), statistics.median(cpu)
    print(f"{STEPS} steps, {IMAGES} images, {SAVED} saved files; medians of {args.repeat} runs")
    print(f"online (wandb-files server): {on:.2f} s   runs: {', '.join(f'{t:.2f}' for t in online)}")
    print(f"offline (WANDB_MODE=offline): {off:.2f} s   runs: {', '.join(f'{t:.2f}' for t in offline)}")
    for kind, splits in phases.items():
        init, log, finish = (statistics.median(column) for column in zip(*splits, strict=True))
        print(f"{kind} phases (medians): init {init:.2f} s, log loop {log:.2f} s, finish {finish:.2f} s")
    print(f"ratio online/offline: {on / off:.2f} (goal <= 1.5)")
    print(f"server CPU: {server_cpu:.2f} s a run, {1000 * server_cpu / STEPS:.2f} ms per logged step")


if __name__ == "__main__":
    main()
