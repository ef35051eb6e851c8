"""The real `wandb` 0.31 public API reads back the history a run logged: `run.history()` (sampled, keys, x_axis,
pandas), `run.scan_history()` (every row in step order, keys, min/max step, page size) and `run.lastHistoryStep`.

One run is logged for the module: 300 rows, steps 0-199 numbered by the client and then 200, 202, ..., 398 given
with `step=`; `loss` in every row (NaN and ±Infinity once each), `acc` in every third row.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat.test_wandb_logging import check_ok, debug_log_errors, run_script
from tests.support import LiveServer

wandb = pytest.importorskip("wandb")

LOGGED = """
run = wandb.init(project=PROJECT, entity="admin", id=RUN_ID, settings=FAST)
for i in range(300):
    row = {"loss": 1.0 / (i + 1)}
    if i % 3 == 0:
        row["acc"] = i / 1000
    if i in (5, 6, 7):
        row["loss"] = [float("nan"), float("inf"), float("-inf")][i - 5]
    if i < 200:
        run.log(row)
    else:
        run.log(row, step=200 + 2 * (i - 200))
run.finish()
"""

STEPS = list(range(200)) + list(range(200, 400, 2))
SPECIAL = {5: math.nan, 6: math.inf, 7: -math.inf}


def loss_at(index: int) -> float:
    return SPECIAL.get(index, 1.0 / (index + 1))


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN."""
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(scope="module")
def logged_run(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The path of the run logged for the module."""
    tmp_path = tmp_path_factory.mktemp("history")
    unique = uuid.uuid4().hex[:10]
    project, run_id = f"p{unique}", f"r{unique}"
    check_ok(run_script(live_server.base_url, tmp_path, LOGGED, project, run_id))
    assert debug_log_errors(tmp_path / f"work-{run_id}") == []
    yield f"admin/{project}/{run_id}"


def test_history_is_sampled_with_first_and_last_steps(wandb_api: Any, logged_run: str) -> None:
    run = wandb_api.run(logged_run)
    assert run.lastHistoryStep == 398
    assert run.historyLineCount == 300
    assert run.history_keys["lastStep"] == 398
    assert run.history_keys["keys"]["acc"]["typeCounts"] == [{"type": "number", "count": 100}]

    rows = run.history(pandas=False)  # samples=500: all 300 rows
    assert [r["_step"] for r in rows] == STEPS
    assert all(same(r["loss"], loss_at(i)) for i, r in enumerate(rows))  # NaN and ±Infinity as floats
    assert [r["_step"] for r in rows if "acc" in r] == STEPS[::3]

    sampled = run.history(samples=50, pandas=False)
    steps = [r["_step"] for r in sampled]
    assert len(steps) == 50 and steps[0] == 0 and steps[-1] == 398 and steps == sorted(steps)
    assert set(steps) <= set(STEPS)
    assert run.history(samples=50, pandas=False) == sampled  # deterministic

    # keys: only rows holding every key, with the x axis and those keys only.
    acc = run.history(keys=["acc"], pandas=False)
    assert acc == [{"_step": s, "acc": i / 1000} for i, s in enumerate(STEPS) if i % 3 == 0]
    both = run.history(keys=["acc", "loss"], samples=10, pandas=False)
    assert len(both) == 10 and both[0]["_step"] == 0 and both[-1]["_step"] == STEPS[297]
    assert all(set(r) == {"_step", "acc", "loss"} for r in both)
    # NaN and ±Infinity in keyed rows come as W&B's JSON-safe strings.
    special = run.history(keys=["loss"], x_axis="_step", pandas=False)[5:8]
    assert [r["loss"] for r in special] == ["NaN", "Infinity", "-Infinity"]
    by_runtime = run.history(keys=["acc"], x_axis="_runtime", samples=5, pandas=False)
    assert len(by_runtime) == 5 and all(set(r) == {"_runtime", "acc"} for r in by_runtime)

    frame = run.history(samples=100)
    assert {"_step", "loss", "acc", "_runtime", "_timestamp"} <= set(frame.columns)
    assert len(frame) == 100 and frame["_step"].iloc[-1] == 398
    assert list(run.history(keys=["acc"]).columns) == ["_step", "acc"]


def test_scan_history_reads_every_row_in_step_order(wandb_api: Any, logged_run: str) -> None:
    run = wandb_api.run(logged_run)
    rows = list(run.scan_history(page_size=64))
    assert [r["_step"] for r in rows] == STEPS
    assert all(same(r["loss"], loss_at(i)) for i, r in enumerate(rows))
    assert [r["acc"] for r in rows if "acc" in r] == [i / 1000 for i in range(0, 300, 3)]

    # min_step inclusive, max_step exclusive, across the steps given with step= (even steps only from 200).
    assert [r["_step"] for r in run.scan_history(min_step=195, max_step=207, page_size=4)] == [
        195, 196, 197, 198, 199, 200, 202, 204, 206,
    ]  # fmt: skip
    # keys: rows without every key are left out; each row holds _step and those keys.
    acc = list(run.scan_history(keys=["acc"], page_size=50))
    assert acc == [{"_step": s, "acc": i / 1000} for i, s in enumerate(STEPS) if i % 3 == 0]
    window = list(run.scan_history(keys=["loss", "acc"], min_step=3, max_step=10))
    assert window == [{"_step": 3, "loss": 0.25, "acc": 0.003}, {"_step": 6, "loss": "Infinity", "acc": 0.006},
                      {"_step": 9, "loss": 0.1, "acc": 0.009}]  # fmt: skip
    assert list(run.scan_history(keys=["missing"])) == []
