"""Api configuration, authentication, run paths, runs, and the shared schema."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from graphql import build_schema, validate

import wandb_files
from tests.support import LiveServer, free_port
from wandb_files import documents
from wandb_files.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    TransportError,
)

SCHEMA = Path(wandb_files.__file__).parent / "server" / "schema.graphql"


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.mark.parametrize("name", sorted(documents.ALL))
def test_every_document_the_sdk_sends_is_valid_against_the_server_schema(name: str) -> None:
    schema = build_schema(SCHEMA.read_text())
    assert validate(schema, documents.ALL[name].document) == []


def test_key_and_base_url_from_arguments(live_server: LiveServer) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url + "/")
    assert api.base_url == live_server.base_url
    assert api.default_entity == "admin"
    assert api.viewer["username"] == "admin"


def test_key_and_base_url_from_environment(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", live_server.api_key)
    monkeypatch.setenv("WANDB_BASE_URL", live_server.base_url)
    assert wandb_files.Api().default_entity == "admin"


def test_key_from_netrc(live_server: LiveServer, tmp_path: Path) -> None:
    netrc = Path.home() / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login user\n  password {live_server.api_key}\n")
    netrc.chmod(0o600)
    api = wandb_files.Api(base_url=live_server.base_url)
    assert api.client.key_source.startswith(str(netrc))
    assert api.default_entity == "admin"


def test_missing_key_is_a_configuration_error_that_says_what_to_do(live_server: LiveServer) -> None:
    with pytest.raises(ConfigurationError, match="WANDB_API_KEY"):
        wandb_files.Api(base_url=live_server.base_url)


def test_bad_base_url_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        wandb_files.Api(api_key="x" * 40, base_url="localhost:8080")


@pytest.mark.parametrize("suffix", ["/graphql", "/graphql/", "/"])
def test_base_url_of_the_graphql_endpoint_itself_works(live_server: LiveServer, suffix: str) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url + suffix)
    assert api.base_url == live_server.base_url
    assert api.viewer["username"] == "admin"


@pytest.mark.parametrize("key", ["clé" + "a" * 40, "a" * 20 + "\u200b" + "a" * 20, "abc def" + "a" * 40])
def test_a_key_with_characters_no_key_has_is_a_configuration_error(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    with pytest.raises(ConfigurationError, match="api_key argument") as info:
        wandb_files.Api(api_key=key, base_url=live_server.base_url)
    assert key not in str(info.value)
    monkeypatch.setenv("WANDB_API_KEY", key)
    with pytest.raises(ConfigurationError, match="WANDB_API_KEY"):
        wandb_files.Api(base_url=live_server.base_url)


def test_wrong_key_is_an_authentication_error_naming_the_source_not_the_key(live_server: LiveServer) -> None:
    wrong = "0" * 40
    api = wandb_files.Api(api_key=wrong, base_url=live_server.base_url)
    with pytest.raises(AuthenticationError) as info:
        api.run("admin/p/r")
    assert "api_key argument" in str(info.value)
    assert wrong not in str(info.value)
    assert info.value.status_code == 401


def test_a_refused_connection_fails_within_seconds_naming_the_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    api = wandb_files.Api(api_key="x" * 40, base_url=base_url)  # the default retry policy and timeout
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        api.viewer
    assert time.monotonic() - started < 4
    message = str(info.value)
    assert base_url in message and "not reachable" in message and "connection refused" in message
    assert "HTTPConnectionPool" not in message and "Max retries" not in message  # not urllib3's pool text


def test_timeout_bounds_the_whole_call_with_its_retries(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: `timeout=2` means about 2 s, not 6 attempts of 2 s."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepted by the kernel, never answered
        api = wandb_files.Api(api_key="x" * 40, base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2)
        started = time.monotonic()
        with pytest.raises(TransportError, match="no answer within the timeout"):
            api.viewer
        elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 3.5, elapsed


def test_run_path_forms(api: wandb_files.Api, unique: str) -> None:
    created = api.create_run(run_id=f"r{unique}", project=f"p{unique}")
    forms = [
        f"admin/p{unique}/r{unique}",
        f"admin/p{unique}/runs/r{unique}",
        f"admin/p{unique}:r{unique}",
        f"p{unique}/r{unique}",
        f"https://wandb.ai/admin/p{unique}/runs/r{unique}",
        # A web URL copied from any tab of the run's page.
        f"https://wandb.ai/admin/p{unique}/runs/r{unique}/overview",
        f"https://wandb.ai/admin/p{unique}/runs/r{unique}/files",
        f"https://wandb.ai/admin/p{unique}/runs/r{unique}/files/media/images",
        f"https://wandb.ai/admin/p{unique}/runs/r{unique}/logs?nw=nwuser",
    ]
    for form in forms:
        run = api.run(form)
        assert run.path == ["admin", f"p{unique}", f"r{unique}"], form
        assert run.storage_id == created.storage_id
        assert isinstance(run.project_id, int)


@pytest.mark.parametrize("bad", ["", "a/b/c/d", "a//c", "a/b/c/runs", "a b/c/d", "/", "e/p:"])
def test_bad_run_paths_are_value_errors_listing_the_forms(api: wandb_files.Api, bad: str) -> None:
    with pytest.raises(ValueError, match="entity/project/run_id"):
        api.run(bad)


def test_run_path_must_be_a_string(api: wandb_files.Api) -> None:
    with pytest.raises(TypeError, match="path"):
        api.run(123)  # type: ignore[arg-type]


def test_missing_project_and_run_are_not_found(api: wandb_files.Api, unique: str) -> None:
    api.create_run(run_id="exists", project=f"p{unique}")
    with pytest.raises(NotFoundError, match=f"admin/p{unique}/missing"):
        api.run(f"admin/p{unique}/missing")
    with pytest.raises(NotFoundError, match="not found"):
        api.run(f"admin/nope{unique}/r")


def test_create_run_makes_ids_and_is_idempotent(api: wandb_files.Api, unique: str) -> None:
    run = api.create_run(project=f"p{unique}", display_name="first")
    assert len(run.id) == 8 and run.id.isalnum()
    assert run.name == "first"
    again = api.create_run(run_id=run.id, project=f"p{unique}")
    assert again.storage_id == run.storage_id
    assert api.run(f"p{unique}/{run.id}").state == run.state


def test_runs_pages_lazily_oldest_first_as_wandb(api: wandb_files.Api, unique: str) -> None:
    ids = [api.create_run(run_id=f"run{i}", project=f"p{unique}").id for i in range(7)]
    runs = api.runs(f"admin/p{unique}", per_page=3)
    assert "?" in repr(runs)  # nothing fetched yet
    assert len(runs) == 7
    assert [r.id for r in runs] == ids
    assert runs[-1].id == "run6"
    assert [r.id for r in api.runs(f"p{unique}", per_page=2, order="-created_at")] == list(reversed(ids))


def test_users_cannot_see_each_other(live_server: LiveServer, api: wandb_files.Api, unique: str) -> None:
    bob = wandb_files.Api(api_key=live_server.add_user("bob"), base_url=live_server.base_url)
    assert bob.default_entity == "bob"
    mine = api.create_run(project=f"p{unique}")
    # Another user's entity answers as a missing one: NotFoundError, never a hint that it exists.
    with pytest.raises(NotFoundError, match="admin"):
        bob.run(f"admin/p{unique}/{mine.id}")
    with pytest.raises(NotFoundError):
        bob.runs(f"admin/p{unique}")[0]
    with pytest.raises(NotFoundError):
        bob.create_run(project=f"p{unique}", entity="admin")
    bobs = bob.create_run(project=f"p{unique}")
    with pytest.raises(NotFoundError, match="bob") as taken:
        api.run(f"bob/p{unique}/{bobs.id}")
    with pytest.raises(NotFoundError) as missing:
        api.run(f"nobody-{unique}/p{unique}/{bobs.id}")
    assert str(taken.value).replace("bob", "X") == str(missing.value).replace(f"nobody-{unique}", "X")
