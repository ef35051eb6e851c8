"""Helpers for the server tests: raw GraphQL over HTTP against the session's live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ADMIN_KEY, Client, LiveServer


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The session's server, once over SQLite and once over PostgreSQL: every server test runs on both."""
    database_url = None
    if request.param == "postgresql":
        from tests.support.services import postgres_cluster

        database_url = postgres_cluster().create_database()
    server = LiveServer(
        tmp_path_factory.mktemp(f"server-{request.param}") / "data", api_key=ADMIN_KEY, database_url=database_url
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def admin(live_server: LiveServer) -> Client:
    return Client(live_server.base_url, live_server.api_key)


@pytest.fixture
def run_path(admin: Client, unique: str) -> tuple[str, str, str]:
    """A fresh run of the admin: (entity, project, run)."""
    admin.make_run(f"p-{unique}", f"r-{unique}")
    return "admin", f"p-{unique}", f"r-{unique}"
