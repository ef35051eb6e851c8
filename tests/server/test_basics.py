"""Health, authentication, the GraphQL transport and the viewer."""

from __future__ import annotations

import base64

import requests

from tests.support import Client, LiveServer, database_args


def test_healthz(live_server: LiveServer) -> None:
    response = requests.get(f"{live_server.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_missing_key_is_401(live_server: LiveServer) -> None:
    response = requests.post(f"{live_server.base_url}/graphql", json={"query": "{ viewer { name } }"}, timeout=5)
    assert response.status_code == 401
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "missing" in error["message"]


def test_wrong_key_is_401_and_not_echoed(live_server: LiveServer) -> None:
    bad_key = "b" * 40
    response = requests.post(
        f"{live_server.base_url}/graphql", json={"query": "{ viewer { name } }"}, auth=("api", bad_key), timeout=5
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "not valid" in response.json()["errors"][0]["message"]
    assert bad_key not in response.text


def test_any_basic_username_is_accepted(live_server: LiveServer) -> None:
    response = requests.post(
        f"{live_server.base_url}/graphql",
        json={"query": "{ viewer { name } }"},
        auth=("someone", live_server.api_key),
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["name"] == "admin"


def test_viewer(admin: Client) -> None:
    # The exact document the W&B client sends, without a variables key.
    response = requests.post(
        f"{admin.base_url}/graphql",
        json={
            "query": "query Viewer { viewer { id entity username email flags admin teams { edges { node { name } } } } }",
            "operationName": "Viewer",
        },
        auth=admin.auth,
        timeout=5,
    )
    assert response.status_code == 200
    viewer = response.json()["data"]["viewer"]
    assert viewer["entity"] == "admin"
    assert viewer["username"] == "admin"
    assert viewer["email"] is None
    assert viewer["flags"] == "{}"
    assert viewer["admin"] is True
    assert [e["node"]["name"] for e in viewer["teams"]["edges"]] == ["admin"]
    assert "admin" not in viewer["id"]  # opaque
    assert base64.b64decode(viewer["id"]).startswith(b"User:")


def test_server_info_has_no_features(admin: Client) -> None:
    data = admin.gql("query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }")
    assert data["serverInfo"]["features"] == []


def test_malformed_json_is_400(admin: Client) -> None:
    response = requests.post(
        f"{admin.base_url}/graphql",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        auth=admin.auth,
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


def test_non_object_body_is_400(admin: Client) -> None:
    response = requests.post(f"{admin.base_url}/graphql", json=[1, 2], auth=admin.auth, timeout=5)
    assert response.status_code == 400
    assert "errors" in response.json()


def test_parse_and_validation_errors_are_400(admin: Client) -> None:
    response = admin.post("{ viewer { name ")
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    response = admin.post("{ viewer { noSuchField } }")
    assert response.status_code == 400
    assert "noSuchField" in response.json()["errors"][0]["message"]


def test_unknown_path_is_json_404(live_server: LiveServer) -> None:
    response = requests.get(f"{live_server.base_url}/nothing/here", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    response = requests.post(f"{live_server.base_url}/sdk/otel/v1/metrics", data=b"x", timeout=5)
    assert response.status_code == 404


def test_user_add_prints_key_and_refuses_duplicates_and_bad_names(live_server: LiveServer) -> None:
    from tests.support import cli

    key = live_server.add_user("basics_user")
    assert len(key) == 40
    assert Client(live_server.base_url, key).gql("{ viewer { name entity } }")["viewer"] == {
        "name": "basics_user",
        "entity": "basics_user",
    }
    db = database_args(live_server)
    duplicate = cli("user", "add", "basics_user", "--data-dir", str(live_server.data_dir), *db, check=False)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1
    bad = cli("user", "add", "no spaces!", "--data-dir", str(live_server.data_dir), *db, check=False)
    assert bad.returncode == 1
    assert "user name" in bad.stderr


def test_keys_are_stored_only_hashed(live_server: LiveServer) -> None:
    if live_server.database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(live_server.database_url)
        with engine.connect() as conn:
            rows = [[str(v) for v in row] for row in conn.execute(text("SELECT * FROM users"))]
        engine.dispose()
        assert rows and all(live_server.api_key not in value for row in rows for value in row)
    else:
        db_bytes = (live_server.data_dir / "wandb-files.db").read_bytes()
        wal = live_server.data_dir / "wandb-files.db-wal"
        if wal.exists():
            db_bytes += wal.read_bytes()
        assert live_server.api_key.encode() not in db_bytes
    assert live_server.api_key not in live_server.log()
