"""Fixtures for the scale-out tests: PostgreSQL, an S3-compatible server, and servers over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, LiveServer
from tests.server.conftest import Client

from .services import PostgresCluster, S3Service, postgres_cluster, s3_service


@pytest.fixture(scope="session")
def postgres() -> PostgresCluster:
    return postgres_cluster()


@pytest.fixture(scope="session")
def s3() -> S3Service:
    return s3_service()


def s3_server(data_dir: Path, s3: S3Service, bucket: str, prefix: str = "blobs", **kwargs: object) -> LiveServer:
    """A started server keeping its bytes in `bucket` (under `prefix/`)."""
    server = LiveServer(
        data_dir,
        api_key=ADMIN_KEY,
        blob_store=f"s3://{bucket}/{prefix}",
        s3_endpoint_url=s3.endpoint_url,
        env=s3.env,
        **kwargs,  # type: ignore[arg-type]
    )
    return server.start()  # type: ignore[return-value]


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
