"""Helpers for the server tests: raw GraphQL over HTTP against the session's live server."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ADMIN_KEY, LiveServer


@dataclass
class Client:
    """Raw HTTP access to a server as one user."""

    base_url: str
    api_key: str

    @property
    def auth(self) -> tuple[str, str]:
        return ("api", self.api_key)

    def post(self, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"query": query, "variables": variables, "operationName": ""}
        body.update(extra)
        return requests.post(f"{self.base_url}/graphql", json=body, auth=self.auth, timeout=30)

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute and return `data`, failing on any error."""
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]

    def gql_error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Execute expecting exactly one error; return it."""
        response = self.post(query, variables)
        body = response.json()
        assert body.get("errors"), body
        return body["errors"][0]

    def make_run(self, project: str, run: str, entity: str | None = None) -> dict[str, Any]:
        return self.gql(UPSERT, {"project": project, "name": run, "entity": entity})["upsertBucket"]

    def upload(self, entity: str, project: str, run: str, name: str, data: bytes) -> dict[str, Any]:
        """createRunFiles + PUT; returns the PUT's JSON answer."""
        created = self.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": [name]})[
            "createRunFiles"
        ]
        url = created["files"][0]["uploadUrl"]
        response = requests.put(url, data=data, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def files(self, entity: str, project: str, run: str, **variables: Any) -> dict[str, Any]:
        data = self.gql(RUN_FILES, {"entity": entity, "project": project, "name": run, **variables})
        return data["project"]["run"]


UPSERT = """
mutation Upsert($project: String, $name: String, $entity: String, $config: JSONString, $state: String,
                $tags: [String!], $displayName: String) {
  upsertBucket(input: {modelName: $project, name: $name, entityName: $entity, config: $config, state: $state,
                       tags: $tags, displayName: $displayName}) {
    bucket { id name displayName state config tags projectId project { name entity { name } } }
    inserted
  }
}
"""

CREATE_FILES = """
mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    runID uploadHeaders files { name uploadUrl }
  }
}
"""

RUN_FILES = """#graphql
query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String,
               $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) {
  project(name: $project, entityName: $entity) { internalId
    run(name: $name) { fileCount projectId ...RunFilesFragment } } }
fragment RunFilesFragment on Run {
  files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
    edges { node { id name url(upload: $upload) directUrl sizeBytes mimetype updatedAt md5 } cursor }
    pageInfo { endCursor hasNextPage } } }
"""

DELETE_FILES = """
mutation deleteFiles($files: [ID!]!, $projectId: Int) {
  deleteFiles(input: { files: $files projectId: $projectId }) { success } }
"""


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The session's server, once over SQLite and once over PostgreSQL: every server test runs on both."""
    database_url = None
    if request.param == "postgresql":
        from tests.scale.services import postgres_cluster

        database_url = postgres_cluster().create_database()
    server = LiveServer(
        tmp_path_factory.mktemp(f"server-{request.param}") / "data", api_key=ADMIN_KEY, database_url=database_url
    )
    server.start()
    yield server
    server.stop()


def database_args(server: LiveServer) -> list[str]:
    """The --database-url option a command needs to reach `server`'s database (none for SQLite)."""
    return ["--database-url", server.database_url] if server.database_url else []


@pytest.fixture
def admin(live_server: LiveServer) -> Client:
    return Client(live_server.base_url, live_server.api_key)


@pytest.fixture
def run_path(admin: Client, unique: str) -> tuple[str, str, str]:
    """A fresh run of the admin: (entity, project, run)."""
    admin.make_run(f"p-{unique}", f"r-{unique}")
    return "admin", f"p-{unique}", f"r-{unique}"
