"""A base URL that is not the server's API (its web page, a login page, another JSON API): one line that names the
base URL as the likely problem, never the body of the page."""

from __future__ import annotations

import os

import pytest

import wandb_files
from tests.support import LiveServer, cli
from tests.support.static_http import AnswerServer
from wandb_files.graphql import GraphQLClient
from wandb_files.retry import NO_RETRY

PAGE = b"<!doctype html><html><head><title>Sign in</title></head>\n<body><form>secret-form-token</form></body></html>"


def _refused_with(base_url: str) -> wandb_files.NotGraphQLError:
    with pytest.raises(wandb_files.NotGraphQLError) as caught:
        wandb_files.Api(api_key="k" * 40, base_url=base_url).run("admin/p/r")
    return caught.value


def _assert_one_line_about_the_base_url(message: str, base_url: str) -> None:
    assert "\n" not in message and len(message) < 400, message
    assert f"{base_url.rstrip('/')}/graphql answered" in message and "base URL is likely wrong" in message
    assert "<" not in message and "secret-form-token" not in message and "doctype" not in message.lower()


@pytest.mark.parametrize("path", ["/web", "/web/", "/web/runs"])
def test_the_web_pages_address_as_base_url(live_server: LiveServer, path: str) -> None:
    base_url = live_server.base_url + path
    error = _refused_with(base_url)
    _assert_one_line_about_the_base_url(str(error), base_url)
    assert f"(such as {live_server.base_url})" in str(error)  # the address that works
    assert error.status_code == 404 and error.content_type.startswith("text/html")
    assert isinstance(error, wandb_files.ConfigurationError) and not isinstance(error, wandb_files.NotFoundError)

    env = {**os.environ, "WANDB_BASE_URL": base_url, "WANDB_API_KEY": live_server.api_key}
    result = cli("ls", "admin/p/r", check=False, env=env)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "report it" not in lines[0]
    _assert_one_line_about_the_base_url(lines[0], base_url)
    assert lines[0].endswith("Pass --base-url or set WANDB_BASE_URL")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "what"),
    [
        (200, PAGE, "text/html; charset=utf-8", "a web page"),
        (404, PAGE, "text/html", "a web page"),
        (405, b"Method Not Allowed", "text/plain", "a body of type text/plain"),
        (200, b"\x89PNG\r\n\x1a\n\x00\x00", "image/png", "a body of type image/png"),
        (200, b"ok", None, "a body without a content type"),
        (200, b"", "application/json", "an empty body"),
        (200, b"{not json", "application/json", "invalid JSON"),
        (200, b'{"status": "ok"}', "application/json", "JSON of another shape"),
        (404, b'{"error": "not found"}', "application/json", "JSON of another shape"),
        (200, b"[1, 2]", "application/json", "JSON of another shape"),
        (200, b'"no errors here"', "application/json", "JSON of another shape"),
        (200, b'{"data": 5}', "application/json", "JSON of another shape"),
        (200, b'{"errors": "oops"}', "application/json", "JSON of another shape"),
    ],
)
def test_any_answer_that_is_not_graphql(status: int, body: bytes, content_type: str | None, what: str) -> None:
    with AnswerServer(status, body, content_type) as server:
        error = _refused_with(server.url)
    _assert_one_line_about_the_base_url(str(error), server.url)
    assert f"HTTP {status} with {what}, not GraphQL" in str(error)
    assert "such as" not in str(error)  # the base URL has no path to drop
    assert server.requests == [("POST", "/graphql")]  # asked once: retrying cannot help


def test_a_redirect_to_a_login_page_names_where_it_went() -> None:
    with AnswerServer(200, PAGE, "text/html", redirect_to="/login") as server:
        error = _refused_with(server.url + "/api")
    _assert_one_line_about_the_base_url(str(error), server.url + "/api")
    assert f"with a web page (after a redirect to {server.url}/login)" in str(error)
    assert error.url == f"{server.url}/login" and f"(such as {server.url})" in str(error)


def test_a_failing_proxy_page_is_a_server_error_without_its_body() -> None:
    """A 502 page from a proxy in front of the right address says the server failed, without the page."""
    with AnswerServer(502, PAGE, "text/html") as server:
        client = GraphQLClient(server.url, "k" * 40, retry=NO_RETRY)
        from wandb_files import documents

        with pytest.raises(wandb_files.ServerError) as caught:
            client.execute(documents.SERVER_FEATURES)
        client.close()
    assert str(caught.value) == "HTTP 502: Bad Gateway" and caught.value.status_code == 502
