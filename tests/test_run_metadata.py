"""Run metadata through the SDK: create_run with metadata, Run's W&B attributes, Run.update(), summary.update(),
and api.runs(filters=, order=) as W&B's client sends them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import wandb_files
from tests.support import UPSERT, Client, GraphQLRecorder, LiveServer, free_port
from wandb_files import documents
from wandb_files.errors import NotFoundError


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.fixture
def recorded(live_server: LiveServer) -> Iterator[tuple[wandb_files.Api, GraphQLRecorder]]:
    """An Api whose every GraphQL body is kept."""
    with GraphQLRecorder(live_server.base_url) as recorder:
        yield wandb_files.Api(api_key=live_server.api_key, base_url=recorder.url), recorder


def _stored_config(api: wandb_files.Api, run: wandb_files.Run) -> dict[str, Any]:
    """The config as the server stores it (W&B's wire form), read with a query of its own."""
    data = api.client.execute(documents.RUN, {"entity": run.entity, "project": run.project, "name": run.id})
    return json.loads(data["project"]["run"]["config"])  # type: ignore[no-any-return]


def _mutations(recorder: GraphQLRecorder) -> list[dict[str, Any]]:
    return [b for b in recorder.bodies if str(b.get("query", "")).lstrip().startswith("mutation")]


def test_create_run_with_metadata_then_api_run_shows_it(api: wandb_files.Api, unique: str) -> None:
    created = api.create_run(
        run_id="r1",
        project=f"p{unique}",
        display_name="nice",
        config={"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}},
        summary={"acc": 0.5, "eval": {"loss": 0.25}},
        tags=["baseline", "gpu"],
        group="sweep-1",
        job_type="train",
        notes="first try",
    )
    for run in (created, api.run(f"p{unique}/r1")):
        assert run.config == {"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}}
        assert dict(run.summary) == {"acc": 0.5, "eval": {"loss": 0.25}}
        assert run.tags == ["baseline", "gpu"]
        assert (run.group, run.job_type, run.notes, run.description) == ("sweep-1", "train", "first try", None)
        assert (run.id, run.name, run.display_name, run.state) == ("r1", "nice", "nice", "running")
        assert run.user is not None and (run.user.username, run.user.name) == ("admin", "admin")
        assert run.created_at and run.created_at.endswith("Z") and run.heartbeat_at
    # Stored as W&B's clients store it, so wandb.Api and the filters read the value at config.<key>.value.
    assert _stored_config(api, created) == {
        "lr": {"value": 0.01, "desc": None},
        "optimizer": {"value": {"name": "adam", "betas": [0.9, 0.99]}, "desc": None},
    }


def test_run_update_sends_only_what_changed_in_one_request(
    api: wandb_files.Api, recorded: tuple[wandb_files.Api, GraphQLRecorder], unique: str
) -> None:
    api.create_run(
        run_id="r", project=f"p{unique}", config={"lr": 0.01, "drop": 1}, tags=["a"], group="g", notes="n", job_type="j"
    )
    ours, recorder = recorded
    run = ours.run(f"p{unique}/r")
    run.config["lr"] = 0.1
    del run.config["drop"]
    run.config["new"] = {"nested": True}
    run.tags.append("b")
    run.name = "renamed"
    run.notes = None  # cleared
    # Meanwhile another client changes the job type: our update must not undo it.
    other = api.run(f"p{unique}/r")
    other.job_type = "eval"
    other.update()
    recorder.bodies.clear()
    run.update()
    [sent] = _mutations(recorder)
    assert sent["variables"]["id"] == run.storage_id
    assert set(sent["variables"]) == {"id", "config", "tags", "displayName", "notes"}
    assert sent["variables"]["notes"] == ""
    assert json.loads(sent["variables"]["config"]) == {
        "lr": {"value": 0.1, "desc": None},
        "new": {"value": {"nested": True}, "desc": None},
    }
    again = api.run(f"p{unique}/r")
    assert again.config == {"lr": 0.1, "new": {"nested": True}}
    assert (again.tags, again.name, again.notes) == (["a", "b"], "renamed", None)
    assert (again.group, again.job_type) == ("g", "eval")
    recorder.bodies.clear()
    run.update()  # nothing changed since
    assert _mutations(recorder) == []


def test_summary_update_writes_the_whole_summary_as_wandb_does(
    api: wandb_files.Api, recorded: tuple[wandb_files.Api, GraphQLRecorder], unique: str
) -> None:
    api.create_run(run_id="r", project=f"p{unique}", summary={"acc": 0.5, "old": 1})
    ours, recorder = recorded
    run = ours.run(f"p{unique}/r")
    run.summary.update({"acc": 0.9, "eval": {"loss": 0.2}})
    assert dict(api.run(f"p{unique}/r").summary) == {"acc": 0.9, "old": 1, "eval": {"loss": 0.2}}
    run.summary["k"] = 5  # local until update()
    assert "k" not in api.run(f"p{unique}/r").summary
    del run.summary["old"]
    run.summary.update()
    assert dict(api.run(f"p{unique}/r").summary) == {"acc": 0.9, "eval": {"loss": 0.2}, "k": 5}
    sent = [m["variables"] for m in _mutations(recorder)]
    assert sent[-1] == {"id": run.storage_id, "summaryMetrics": json.dumps(dict(run.summary))}
    # A summary change left for Run.update() goes in its one request, beside the other fields.
    run.summary["best"] = 1.0
    run.group = "g"
    recorder.bodies.clear()
    run.update()
    [mutation] = _mutations(recorder)
    assert set(mutation["variables"]) == {"id", "groupName", "summaryMetrics"}
    assert api.run(f"p{unique}/r").summary["best"] == 1.0


def test_a_summary_write_keeps_other_local_edits_for_update(api: wandb_files.Api, unique: str) -> None:
    run = api.create_run(run_id="r", project=f"p{unique}", group="g")
    run.group = "changed"
    run.summary.update({"acc": 1})
    assert run.group == "changed" and api.run(f"p{unique}/r").group == "g"
    run.update()
    assert api.run(f"p{unique}/r").group == "changed"


def test_wandb_internal_config_keys_are_hidden_and_kept(api: wandb_files.Api, unique: str) -> None:
    run = api.create_run(run_id="r", project=f"p{unique}")
    raw = {"_wandb": {"value": {"cli_version": "0.31.0"}}, "wandb_version": 1, "lr": {"value": 0.1, "desc": "rate"}}
    api.client.execute(documents.UPDATE_RUN, {"id": run.storage_id, "config": json.dumps(raw)})
    run = api.run(f"p{unique}/r")
    assert run.config == {"lr": 0.1}
    run.config["bs"] = 32
    run.update()
    assert _stored_config(api, run) == {
        "_wandb": {"value": {"cli_version": "0.31.0"}},
        "wandb_version": {"value": 1},
        "lr": {"value": 0.1, "desc": "rate"},
        "bs": {"value": 32, "desc": None},
    }


def test_bad_metadata_is_refused_before_anything_is_sent(api: wandb_files.Api, unique: str) -> None:
    for kwargs in (
        {"config": [("lr", 1)]},
        {"config": {"x": object()}},
        {"config": {1: "x"}},
        {"summary": "acc=1"},
        {"tags": "one-string"},
        {"tags": ["ok", 2]},
        {"group": 3},
    ):
        with pytest.raises(TypeError):
            api.create_run(project=f"p{unique}", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        len(api.runs(f"p{unique}"))  # nothing was created, not even the project
    run = api.create_run(run_id="r", project=f"p{unique}")
    with pytest.raises(TypeError):
        run.tags = "abc"
    with pytest.raises(TypeError):
        run.job_type = 1  # type: ignore[assignment]
    run.config["x"] = {1, 2}
    with pytest.raises(TypeError, match="run.config"):
        run.update()


def test_runs_send_filters_and_order_as_wandb_does(
    recorded: tuple[wandb_files.Api, GraphQLRecorder], unique: str
) -> None:
    ours, recorder = recorded
    ids = [ours.create_run(run_id=f"r{i}", project=f"p{unique}").id for i in range(3)]
    runs = ours.runs(f"p{unique}", per_page=2)
    assert [r.id for r in runs] == ids  # W&B's default order: oldest first
    assert recorder.bodies[-1]["variables"]["filters"] == "{}"
    assert recorder.bodies[-1]["variables"]["order"] == "+created_at"
    assert [r.id for r in ours.runs(f"p{unique}", order="-created_at")] == ids[::-1]
    filters = {"$and": [{"config.lr": {"$gt": 0.01}}, {"tags": "a"}], "state": "finished"}
    recorder.bodies.clear()
    assert len(ours.runs(f"p{unique}", filters=filters, order="-summary_metrics.acc", per_page=7)) == 0
    variables = recorder.bodies[-1]["variables"]
    assert variables["filters"] == json.dumps(filters)  # the very string W&B's client sends
    assert (variables["order"], variables["perPage"]) == ("-summary_metrics.acc", 7)


@pytest.mark.parametrize(
    ("filters", "place"),
    [
        ({"$and": [{"state": "finished"}, {"config.lr": {"$gtt": 1}}]}, 'filters["$and"][1]["config.lr"]["$gtt"]'),
        ({"$where": "1"}, 'filters["$where"]'),
        ({"$gt": 1}, 'filters["$gt"]'),
        ({"state": {"$and": [{"a": 1}]}}, 'filters["state"]["$and"]'),
        ({"state": {"$eq": "x", "plain": 1}}, 'filters["state"]["plain"]'),
        ({"$or": []}, 'filters["$or"]'),
        ({"$or": {"a": 1}}, 'filters["$or"]'),
        ({"$nor": [{"a": 1}, "b"]}, 'filters["$nor"][1]'),
        ({"tags": {"$in": "a"}}, 'filters["tags"]["$in"]'),
        ({"tags": {"$exists": 1}}, 'filters["tags"]["$exists"]'),
        ({"name": {"$regex": 5}}, 'filters["name"]["$regex"]'),
        ({"config.x": {1, 2}}, 'filters["config.x"]'),
        ({"config.x": {"$in": [1, float("nan")]}}, 'filters["config.x"]["$in"][1]'),
        ({"config.x": {"$eq": {"a": object()}}}, 'filters["config.x"]["$eq"]["a"]'),
        ({3: "x"}, "filters[3]"),
        ({"$and": [{("t",): 1}]}, "filters[\"$and\"][0][('t',)]"),
    ],
)
def test_malformed_filters_are_a_value_error_naming_the_place(filters: Any, place: str) -> None:
    # A server that is not there: any request would be a TransportError, not the ValueError expected.
    api = wandb_files.Api(api_key="k", base_url=f"http://127.0.0.1:{free_port()}", overrides={"entity": "e"})
    with pytest.raises(ValueError) as info:
        api.runs("e/p", filters=filters)
    assert place in str(info.value)


def test_filters_and_order_of_the_wrong_type_are_type_errors() -> None:
    api = wandb_files.Api(api_key="k", base_url=f"http://127.0.0.1:{free_port()}", overrides={"entity": "e"})
    with pytest.raises(TypeError, match="filters"):
        api.runs("e/p", filters="state=finished")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="order"):
        api.runs("e/p", order=["-created_at"])  # type: ignore[arg-type]


# --- evaluated by the server ------------------------------------------------------------------------------


def test_runs_filters_select_and_order_like_wandb(api: wandb_files.Api, live_server: LiveServer, unique: str) -> None:
    project = f"p{unique}"
    raw = Client(live_server.base_url, live_server.api_key)  # the SDK has no state setter: W&B's runs set it
    specs = {
        "r1": ({"model": "resnet", "lr": 0.01}, {"acc": 0.7}, ["t"], "finished"),
        "r2": ({"model": "resnet", "lr": 0.1}, {"acc": 0.9}, [], "finished"),
        "r3": ({"model": "vit", "lr": 0.01}, {"acc": 0.95}, [], "finished"),
        "r4": ({"model": "resnet", "lr": 0.01}, {"acc": 0.8}, [], "crashed"),
    }
    for run_id, (config, summary, tags, state) in specs.items():
        api.create_run(run_id=run_id, project=project, config=config, summary=summary, tags=tags)
        raw.gql(UPSERT, {"project": project, "name": run_id, "state": state})
    selected = api.runs(project, filters={"config.model": "resnet", "state": "finished"}, order="-summary_metrics.acc")
    assert len(selected) == 2
    assert [r.id for r in selected] == ["r2", "r1"]
    wrapped = api.runs(project, filters={"config.lr.value": 0.01, "tags": {"$nin": ["t"]}}, order="+name")
    assert [r.id for r in wrapped] == ["r3", "r4"]
    assert len(api.runs(project, filters={"summary_metrics.acc": {"$gt": 0.85}})) == 2
