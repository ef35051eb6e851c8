"""Choosing runs on the command line: `wandb-files runs`, and `--filter`/`--order` on `download` and `sync`,
run as a user runs them against the live server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, cli, write_files

RUNS = {
    # run id: (config, summary, tags, group, job type, state)
    "r-a": ({"model": "resnet", "lr": 0.1, "opt": {"name": "sgd"}}, {"acc": 0.71}, ["base"], "g1", "train", "finished"),
    "r-b": ({"model": "resnet", "lr": 0.01, "opt": {"name": "adam"}}, {"acc": 0.93}, ["best", "x"], "g1", "train", "finished"),
    "r-c": ({"model": "vit", "lr": 0.01}, {"acc": 0.88}, ["best"], "g2", "eval", "running"),
    "r-d": ({"model": "resnet", "lr": 0.001}, {"acc": 0.52}, [], None, None, "crashed"),
}  # fmt: skip
FILES = {"config.yaml": b"lr: 1\n", "media/a.png": b"A" * 300, "logs/out.log": b"x\n"}


@pytest.fixture
def project(live_server: LiveServer, tmp_path: Path, unique: str) -> str:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    source = tmp_path / "src"
    write_files(source, FILES)
    for run_id, (config, summary, tags, group, job_type, state) in RUNS.items():
        run = api.create_run(
            run_id, f"choose{unique}", config=config, summary=summary, tags=tags, group=group, job_type=job_type
        )
        run.upload_files([source / n for n in FILES], root=source, progress=False)
        if state != "running":
            _set_state(live_server, f"choose{unique}", run_id, state)
    return f"admin/choose{unique}"


def _set_state(server: LiveServer, project: str, run_id: str, state: str) -> None:
    from tests.support import Client

    Client(server.base_url, server.api_key).gql(
        "mutation($p: String, $n: String, $s: String) "
        '{ upsertBucket(input: {modelName: $p, name: $n, entityName: "admin", state: $s}) { bucket { id } } }',
        {"p": project, "n": run_id, "s": state},
    )


def _env(server: LiveServer) -> dict[str, str]:
    return {**os.environ, "WANDB_BASE_URL": server.base_url, "WANDB_API_KEY": server.api_key}


def _tree(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".wandb-files" not in p.parts
    )


def test_runs_lists_the_selected_runs_with_their_metadata_in_the_servers_order(
    live_server: LiveServer, project: str
) -> None:
    env = _env(live_server)
    resnet = '{"config.model": "resnet", "state": "finished"}'
    table = cli("runs", project, "--filter", resnet, "--order", "-summary_metrics.acc", env=env).stdout
    lines = table.splitlines()
    header = lines[0]
    for column in ("id", "name", "state", "created (UTC)", "tags", "group", "job type", "config.model", "summary.acc"):
        assert column in header, header
    rows = [line for line in lines if line.split() and line.split()[0].startswith("r-")]
    assert [row.split()[0] for row in rows] == ["r-b", "r-a"]  # best accuracy first; r-c and r-d not selected
    assert "best,x" in rows[0] and "0.93" in rows[0] and "finished" in rows[0] and "train" in rows[0]
    assert "config.opt.name" in header and "adam" in rows[0]  # nested config keys as dotted columns
    assert lines[-1] == f"2 runs in {project}"

    records = [
        json.loads(line)
        for line in cli(
            "runs", project, "--order", "+config.lr", "--json", "--per-page", "1", env=env
        ).stdout.splitlines()
    ]
    assert [r["id"] for r in records][:1] == ["r-d"] and {r["id"] for r in records} == set(RUNS)
    b = next(r for r in records if r["id"] == "r-b")
    assert b["config"] == RUNS["r-b"][0] and b["summary"]["acc"] == 0.93 and b["tags"] == ["best", "x"]
    assert (
        b["group"] == "g1" and b["job_type"] == "train" and b["state"] == "finished" and b["path"] == f"{project}/r-b"
    )
    assert b["created_at"] and b["user"] == "admin"

    limited = cli("runs", project, "--filter", '{"tags": "best"}', "--order", "name", "--limit", "1", env=env).stdout
    assert [ln.split()[0] for ln in limited.splitlines() if ln.startswith("r-")] == ["r-b"]
    assert limited.splitlines()[-1] == f"1 of 2 runs in {project}"


@pytest.mark.parametrize("command", [["runs", "e/p"], ["download", "e/p"], ["sync", "e/p", "dest"]])
def test_bad_json_in_filter_is_a_usage_error_naming_the_option_and_where_before_any_request(
    command: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "k" * 40}
    broken = cli(*command, "--filter", '{"state": "finished",, }', env=env, check=False)
    assert broken.returncode == 2, broken.stderr
    assert "--filter" in broken.stderr and "line 1, column 22 (character 22)" in broken.stderr
    assert "Traceback" not in broken.stderr
    not_object = cli(*command, "--filter", '["state"]', env=env, check=False)
    assert not_object.returncode == 2 and "--filter" in not_object.stderr and "JSON object" in not_object.stderr
    operator = cli(*command, "--filter", '{"config.lr": {"$gtt": 1}}', env=env, check=False)
    assert operator.returncode == 2 and "$gtt" in operator.stderr and "--filter" in operator.stderr


def test_a_filter_or_order_the_server_refuses_is_one_line_naming_its_path(
    live_server: LiveServer, project: str
) -> None:
    env = _env(live_server)
    refused = cli("runs", project, "--filter", '{"$or": [{"state": "x"}, {"createdAt": {"$gt": "soon"}}]}', env=env,
                  check=False)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")
    assert "filters.$or[1].createdAt.$gt" in refused.stderr and "ISO 8601" in refused.stderr
    for command in (["download", project, "-o", "out"], ["sync", project, "out"]):
        also = cli(*command, "--filter", '{"tags": {"$gt": "a"}}', env=env, check=False)
        assert also.returncode == 2 and also.stderr.count("\n") == 1 and "filters.tags.$gt" in also.stderr
    order = cli("runs", project, "--order", "-color", env=env, check=False)
    assert order.returncode == 2 and order.stderr.count("\n") == 1 and "order" in order.stderr
    assert "cannot order by 'color'" in order.stderr


def test_download_of_a_project_takes_the_runs_the_filter_selects_into_a_folder_each(
    live_server: LiveServer, project: str, tmp_path: Path
) -> None:
    env, out = _env(live_server), tmp_path / "out"
    best = '{"tags": "best"}'
    plan = cli("download", project, "-o", str(out), "--filter", best, "--pattern", "media/*", "--dry-run", env=env)
    assert "would download r-b/media/a.png" in plan.stdout and "r-c/media/a.png" in plan.stdout
    assert "r-a" not in plan.stdout and not out.exists()

    done = cli("download", project, "-o", str(out), "--filter", best, "--no-progress", env=env).stdout
    assert "Downloaded 6 files" in done
    assert _tree(out) == sorted(f"{r}/{n}" for r in ("r-b", "r-c") for n in FILES)
    assert (out / "r-b" / "media" / "a.png").read_bytes() == FILES["media/a.png"]

    (out / "r-c" / "config.yaml").write_bytes(b"local edit")
    refused = cli("download", project, "-o", str(out), "--filter", best, "--pattern", "*.png", env=env, check=False)
    assert refused.returncode == 0  # the edited file is outside the pattern
    differs = cli("download", project, "-o", str(out), "--filter", best, env=env, check=False)
    assert differs.returncode == 2 and "--replace" in differs.stderr
    assert (out / "r-c" / "config.yaml").read_bytes() == b"local edit"

    one = cli("download", project, "-o", str(tmp_path / "one"), "--filter", '{"name": "r-d"}', "logs/out.log", env=env)
    assert "Downloaded 1 file" in one.stdout and _tree(tmp_path / "one") == ["r-d/logs/out.log"]
    nothing = cli("download", project, "-o", str(tmp_path / "none"), "--filter", '{"state": "killed"}', env=env)
    assert "No files to download in 0 chosen runs" in nothing.stdout

    run_path = cli("download", f"{project}/r-a", "--filter", best, env=env, check=False)
    assert run_path.returncode == 2 and "entity/project" in run_path.stderr


def test_sync_with_a_filter_mirrors_only_the_selected_runs_and_delete_keeps_the_others(
    live_server: LiveServer, project: str, tmp_path: Path
) -> None:
    env, dest = _env(live_server), tmp_path / "mirror"
    cli("sync", project, str(dest), "--no-progress", env=env)
    assert _tree(dest) == sorted(f"{r}/{n}" for r in RUNS for n in FILES)

    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    for run_id in ("r-a", "r-b"):  # both lose a file on the server; only r-b is selected
        api.run(f"{project}/{run_id}").delete_files(["logs/out.log"])
    out = cli("sync", project, str(dest), "--filter", '{"config.lr": 0.01, "config.model": "resnet"}', "--delete",
              env=env).stdout  # fmt: skip
    assert "deleted 1" in out
    assert not (dest / "r-b" / "logs" / "out.log").exists()
    assert (dest / "r-a" / "logs" / "out.log").exists()  # not selected: left alone, though the server lost it
    assert all((dest / r / "config.yaml").exists() for r in RUNS)  # unselected runs are not deleted
