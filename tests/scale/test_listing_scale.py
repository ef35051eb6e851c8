"""A run with 100,000 files, on SQLite and PostgreSQL: pages come from the (run_id, name) index, so page
2,000 costs what page 1 does; fileCount is a counter; the listing query's plan uses the index."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.support import ADMIN_KEY, RUN_FILES, Client, LiveServer
from tests.support.services import postgres_cluster
from wandb_files.server.db.database import create_db_engine
from wandb_files.server.db.filepages import files_page_statement
from wandb_files.server.graphql.ids import encode_cursor

from .seed import file_name, seed_run

N_FILES = 100_000
pytestmark = pytest.mark.slow  # seeding 100,000 files twice (SQLite, PostgreSQL)
PAGE = 50


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def big_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, int]]:
    data_dir = tmp_path_factory.mktemp(f"big-{request.param}") / "data"
    data_dir.mkdir(parents=True)
    url = postgres_cluster().create_database() if request.param == "postgresql" else None
    engine = create_db_engine(url or data_dir / "wandb-files.db")
    run_id = seed_run(engine, N_FILES, api_key=ADMIN_KEY)
    engine.dispose()
    server = LiveServer(data_dir, api_key=ADMIN_KEY, database_url=url)
    server.start()
    yield server, run_id
    server.stop()


def _page_seconds(client: Client, after: str | None, repeat: int = 7) -> tuple[float, list[str]]:
    variables = {"entity": "admin", "project": "scale", "name": "big", "fileLimit": PAGE, "fileCursor": after}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run = client.gql(RUN_FILES, variables)["project"]["run"]
        times.append(time.perf_counter() - start)
    assert run["fileCount"] == N_FILES
    # The fastest of several: the cost of the query itself, without scheduling noise of a 2-core machine.
    return min(times), [e["node"]["name"] for e in run["files"]["edges"]]


def test_last_page_costs_what_the_first_does(big_run: tuple[LiveServer, int]) -> None:
    server, _ = big_run
    client = Client(server.base_url, server.api_key)
    _page_seconds(client, None, repeat=2)  # warm up
    first, names = _page_seconds(client, None)
    assert names == [file_name(i) for i in range(PAGE)]
    last_start = N_FILES - PAGE  # page 2,000 of 50
    last, names = _page_seconds(client, encode_cursor("file", file_name(last_start - 1)))
    assert names == [file_name(i) for i in range(last_start, N_FILES)]
    print(f"page 1: {first * 1000:.1f} ms, page {N_FILES // PAGE}: {last * 1000:.1f} ms")
    assert last < 3 * first + 0.01, (first, last)


def test_file_count_is_a_counter(big_run: tuple[LiveServer, int]) -> None:
    server, _ = big_run
    client = Client(server.base_url, server.api_key)
    query = '{ project(name: "scale", entityName: "admin") { run(name: "big") { fileCount } } }'
    client.gql(query)
    start = time.perf_counter()
    for _ in range(20):
        assert client.gql(query)["project"]["run"]["fileCount"] == N_FILES
    assert (time.perf_counter() - start) / 20 < 0.05


def _plan(server: LiveServer, run_id: int) -> str:
    stmt = files_page_statement(run_id, file_name(50_000), PAGE + 1)
    if server.database_url:
        engine = create_engine(server.database_url.replace("postgresql://", "postgresql+psycopg://"))
        prefix = "EXPLAIN "
    else:
        engine = create_engine(f"sqlite:///{Path(server.data_dir) / 'wandb-files.db'}")
        prefix = "EXPLAIN QUERY PLAN "
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + sql).all()
    engine.dispose()
    return "\n".join(" ".join(str(c) for c in row) for row in rows)


def test_listing_query_walks_the_run_name_index(big_run: tuple[LiveServer, int]) -> None:
    server, run_id = big_run
    plan = _plan(server, run_id)
    assert "ix_files_run_name" in plan, plan
    if server.database_url:
        assert "Index Scan" in plan and "Sort" not in plan, plan
    else:
        assert "SEARCH" in plan and "TEMP B-TREE" not in plan, plan
