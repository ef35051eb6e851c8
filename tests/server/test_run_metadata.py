"""Run metadata written the way W&B's clients write it: upsertBucket by node id or by name, and read back."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest

from tests.support import UPSERT, Client, LiveServer

# W&B 0.31's run.update() and HTTPSummary's write, as recorded (docs/wandb-wire-runs.md).
WANDB_RUN_UPDATE = """
mutation UpsertBucket($id: String!, $description: String, $display_name: String, $notes: String, $tags: [String!],
                      $config: JSONString!, $groupName: String, $jobType: String) {
  upsertBucket(input: {id: $id, description: $description, displayName: $display_name, notes: $notes, tags: $tags,
                       config: $config, groupName: $groupName, jobType: $jobType}) {
    bucket { id name displayName state config group jobType tags notes description createdAt heartbeatAt
             summaryMetrics user { name username } }
  }
}
"""
WANDB_SUMMARY_WRITE = """
mutation UpsertBucket( $id: String, $summaryMetrics: JSONString) {
  upsertBucket(input: { id: $id, summaryMetrics: $summaryMetrics}) { bucket { id } } }
"""
BY_ID = """
mutation ($input: UpsertBucketInput!) {
  upsertBucket(input: $input) { bucket { id name state config summaryMetrics tags group jobType displayName notes
                                         description heartbeatAt } inserted } }
"""
RUN = """
query ($project: String!, $name: String!) {
  project(name: $project) { run(name: $name) { id name displayName state config summaryMetrics tags group jobType
                                               notes description createdAt heartbeatAt user { name username } } } }
