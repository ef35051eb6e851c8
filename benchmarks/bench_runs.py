"""Choosing runs: a filtered, ordered first page and runCount next to the unfiltered first page, at 10,000 and
100,000 runs, on SQLite and PostgreSQL; and the same selection through MLflow's `search_runs` on 10,000 runs.

Seeds runs with config, summary and tags straight through the server's models (runs and their run_values
rows, as upsertBucket would write them), starts `wandb-files server` over that database and times real
GraphQL over HTTP: the query W&B's public client sends (`runs(filters:, order:, first: 50)`), with the
selection

    {"config.lr": 0.01, "summary_metrics.acc": {"$gt": 0.5}, "tags": {"$nin": ["t"]}}   order -summary_metrics.acc

next to the unfiltered first page (order +created_at, W&B's default) and the counts of both.

MLflow's half runs in another interpreter (`--mlflow-python`, default: this one if it can import mlflow): the
same first 10,000 runs as params (lr, batch_size, model, seed), metrics (acc, loss, epoch) and a tag `t`
("true"/"false", since an MLflow tag is a key with a value), in MLflow's own SQLite store, then
`search_runs(filter_string="params.lr = '0.01' and metrics.acc > 0.5 and tags.t = 'false'",
order_by=["metrics.acc DESC"], max_results=50)`, called in-process (no HTTP in MLflow's timings).

    make bench-runs                                               # builds /work/venv-mlflow, runs all
    .venv/bin/python benchmarks/bench_runs.py --runs 20000 --backends sqlite
    .venv/bin/python benchmarks/bench_runs.py --mlflow-python /work/venv-mlflow/bin/python
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILTERS = {"config.lr": 0.01, "summary_metrics.acc": {"$gt": 0.5}, "tags": {"$nin": ["t"]}}
ORDER = "-summary_metrics.acc"
MLFLOW_FILTER = "params.lr = '0.01' and metrics.acc > 0.5 and tags.t = 'false'"
PER_PAGE = 50
MLFLOW_RUNS = 10_000

PAGE = """
query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int, $order: String,
           $filters: JSONString) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges { node { id name displayName state config summaryMetrics tags group jobType createdAt heartbeatAt
                     user { name } } cursor }
      pageInfo { endCursor hasNextPage } } } }
"""
COUNT = """
query Count($project: String!, $entity: String!, $filters: JSONString) {
  project(name: $project, entityName: $entity) { runCount(filters: $filters) } }
"""
# What wandb.Api().runs() sends: the count and the first page in one request.
BOTH = PAGE.replace("project(name: $project, entityName: $entity) {", "project(name: $project, entityName: $entity) {\n runCount(filters: $filters)")


def run_data(i: int) -> dict[str, Any]:
    """Run i's values: the same for our server and MLflow (seeded by i)."""
    rng = random.Random(i)
    return {
        "lr": rng.choice([0.1, 0.01, 0.001]),
        "batch_size": rng.choice([16, 32, 64, 128]),
        "model": rng.choice(["resnet", "vit", "mlp"]),
        "seed": i,
        "acc": round(rng.random(), 6),
        "loss": round(rng.random() * 3, 6),
        "epoch": rng.randint(1, 100),
        "tags": [t for t, p in (("t", 0.1), ("baseline", 0.3), ("sweep", 0.5)) if rng.random() < p],
        "state": rng.choice(["finished", "finished", "crashed", "running"]),
    }


def _rows(start: int, stop: int, project_id: int, user_id: int) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    from wandb_files.server.db.runvalues import value_rows

    base = datetime(2026, 1, 1)
    for i in range(start, stop):
        d = run_data(i)
        config = json.dumps({k: {"value": d[k], "desc": None} for k in ("lr", "batch_size", "model", "seed")})
        summary = json.dumps({k: d[k] for k in ("acc", "loss", "epoch")})
        tags = json.dumps(d["tags"])
        at = base + timedelta(seconds=i)
        run = {
            "id": i + 1,
            "project_id": project_id,
            "name": f"run{i:06d}",
            "display_name": f"run {i}",
            "state": d["state"],
            "config": config,
            "summary": summary,
            "tags": tags,
            "created_at": at,
            "updated_at": at,
            "heartbeat_at": at,
            "user_id": user_id,
            "file_count": 0,
        }
        yield run, value_rows(config, summary, tags)


