"""One user's entity is closed to every other user, and answers exactly as a missing one: no existence oracle."""

from __future__ import annotations

import requests

from tests.support import CREATE_FILES, DELETE_FILES, UPSERT, Client, LiveServer

RunPath = tuple[str, str, str]
PROJECT = 'query($p: String!, $e: String) { project(name: $p, entityName: $e) { id run(name: "x") { id } } }'


def _intruder(live_server: LiveServer) -> Client:
    return Client(live_server.base_url, live_server.add_user("intruder"))


def _without_names(error: dict, *names: str) -> dict:
    """The error with the names the caller chose replaced, to compare two answers."""
    message = error["message"]
    for name in names:
        message = message.replace(name, "<name>")
    return {**error, "message": message}


def test_another_users_entity_answers_as_a_missing_one(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    intruder = _intruder(live_server)
    entity, project, _run = run_path
    response = intruder.post(PROJECT, {"p": project, "e": entity})
    assert response.status_code == 200
    body = response.json()
    assert body["data"]["project"] is None
    taken = body["errors"][0]
    missing = intruder.post(PROJECT, {"p": project, "e": "nobody-has-this-entity"}).json()["errors"][0]
    assert taken["extensions"]["code"] == missing["extensions"]["code"] == "NOT_FOUND"
    assert _without_names(taken, entity) == _without_names(missing, "nobody-has-this-entity")
    # The intruder's own entity works.
    assert intruder.gql('{ project(name: "nope") { id } }')["project"] is None


def test_other_user_cannot_write(admin: Client, run_path: RunPath, live_server: LiveServer) -> None:
    intruder = _intruder(live_server)
    entity, project, run = run_path
    error = intruder.gql_error(UPSERT, {"project": project, "name": "hijack", "entity": entity})
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = intruder.gql_error(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["x"]})
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert admin.gql("query($p: String!) { project(name: $p) { runCount } }", {"p": project})["project"] == {
        "runCount": 1
    }


def test_other_user_cannot_download_and_cannot_tell_the_file_exists(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    url = admin.files(*run_path)["files"]["edges"][0]["node"]["url"]
    intruder = _intruder(live_server)
    response = requests.get(url, auth=intruder.auth, timeout=10)
    absent = requests.get(url.replace("secret.txt", "absent.txt"), auth=intruder.auth, timeout=10)
    no_entity = requests.get(url.replace("/files/admin/", "/files/nobody-has-this/"), auth=intruder.auth, timeout=10)
    assert response.status_code == absent.status_code == no_entity.status_code == 404
    assert response.content == absent.content == no_entity.content
    assert b"secret" not in response.content
    assert requests.get(url, auth=("api", "wrong-key"), timeout=10).status_code == 401
    assert requests.get(url, auth=admin.auth, timeout=10).content == b"secret"


def test_another_users_file_id_answers_as_a_missing_id(
    admin: Client, run_path: RunPath, live_server: LiveServer
) -> None:
    admin.upload(*run_path, "secret.txt", b"secret")
    file_id = admin.files(*run_path)["files"]["edges"][0]["node"]["id"]
    intruder = _intruder(live_server)
    taken = intruder.gql_error(DELETE_FILES, {"files": [file_id]})
    admin.upload(*run_path, "gone.txt", b"x")
    gone = next(e["node"]["id"] for e in admin.files(*run_path)["files"]["edges"] if e["node"]["name"] == "gone.txt")
    admin.gql(DELETE_FILES, {"files": [gone]})
    missing = intruder.gql_error(DELETE_FILES, {"files": [gone]})
    assert taken["extensions"]["code"] == missing["extensions"]["code"] == "NOT_FOUND"
    assert _without_names(taken, file_id) == _without_names(missing, gone)
    assert admin.files(*run_path)["fileCount"] == 1
