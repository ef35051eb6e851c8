"""Projects and runs: upsertBucket, lookups, run paging."""

from __future__ import annotations

import base64
import json
import re

from tests.support import UPSERT, Client

RUN_QUERY = """#graphql
query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) { run(name: $name) { projectId ...RunFragment } } }
fragment RunFragment on Run { id tags name displayName sweepName state config group jobType commit readOnly
  createdAt heartbeatAt description notes systemMetrics summaryMetrics historyLineCount
  user { name username } historyKeys }
"""

RUNS_QUERY = """
query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String,
           $filters: JSONString) {
  project(name: $project, entityName: $entity) { internalId runCount(filters: $filters) readOnly
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges { node { projectId name user { name } } cursor } pageInfo { endCursor hasNextPage } } } }
"""


def test_upsert_creates_project_and_run_then_updates(admin: Client, unique: str) -> None:
    project = f"p-{unique}"
    first = admin.gql(UPSERT, {"project": project, "name": "run1", "config": '{"lr": 0.1}', "tags": ["a"]})
    assert first["upsertBucket"]["inserted"] is True
    bucket = first["upsertBucket"]["bucket"]
    assert bucket["name"] == "run1"
    assert bucket["state"] == "running"
    assert bucket["displayName"] == "run1"
    assert bucket["project"] == {"name": project, "entity": {"name": "admin"}}
    assert json.loads(bucket["config"]) == {"lr": {"value": 0.1}}  # stored in W&B's form
    assert bucket["tags"] == ["a"]

    second = admin.gql(UPSERT, {"project": project, "name": "run1", "state": "finished", "displayName": "Nice"})
    assert second["upsertBucket"]["inserted"] is False
    bucket2 = second["upsertBucket"]["bucket"]
    assert bucket2["id"] == bucket["id"]
    assert bucket2["state"] == "finished"
    assert bucket2["displayName"] == "Nice"
    assert json.loads(bucket2["config"]) == {"lr": {"value": 0.1}}  # untouched fields are kept

    run = admin.gql(RUN_QUERY, {"project": project, "entity": "admin", "name": "run1"})["project"]["run"]
    assert run["projectId"] == bucket["projectId"]
    assert isinstance(run["projectId"], int)
    assert run["user"] == {"name": "admin", "username": "admin"}
    assert run["systemMetrics"] == "{}" and run["summaryMetrics"] == "{}"
    assert run["historyLineCount"] == 0 and run["historyKeys"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["createdAt"])
    assert base64.b64decode(run["id"]) == f"Run:{base64.b64decode(bucket['id']).decode().split(':')[1]}".encode()


def test_upsert_without_name_makes_random_run_id(admin: Client, unique: str) -> None:
    bucket = admin.gql(UPSERT, {"project": f"p-{unique}"})["upsertBucket"]["bucket"]
    assert re.fullmatch(r"[a-z0-9]{8}", bucket["name"])


def test_upsert_refuses_bad_names_and_config(admin: Client, unique: str) -> None:
    error = admin.gql_error(UPSERT, {"project": "..", "name": "r"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "modelName" in error["message"]
    error = admin.gql_error(UPSERT, {"project": f"p-{unique}", "name": "a/b"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "name" in error["message"]
    error = admin.gql_error(UPSERT, {"project": f"p-{unique}", "name": "r", "config": "[1, 2]"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "config" in error["message"]
    # Nothing was created by the refused calls.
    data = admin.gql("query($p: String!) { project(name: $p) { id } }", {"p": f"p-{unique}"})
    assert data["project"] is None


def test_missing_project_and_run_are_null_missing_entity_is_not_found(admin: Client, unique: str) -> None:
    data = admin.gql(RUN_QUERY, {"project": f"nope-{unique}", "entity": "admin", "name": "x"})
    assert data["project"] is None
    admin.make_run(f"p-{unique}", "r")
    data = admin.gql(RUN_QUERY, {"project": f"p-{unique}", "entity": "admin", "name": "nope"})
    assert data["project"] == {"run": None}
    error = admin.gql_error(RUN_QUERY, {"project": "p", "entity": f"ghost-{unique}", "name": "x"})
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_project_fields(admin: Client, unique: str) -> None:
    bucket = admin.make_run(f"p-{unique}", "r")["bucket"]
    project = admin.gql(
        "query($p: String!) { project(name: $p) { id internalId name entityName entity { id name } runCount } }",
        {"p": f"p-{unique}"},
    )["project"]
    assert project["internalId"] == str(bucket["projectId"])
    assert base64.b64decode(project["id"]) == f"Project:{bucket['projectId']}".encode()
    assert project["entityName"] == "admin" and project["entity"]["name"] == "admin"
    assert project["runCount"] == 1


def test_runs_paging_newest_first_and_oldest_first(admin: Client, unique: str) -> None:
    project = f"p-{unique}"
    names = [f"run{i:02d}" for i in range(7)]
    for name in names:
        admin.make_run(project, name)

    def walk(order: str | None) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            data = admin.gql(
                RUNS_QUERY,
                {
                    "project": project,
                    "entity": "admin",
                    "cursor": cursor,
                    "perPage": 3,
                    "order": order,
                    "filters": "{}",
                },
            )["project"]
            assert data["runCount"] == 7
            edges = data["runs"]["edges"]
            seen += [e["node"]["name"] for e in edges]
            assert all(e["node"]["user"] == {"name": "admin"} for e in edges)
            if not data["runs"]["pageInfo"]["hasNextPage"]:
                return seen
            cursor = edges[-1]["cursor"]

    assert walk(None) == names[::-1]
    assert walk("+createdAt") == names


def test_runs_refuses_bad_filters(admin: Client, unique: str) -> None:
    admin.make_run(f"p-{unique}", "r")
    filters = '{"state": {"$like": "x"}}'
    response = admin.post(RUNS_QUERY, {"project": f"p-{unique}", "entity": "admin", "filters": filters})
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "filters.state.$like" in error["message"]