def seed(database: str | Path, start: int, stop: int, api_key: str) -> None:
    """Add runs [start, stop) to the database (the user and project made with the first batch)."""
    from sqlalchemy import insert, select

    from wandb_files.server.db.database import create_db_engine, make_session_factory
    from wandb_files.server.db.models import Project, Run, RunValue, User, utcnow
    from wandb_files.server.db.users import create_user

    engine = create_db_engine(database)
    with make_session_factory(engine)() as session:
        user = session.scalar(select(User).where(User.name == "admin"))
        if user is None:
            user, _ = create_user(session, "admin", api_key, admin=True)
            session.add(Project(entity_id=1, name="runs", created_at=utcnow()))
            session.commit()
        project_id = session.scalar(select(Project.id).where(Project.name == "runs"))
        user_id = user.id
    assert project_id is not None
    run_columns = list(Run.__table__.columns.keys())
    value_columns = ["run_id", "key", "txt", "project_id", "rank", "num"]
    postgres = engine.dialect.name == "postgresql"
    chunk = 5_000
    with engine.begin() as conn:
        for lo in range(start, stop, chunk):
            batch = list(_rows(lo, min(stop, lo + chunk), project_id, user_id))
            values = [
                (run["id"], r.key, r.txt, project_id, r.rank, r.num) for run, rows in batch for r in rows
            ]
            if postgres:
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                with cursor.copy(f"COPY runs ({', '.join(run_columns)}) FROM STDIN") as copy:
                    for run, _ in batch:
                        copy.write_row([run.get(c) for c in run_columns])
                with cursor.copy(f"COPY run_values ({', '.join(value_columns)}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            else:
                conn.execute(insert(Run.__table__), [{c: run.get(c) for c in run_columns} for run, _ in batch])
                conn.execute(insert(RunValue.__table__), [dict(zip(value_columns, v, strict=True)) for v in values])
        if postgres:
            conn.exec_driver_sql("SELECT setval('runs_id_seq', (SELECT max(id) FROM runs))")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if postgres else "ANALYZE")
    engine.dispose()


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """The median seconds of `fn()` over `repeat` calls (after two warm-up calls), and its last answer."""
    answer = None
    for _ in range(2):
        answer = fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), answer


def measure(base_url: str, api_key: str, repeat: int) -> dict[str, Any]:
    import requests

    http = requests.Session()
    http.auth = ("api", api_key)

    def gql(query: str, **variables: Any) -> Any:
        body = {"query": query, "variables": {"project": "runs", "entity": "admin", **variables}}
        response = http.post(f"{base_url}/graphql", json=body, timeout=300)
        response.raise_for_status()
        data = response.json()
        assert not data.get("errors"), data
        return data["data"]["project"]

    filters = json.dumps(FILTERS)
    out: dict[str, Any] = {}
    out["page_all_s"], page_all = timed(lambda: gql(PAGE, perPage=PER_PAGE, order="+created_at", filters="{}"), repeat)
    out["page_sel_s"], page_sel = timed(lambda: gql(PAGE, perPage=PER_PAGE, order=ORDER, filters=filters), repeat)
    out["count_all_s"], count_all = timed(lambda: gql(COUNT, filters="{}"), repeat)
    out["count_sel_s"], count_sel = timed(lambda: gql(COUNT, filters=filters), repeat)
    out["both_all_s"], _ = timed(lambda: gql(BOTH, perPage=PER_PAGE, order="+created_at", filters="{}"), repeat)
    out["both_sel_s"], _ = timed(lambda: gql(BOTH, perPage=PER_PAGE, order=ORDER, filters=filters), repeat)
    out["count_all"], out["count_sel"] = count_all["runCount"], count_sel["runCount"]
    out["first_sel"] = [e["node"]["name"] for e in page_sel["runs"]["edges"]]
    assert len(page_all["runs"]["edges"]) == PER_PAGE and len(out["first_sel"]) == PER_PAGE
    return out


def expected_selection(n: int) -> tuple[int, list[str]]:
    """The count and first page the selection must give over runs [0, n), computed in plain Python."""
    chosen = []
    for i in range(n):
        d = run_data(i)
        if d["lr"] == 0.01 and d["acc"] > 0.5 and "t" not in d["tags"]:
            chosen.append((d["acc"], i))
    chosen.sort(reverse=True)
    return len(chosen), [f"run{i:06d}" for _, i in chosen[:PER_PAGE]]


def bench_backend(backend: str, sizes: list[int], repeat: int, postgres_url: str | None) -> list[dict[str, Any]]:
    from wandb_files.testing import BackgroundServer

    api_key = uuid.uuid4().hex + "abcdefgh"
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        database: str | Path = postgres_url if postgres_url else data_dir / "wandb-files.db"
        seeded = 0
        for size in sizes:
            started = time.perf_counter()
            seed(database, seeded, size, api_key)
            seed_s = time.perf_counter() - started
            seeded = size
            with BackgroundServer(data_dir, api_key=api_key, database_url=postgres_url, workers=1) as server:
                r = measure(server.base_url, api_key, repeat)
            count, first = expected_selection(size)
            assert r["count_sel"] == count and r["first_sel"] == first, "the server's selection is wrong"
            assert r["count_all"] == size
            results.append({"backend": backend, "runs": size, "seed_s": seed_s, **r})
    return results