"""


def _run(client: Client, project: str, name: str) -> dict[str, Any]:
    return client.gql(RUN, {"project": project, "name": name})["project"]["run"]  # type: ignore[no-any-return]


def _by_id(client: Client, **input: Any) -> dict[str, Any]:
    return client.gql(BY_ID, {"input": input})["upsertBucket"]  # type: ignore[no-any-return]


def test_the_wandb_clients_run_update_and_summary_write_by_node_id(admin: Client, unique: str) -> None:
    created = admin.make_run(f"p-{unique}", "r")["bucket"]
    node_id = created["id"]
    config = {"_wandb": {"value": {"cli_version": "0.31.0"}}, "lr": {"value": 0.1, "desc": None}}
    updated = admin.gql(
        WANDB_RUN_UPDATE,
        {
            "id": node_id,
            "description": "desc",
            "display_name": "pretty",
            "notes": "some notes",
            "tags": ["a", "b"],
            "config": json.dumps(config),
            "groupName": "g1",
            "jobType": "train",
            # run.update() also sends these, undeclared; the server must ignore them.
            "entity": "admin",
            "project": f"p-{unique}",
            "name": "r",
        },
    )["upsertBucket"]["bucket"]
    assert updated["id"] == node_id and updated["name"] == "r"
    assert admin.gql(WANDB_SUMMARY_WRITE, {"id": node_id, "summaryMetrics": '{"acc":0.9,"eval":{"loss":0.2}}'})
    run = _run(admin, f"p-{unique}", "r")
    assert json.loads(run["config"]) == config
    assert json.loads(run["summaryMetrics"]) == {"acc": 0.9, "eval": {"loss": 0.2}}
    assert (run["displayName"], run["notes"], run["description"]) == ("pretty", "some notes", "desc")
    assert (run["tags"], run["group"], run["jobType"], run["state"]) == (["a", "b"], "g1", "train", "running")
    assert run["user"] == {"name": "admin", "username": "admin"}
    assert run["createdAt"].endswith("Z") and run["heartbeatAt"].endswith("Z")


def test_summary_and_config_are_replaced_not_merged(admin: Client, unique: str) -> None:
    node_id = admin.make_run(f"p-{unique}", "r")["bucket"]["id"]
    _by_id(admin, id=node_id, summaryMetrics='{"acc": 0.9, "k": 5}', config='{"a": 1, "b": 2}')
    # W&B's HTTPSummary sends its whole dict: a key deleted on the client is gone only if the server replaces.
    answer = _by_id(admin, id=node_id, summaryMetrics='{"acc": 0.95}', config='{"a": 3}')
    assert json.loads(answer["bucket"]["summaryMetrics"]) == {"acc": 0.95}
    assert json.loads(answer["bucket"]["config"]) == {"a": {"value": 3}}
    assert answer["inserted"] is False


def test_config_is_normalised_to_the_wandb_form(admin: Client, unique: str) -> None:
    node_id = admin.make_run(f"p-{unique}", "r")["bucket"]["id"]
    sent = {
        "plain": 0.01,
        "wrapped": {"value": "adam", "desc": "the optimizer"},
        "nested": {"lr": 0.1, "betas": [0.9, 0.99]},  # an object without "value" is a plain entry
        "listed": [1, 2],
        "null": None,
    }
    answer = _by_id(admin, id=node_id, config=json.dumps(sent))
    assert json.loads(answer["bucket"]["config"]) == {
        "plain": {"value": 0.01},
        "wrapped": {"value": "adam", "desc": "the optimizer"},
        "nested": {"value": {"lr": 0.1, "betas": [0.9, 0.99]}},
        "listed": {"value": [1, 2]},
        "null": {"value": None},
    }
    by_name = admin.gql(UPSERT, {"project": f"p-{unique}", "name": "r", "config": '{"x": true}'})
    assert json.loads(by_name["upsertBucket"]["bucket"]["config"]) == {"x": {"value": True}}


def test_non_finite_numbers_stay_numbers(admin: Client, unique: str) -> None:
    """W&B's client writes NaN and ±Infinity as Python's literals; they stay numbers, as filters compare them."""
    node_id = admin.make_run(f"p-{unique}", "r")["bucket"]["id"]
    answer = _by_id(admin, id=node_id, summaryMetrics='{"loss": NaN, "best": -Infinity, "huge": 1e999}')
    summary = json.loads(answer["bucket"]["summaryMetrics"])
    assert math.isnan(summary["loss"]) and summary["best"] == -math.inf and summary["huge"] == math.inf


def test_fields_left_out_are_kept_and_empty_text_clears(admin: Client, unique: str) -> None:
    node_id = admin.make_run(f"p-{unique}", "r")["bucket"]["id"]
    _by_id(
        admin, id=node_id, groupName="g", jobType="train", displayName="nice", notes="n", tags=["t"], state="finished"
    )
    heartbeat = _run(admin, f"p-{unique}", "r")["heartbeatAt"]
    answer = _by_id(admin, id=node_id, notes="changed")["bucket"]
    assert (answer["group"], answer["jobType"], answer["displayName"], answer["notes"]) == (
        "g",
        "train",
        "nice",
        "changed",
    )
    assert (answer["tags"], answer["state"]) == (["t"], "finished")
    assert answer["heartbeatAt"] == heartbeat  # an edit by id is not the run reporting in
    cleared = _by_id(admin, id=node_id, groupName="", displayName="", tags=[])["bucket"]
    assert (cleared["group"], cleared["displayName"], cleared["tags"]) == (None, "r", [])


@pytest.mark.parametrize(
    ("input", "code", "words"),
    [
        ({"config": "[1, 2]"}, "BAD_USER_INPUT", "config"),
        ({"config": "{nope"}, "BAD_USER_INPUT", "config"),
        ({"summaryMetrics": '"text"'}, "BAD_USER_INPUT", "summaryMetrics"),
        ({"state": "exploded"}, "BAD_USER_INPUT", "state"),
        ({"tags": ["ok", 3]}, "BAD_USER_INPUT", "tags"),
        ({"tags": [""]}, "BAD_USER_INPUT", "tags"),
        ({"tags": ["x" * 257]}, "BAD_USER_INPUT", "tags"),
        ({"notes": 5}, "BAD_USER_INPUT", "notes"),
        ({"name": "other"}, "BAD_USER_INPUT", "name"),
        ({"modelName": "other"}, "BAD_USER_INPUT", "modelName"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    admin: Client, unique: str, input: dict[str, Any], code: str, words: str
) -> None:
    node_id = admin.make_run(f"p-{unique}", "r")["bucket"]["id"]
    error = admin.gql_error(BY_ID, {"input": {"id": node_id, "notes": "should not land", **input}})
    assert error["extensions"]["code"] == code
    assert words in error["message"] and "unknown field" not in error["message"]
    assert _run(admin, f"p-{unique}", "r")["notes"] is None


def test_node_ids_of_another_type_unknown_or_another_users_run(
    live_server: LiveServer, admin: Client, unique: str
) -> None:
    file_id = base64.b64encode(b"File:1").decode()
    error = admin.gql_error(BY_ID, {"input": {"id": file_id, "notes": "x"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "Run id" in error["message"]
    assert admin.gql_error(BY_ID, {"input": {"id": "not base64!", "notes": "x"}})["extensions"]["code"] == (
        "BAD_USER_INPUT"
    )
    unknown = admin.gql_error(BY_ID, {"input": {"id": base64.b64encode(b"Run:987654321").decode(), "notes": "x"}})
    assert unknown["extensions"]["code"] == "NOT_FOUND"

    bob = Client(live_server.base_url, live_server.add_user(f"bob{unique}"))
    bobs = bob.make_run(f"p-{unique}", "r")["bucket"]["id"]
    refused = admin.gql_error(BY_ID, {"input": {"id": bobs, "notes": "admin was here"}})
    # Another user's run answers exactly as a missing one: nothing tells it exists.
    assert refused["extensions"]["code"] == "NOT_FOUND"
    assert refused["message"].replace(bobs, "X") == unknown["message"].replace(
        base64.b64encode(b"Run:987654321").decode(), "X"
    )
    assert _run(bob, f"p-{unique}", "r")["notes"] is None
