"""Serving the history the wandb file stream sent: `history`/`events` pages and samples, `sampledHistory` specs,
`historyKeys` kept as rows arrive (once each, retries included), `parquetHistory`, bad specs refused, and the
migration that fills steps and historyKeys for history stored before."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ADMIN_KEY, Client, LiveServer, database_at_revision
from wandb_files.server.db.history import evenly_spaced, sample_evenly

RunPath = tuple[str, str, str]

RUN = """
query($project: String!, $run: String!, $samples: Int, $min: Int64, $max: Int64, $specs: [JSONString!]!) {
  project(name: $project, entityName: "admin") { run(name: $run) {
    historyKeys historyLineCount
    history(samples: $samples, minStep: $min, maxStep: $max)
    sampledHistory(specs: $specs)
    parquetHistory(liveKeys: ["_step", "w"]) { parquetUrls liveData }
    events(samples: 2)
  } } }
"""


def stream(client: Client, run_path: RunPath, files: dict[str, Any]) -> None:
    entity, project, run = run_path
    answer = requests.post(
        f"{client.base_url}/files/{entity}/{project}/{run}/file_stream",
        json={"files": files},
        auth=client.auth,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def history_line(i: int) -> str:
    """Row i as the client streams it (json.dumps writes NaN as the client does); step 2 * i."""
    row: dict[str, Any] = {"v": float("nan") if i == 3 else i, "_step": 2 * i}
    if i % 10 == 0:
        row["w"] = {"x": i}
    return json.dumps(row)


def read(client: Client, run_path: RunPath, **variables: Any) -> dict[str, Any]:
    _, project, run = run_path
    variables.setdefault("specs", [])
    result: dict[str, Any] = client.gql(RUN, {"project": project, "run": run, **variables})["project"]["run"]
    return result


def test_pages_samples_and_keys(admin: Client, run_path: RunPath) -> None:
    lines = [history_line(i) for i in range(1000)]
    stream(admin, run_path, {"wandb-history.jsonl": {"offset": 0, "content": lines[:600]}})
    # A retried request (lines 500-599 again) with the rest: stored and counted once.
    stream(admin, run_path, {"wandb-history.jsonl": {"offset": 500, "content": lines[500:]}})
    stream(admin, run_path, {"wandb-events.jsonl": {"offset": 0, "content": ['{"cpu": 1}', '{"cpu": 2}', "{}"]}})

    run = read(admin, run_path, samples=7)
    assert run["historyLineCount"] == 1000
    keys = run["historyKeys"]
    assert keys["lastStep"] == 1998
    assert keys["keys"]["v"] == {"typeCounts": [{"type": "number", "count": 1000}], "previousValue": 999}
    assert keys["keys"]["w.x"]["typeCounts"] == [{"type": "number", "count": 100}]
    steps = [json.loads(line)["_step"] for line in run["history"]]
    assert steps == [0, 334, 666, 1000, 1332, 1666, 1998]  # evenly spaced, first and last kept
    assert run["parquetHistory"] == {"parquetUrls": [], "liveData": [{"_step": 0, "w": {"x": 0}}, {"_step": 1998}]}
    assert [json.loads(line)["cpu"] for line in run["events"][:1]] == [1] and len(run["events"]) == 2

    # A step range (maxStep exclusive), every row when samples allow; NaN as the client wrote it.
    page = read(admin, run_path, samples=100, min=4, max=12)["history"]
    assert page == lines[2:6] and "NaN" in page[1]
    assert read(admin, run_path, min=5000)["history"] == []

    specs = [
        {"keys": ["_step", "w"], "samples": 5},
        {"keys": ["_step", "v"], "minStep": 4, "maxStep": 8},  # maxStep inclusive, as wandb-core sends it
        {"keys": ["w.x"], "samples": 1000, "minStep": 100},
        {"keys": ["nothing"]},
    ]
    sampled = read(admin, run_path, specs=[json.dumps(spec) for spec in specs])["sampledHistory"]
    assert sampled[0] == [{"_step": s, "w": {"x": s // 2}} for s in (0, 500, 1000, 1480, 1980)]
    assert sampled[1] == [{"_step": 4, "v": 2}, {"_step": 6, "v": "NaN"}, {"_step": 8, "v": 4}]
    assert sampled[2] == [{"w.x": i} for i in range(50, 1000, 10)]
    assert sampled[3] == []


def test_step_ranges_pass_over_missing_lines(admin: Client, run_path: RunPath) -> None:
    """Line numbers never sent (a gap) do not upset the bisection that finds a step range."""
    lines = [history_line(i) for i in range(40)]
    stream(admin, run_path, {"wandb-history.jsonl": {"offset": 0, "content": lines[:10]}})
    stream(admin, run_path, {"wandb-history.jsonl": {"offset": 20, "content": lines[20:]}})
    for low, high, expected in [
        (10, 45, lines[5:10] + lines[20:23]),
        (19, 40, []),
        (0, 1, lines[:1]),
        (78, 99, lines[39:]),
    ]:
        assert read(admin, run_path, min=low, max=high)["history"] == expected, (low, high)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("not json", "`specs[0]` is not valid JSON"),
        ("[1]", "`specs[0]` must be a JSON object"),
        ('{"keys": []}', "`specs[0].keys` must be a non-empty list of strings"),
        ('{"keys": ["a"], "samples": -1}', "`specs[0].samples` must be a non-negative integer"),
        ('{"keys": ["a"], "minStep": "1"}', "`specs[0].minStep` must be an integer"),
    ],
)
def test_bad_specs_are_refused(admin: Client, run_path: RunPath, spec: str, message: str) -> None:
    _, project, run = run_path
    query = 'query($s: [JSONString!]!) { project(name: "%s") { run(name: "%s") { sampledHistory(specs: $s) } } }'
    error = admin.gql_error(query % (project, run), {"s": [spec]})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and message in error["message"]


def test_a_run_without_history(admin: Client, run_path: RunPath) -> None:
    run = read(admin, run_path, specs=['{"keys": ["a"]}'])
    assert run["historyKeys"] is None and run["history"] == [] and run["sampledHistory"] == [[]]
    assert run["parquetHistory"]["liveData"] == [] and run["events"] == []


@pytest.mark.parametrize(("count", "samples"), [(10, 3), (1000, 7), (501, 500), (5, 1), (4, 4)])
def test_evenly_spaced(count: int, samples: int) -> None:
    picks = evenly_spaced(count, samples)
    if count <= samples:
        assert picks is None
        return
    assert picks is not None and len(picks) == samples == len(set(picks)) and picks == sorted(picks)
    assert picks[0] == 0 and (samples == 1 or picks[-1] == count - 1)


@pytest.mark.parametrize(("count", "samples", "room"), [(10_000, 10, 40), (1_001, 7, 28), (50, 10, 40), (3, 1, 4)])
def test_sample_evenly_in_one_pass(count: int, samples: int, room: int) -> None:
    picked = sample_evenly(iter(range(count)), samples, room)
    assert len(picked) == min(count, samples) and picked == sorted(set(picked))
    assert picked[0] == 0 and (samples == 1 or picked[-1] == count - 1)
    gaps = [b - a for a, b in itertools.pairwise(picked)]
    if gaps:  # each within half a gap of the even spacing
        ideal = (count - 1) / (len(picked) - 1)
        assert all(0.5 * ideal <= gap <= 1.5 * ideal for gap in gaps), gaps


def test_migration_fills_history_keys(tmp_path: Path) -> None:
    """History streamed before historyKeys were kept has them after the upgrade, and is served by step."""
    data_dir = tmp_path / "data"
    db = database_at_revision(data_dir, "0005")
    for run_id, count in ((1, 1500), (2, 3)):  # more lines than one batch of the migration, then another run
        db.execute(
            "INSERT INTO runs (id, project_id, name, state, created_at, updated_at, user_id, history_line_count)"
            " VALUES (?, 1, ?, 'finished', '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1, ?)",
            (run_id, f"r{run_id}", count),
        )
        db.executemany(
            "INSERT INTO run_lines (run_id, kind, line_no, content) VALUES (?, 0, ?, ?)",
            [(run_id, i, history_line(i)) for i in range(count)],
        )
    db.execute("INSERT INTO run_lines (run_id, kind, line_no, content) VALUES (1, 2, 0, 'console')")
    db.commit()
    db.close()

    server = LiveServer(data_dir, api_key=ADMIN_KEY).start()
    try:
        client = Client(server.base_url, ADMIN_KEY)
        run = read(client, ("admin", "old", "r1"), min=2990, max=3000)
        assert [json.loads(line)["_step"] for line in run["history"]] == [2990, 2992, 2994, 2996, 2998]
        assert run["historyKeys"]["lastStep"] == 2998
        assert run["historyKeys"]["keys"]["v"]["typeCounts"] == [{"type": "number", "count": 1500}]
        other = read(client, ("admin", "old", "r2"))
        assert other["historyKeys"]["lastStep"] == 4 and len(other["history"]) == 3
    finally:
        server.stop()
