"""One user's entity is closed to every other user."""

from __future__ import annotations

import requests

from tests.conftest import LiveServer

from .conftest import CREATE_FILES, DELETE_FILES, UPSERT, Client

RunPath = tuple[str, str, str]


def _intruder(live_server: LiveServer) -> Client:
    return Client(live_server.base_url, live_server.add_user("intruder"))


def test_other_user_cannot_read_project(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    intruder = _intruder(live_server)
    entity, project, run = run_path
    response = intruder.post(
        "query($p: String!, $e: String) { project(name: $p, entityName: $e) { id run(name: \"x\") { id } } }",
        {"p": project, "e": entity},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"]["project"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    assert "admin" in error["message"]
    # Even a project that does not exist gives the same answer: no probing another entity.
    error = intruder.gql_error("query($e: String) { project(name: \"nope\", entityName: $e) { id } }", {"e": entity})
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    # The intruder's own entity works.
    assert intruder.gql("{ project(name: \"nope\") { id } }")["project"] is None


def test_other_user_cannot_write(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    intruder = _intruder(live_server)
    entity, project, run = run_path
    error = intruder.gql_error(UPSERT, {"project": project, "name": "hijack", "entity": entity})
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    error = intruder.gql_error(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["x"]})
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    assert admin.gql("query($p: String!) { project(name: $p) { runCount } }", {"p": project})["project"] == {
        "runCount": 1
    }


def test_other_user_cannot_download(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    url = admin.files(*run_path)["files"]["edges"][0]["node"]["url"]
    intruder = _intruder(live_server)
    response = requests.get(url, auth=intruder.auth, timeout=10)
    assert response.status_code == 403
    assert b"secret" not in response.content
    assert requests.get(url, auth=("api", "wrong-key"), timeout=10).status_code == 401
    assert requests.get(url, auth=admin.auth, timeout=10).content == b"secret"


def test_other_user_cannot_delete(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    file_id = admin.files(*run_path)["files"]["edges"][0]["node"]["id"]
    intruder = _intruder(live_server)
    error = intruder.gql_error(DELETE_FILES, {"files": [file_id]})
    assert error["extensions"]["code"] == "PERMISSION_DENIED"
    assert admin.files(*run_path)["fileCount"] == 1