MLFLOW_SCRIPT = r"""
import json, statistics, sys, tempfile, time, random, os, logging
logging.disable(logging.WARNING)
sys.path.insert(0, sys.argv[4])
from bench_runs import run_data, MLFLOW_FILTER, PER_PAGE
n, repeat = int(sys.argv[1]), int(sys.argv[2])
import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
tmp = sys.argv[3]
client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
exp = client.create_experiment("runs", artifact_location=f"{tmp}/artifacts")
started = time.perf_counter()
for i in range(n):
    d = run_data(i)
    run = client.create_run(exp, run_name=f"run{i:06d}", start_time=1_700_000_000_000 + i * 1000)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, d[k], now, 0) for k in ("acc", "loss", "epoch")],
        params=[Param(k, str(d[k])) for k in ("lr", "batch_size", "model", "seed")],
        tags=[RunTag("t", "true" if "t" in d["tags"] else "false"), RunTag("state", d["state"])],
    )
seed_s = time.perf_counter() - started

def timed(fn):
    for _ in range(2):
        answer = fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter(); answer = fn(); samples.append(time.perf_counter() - t)
    return statistics.median(samples), answer

page_sel_s, page = timed(lambda: client.search_runs([exp], MLFLOW_FILTER, order_by=["metrics.acc DESC"], max_results=PER_PAGE))
page_all_s, _ = timed(lambda: client.search_runs([exp], "", order_by=["attributes.start_time ASC"], max_results=PER_PAGE))
def count():
    total, token = 0, None
    while True:
        got = client.search_runs([exp], MLFLOW_FILTER, max_results=1000, page_token=token)
        total += len(got)
        token = got.token
        if not token:
            return total
count_sel_s, count_sel = timed(count)
print(json.dumps({"mlflow": mlflow.__version__, "runs": n, "seed_s": seed_s, "page_sel_s": page_sel_s,
                  "page_all_s": page_all_s, "count_sel_s": count_sel_s, "count_sel": count_sel,
                  "first_sel": [r.info.run_name for r in page]}))
"""


def bench_mlflow(python: str, n: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        done = subprocess.run(
            [python, "-c", MLFLOW_SCRIPT, str(n), str(repeat), tmp, str(Path(__file__).parent)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the MLflow half failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    count, first = expected_selection(n)
    assert result["count_sel"] == count and result["first_sel"] == first, "MLflow's selection differs"
    return result


def default_mlflow_python() -> str | None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000, help="the larger size (the smaller is 10,000)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per figure (the median is shown)")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use instead of a throwaway cluster")
    parser.add_argument("--mlflow-python", help="a Python with mlflow installed (default: this one, if it has it)")
    args = parser.parse_args()
    sizes = sorted({min(MLFLOW_RUNS, args.runs), args.runs})

    ours: dict[str, list[dict[str, Any]]] = {}
    for backend in args.backends.split(","):
        url = args.postgres_url
        if backend == "postgresql" and url is None:
            from tests.support.services import _start_local_cluster

            try:
                url = _start_local_cluster().create_database()
            except RuntimeError as exc:
                print(f"postgresql: skipped ({exc})")
                continue
        ours[backend] = bench_backend(backend, sizes, args.repeat, url if backend == "postgresql" else None)
        for r in ours[backend]:
            ms = {k: v * 1000 for k, v in r.items() if k.endswith("_s") and k != "seed_s"}
            print(
                f"{backend:10s} {r['runs']:>7,} runs: first page unfiltered {ms['page_all_s']:.1f} ms, "
                f"filtered+ordered {ms['page_sel_s']:.1f} ms (x{r['page_sel_s'] / r['page_all_s']:.2f}); "
                f"runCount unfiltered {ms['count_all_s']:.1f} ms, filtered {ms['count_sel_s']:.1f} ms "
                f"({r['count_sel']:,} runs); W&B client's count+page query {ms['both_all_s']:.1f} ms vs "
                f"{ms['both_sel_s']:.1f} ms (x{r['both_sel_s'] / r['both_all_s']:.2f}) [seeded in {r['seed_s']:.0f} s]"
            )

    python = args.mlflow_python or default_mlflow_python()
    if python is None:
        print("mlflow: skipped (not importable here; pass --mlflow-python, e.g. make bench-runs builds one)")
        return
    m = bench_mlflow(python, min(MLFLOW_RUNS, args.runs), args.repeat)
    print(
        f"mlflow {m['mlflow']} {m['runs']:,} runs: search_runs first page unfiltered {m['page_all_s'] * 1000:.1f} ms, "
        f"filtered+ordered {m['page_sel_s'] * 1000:.1f} ms; counting the selection (paging it) "
        f"{m['count_sel_s'] * 1000:.1f} ms [seeded in {m['seed_s']:.0f} s]"
    )
    for backend, results in ours.items():
        same = next(r for r in results if r["runs"] == m["runs"])
        print(
            f"{backend:10s} vs mlflow at {m['runs']:,} runs: filtered first page "
            f"x{m['page_sel_s'] / same['page_sel_s']:.1f} faster (HTTP included on our side), "
            f"count x{m['count_sel_s'] / same['count_sel_s']:.1f} faster"
        )


if __name__ == "__main__":
    main()
