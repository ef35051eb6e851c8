"""Run metadata with the real `wandb` client (0.31.x): run.update(), run.summary.update(), and
wandb.Api().runs(filters=, order=), read back through both clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import UPSERT, Client, GraphQLRecorder, LiveServer
from tests.support.wandb_env import point_wandb_at

wandb = pytest.importorskip("wandb")


def test_wandb_run_update_and_summary_update_read_back_by_both_clients(
    wandb_api: Any, our_api: wandb_files.Api, unique: str
) -> None:
    path = f"admin/p{unique}/r"
    our_api.create_run(run_id="r", project=f"p{unique}", config={"lr": 0.01, "drop": True}, summary={"old": 1})
    theirs = wandb_api.run(path)
    assert theirs.config == {"lr": 0.01, "drop": True}
    theirs.config["lr"] = 0.1
    theirs.config["optimizer"] = {"name": "adam"}
    del theirs.config["drop"]
    theirs.tags = ["x", "y"]
    theirs.group = "g"
    theirs.job_type = "train"
    theirs.name = "pretty"
    theirs.notes = "some notes"
    theirs.description = "desc"
    theirs.update()
    theirs.summary.update({"acc": 0.9, "eval": {"loss": 0.2}})
    theirs.summary["k"] = 5
    theirs.summary.update()
    del theirs.summary["old"]
    theirs.summary.update()

    again = wandb.Api().run(path)  # a new Api: wandb.Api caches the runs it has read
    ours = our_api.run(path)
    for run in (again, ours):
        assert run.config == {"lr": 0.1, "optimizer": {"name": "adam"}}
        assert run.tags == ["x", "y"]
        assert (run.group, run.job_type, run.name, run.notes, run.description) == (
            "g",
            "train",
            "pretty",
            "some notes",
            "desc",
        )
        assert run.state == "running"
    # wandb shows nested summary values as its own SummarySubDict; summary_metrics is the plain dict.
    assert again.summary_metrics == dict(ours.summary) == {"acc": 0.9, "eval": {"loss": 0.2}, "k": 5}
    assert again.summary["eval"]["loss"] == 0.2
    assert ours.display_name == "pretty" and ours.user is not None and ours.user.username == "admin"


def test_our_update_is_what_wandb_reads(wandb_api: Any, our_api: wandb_files.Api, unique: str) -> None:
    run = our_api.create_run(run_id="r", project=f"p{unique}")
    run.config.update({"lr": 0.001, "layers": [64, 64]})
    run.tags = ["ours"]
    run.job_type = "eval"
    run.display_name = "from ours"
    run.update()
    run.summary.update(acc=0.75)
    theirs = wandb_api.run(f"admin/p{unique}/r")
    assert theirs.config == {"lr": 0.001, "layers": [64, 64]}
    assert dict(theirs.summary) == {"acc": 0.75}
    assert (theirs.tags, theirs.job_type, theirs.name) == (["ours"], "eval", "from ours")


@pytest.fixture
def recorded_wandb(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Any, wandb_files.Api, GraphQLRecorder]]:
    """wandb.Api() and our Api, both through one relay that keeps every GraphQL body."""
    with GraphQLRecorder(live_server.base_url) as recorder:
        point_wandb_at(monkeypatch, recorder.url, live_server.api_key, tmp_path)
        yield wandb.Api(), wandb_files.Api(api_key=live_server.api_key, base_url=recorder.url), recorder


def test_both_clients_send_the_same_runs_variables(
    recorded_wandb: tuple[Any, wandb_files.Api, GraphQLRecorder], unique: str
) -> None:
    theirs, ours, recorder = recorded_wandb
    ours.create_run(run_id="r", project=f"p{unique}")
    filters = {"$or": [{"config.lr": {"$lte": 0.01}}, {"tags": {"$in": ["a", "b"]}}], "display_name": {"$regex": "^x"}}
    sent = []
    for client in (theirs, ours):
        for kwargs in ({}, {"filters": filters, "order": "-summary_metrics.acc"}):
            recorder.bodies.clear()
            assert len(client.runs(f"admin/p{unique}", per_page=3, **kwargs)) == (0 if kwargs else 1)
            [body] = [b for b in recorder.bodies if "runCount" in b["query"]]
            sent.append({k: body["variables"].get(k) for k in ("filters", "order", "perPage", "cursor")})
    assert sent[:2] == sent[2:]
    assert sent[0] == {"filters": "{}", "order": "+created_at", "perPage": 3, "cursor": None}
    assert json.loads(sent[1]["filters"]) == filters


# --- evaluated by the server ------------------------------------------------------------------------------


def test_wandb_runs_with_filters_and_order(
    wandb_api: Any, our_api: wandb_files.Api, live_server: LiveServer, unique: str
) -> None:
    project = f"p{unique}"
    raw = Client(live_server.base_url, live_server.api_key)
    specs = {
        "r1": ({"model": "resnet", "lr": 0.01}, {"acc": 0.7}, ["t"], "finished"),
        "r2": ({"model": "resnet", "lr": 0.1}, {"acc": 0.9}, [], "finished"),
        "r3": ({"model": "vit", "lr": 0.01}, {"acc": 0.95}, ["t"], "finished"),
        "r4": ({"model": "resnet", "lr": 0.01}, {"acc": 0.8}, [], "crashed"),
    }
    for run_id, (config, summary, tags, state) in specs.items():
        our_api.create_run(run_id=run_id, project=project, config=config, summary=summary, tags=tags)
        raw.gql(UPSERT, {"project": project, "name": run_id, "state": state})
    selected = wandb_api.runs(
        f"admin/{project}", filters={"config.model": "resnet", "state": "finished"}, order="-summary_metrics.acc"
    )
    assert len(selected) == 2
    assert [r.id for r in selected] == ["r2", "r1"]
    assert [r.summary["acc"] for r in selected] == [0.9, 0.7]
    tagged = wandb_api.runs(f"admin/{project}", filters={"tags": "t"}, order="+config.lr.value", per_page=1)
    assert sorted(r.id for r in tagged) == ["r1", "r3"] and len(tagged) == 2
    newest = wandb_api.runs(f"admin/{project}", filters={"$or": [{"name": "r1"}, {"name": "r4"}]}, order="-created_at")
    assert [r.id for r in newest] == ["r4", "r1"]
