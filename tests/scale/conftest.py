"""Fixtures for the scale-out tests: PostgreSQL, an S3-compatible server, and servers over them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Client, LiveServer
from tests.support.services import PostgresCluster, S3Service, postgres_cluster, s3_server, s3_service


@pytest.fixture(scope="session")
def postgres() -> PostgresCluster:
    return postgres_cluster()


@pytest.fixture(scope="session")
def s3() -> S3Service:
    return s3_service()


@pytest.fixture(scope="module")
def s3_bucket(s3: S3Service) -> str:
    return s3.create_bucket()


@pytest.fixture(scope="module")
def s3_live(s3: S3Service, s3_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server over SQLite and an S3 bucket, shared by a module's tests."""
    server = s3_server(tmp_path_factory.mktemp("s3") / "data", s3, s3_bucket)
    yield server
    server.stop()


@pytest.fixture
def s3_admin(s3_live: LiveServer) -> Client:
    return Client(s3_live.base_url, s3_live.api_key)
