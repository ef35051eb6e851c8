"""Listing a run of 100,000 files with our SDK, on SQLite and on PostgreSQL.

Seeds one run with N file rows straight through SQLAlchemy (the rows point at no bytes: listing never
reads them), starts `wandb-files server` over that database, then in a separate client process iterates
`run.files(per_page=1000)` and prints the time of the first and last pages, the whole iteration, and the
client's peak RSS (ru_maxrss of that process).

    .venv/bin/python benchmarks/bench_listing.py                 # SQLite, and PostgreSQL when installed
    .venv/bin/python benchmarks/bench_listing.py --files 20000 --backends sqlite
    .venv/bin/python benchmarks/bench_listing.py --postgres-url postgresql+psycopg://user@host/db

PostgreSQL: a throwaway cluster is made with Debian's binaries (/usr/lib/postgresql/*/bin, as the
`postgres` user when run as root) unless --postgres-url names an empty database to use.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENT = r"""
import json, resource, sys, time
import wandb_files
base_url, api_key, per_page = sys.argv[1], sys.argv[2], int(sys.argv[3])
api = wandb_files.Api(api_key=api_key, base_url=base_url)
run = api.run("admin/scale/big")
files = run.files(per_page=per_page)
pages, count, last_name = [], 0, None
start = page_start = time.perf_counter()
for f in files:
    count += 1
    last_name = f.name
    if count % per_page == 0:
        now = time.perf_counter(); pages.append(now - page_start); page_start = now
if count % per_page:
    pages.append(time.perf_counter() - page_start)
total = time.perf_counter() - start
print(json.dumps({"files": count, "len": len(files), "pages": pages, "total": total, "last": last_name,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def seed(engine_url: str | Path, n_files: int, api_key: str) -> None:
    from sqlalchemy import insert, update

    from wandb_files.server.db.database import create_db_engine, make_session_factory
    from wandb_files.server.db.models import File, Project, Run, utcnow
    from wandb_files.server.db.users import create_user

    engine = create_db_engine(engine_url)
    with make_session_factory(engine)() as session:
        user, _ = create_user(session, "admin", api_key, admin=True)
        project = Project(entity_id=1, name="scale", created_at=utcnow())
        session.add(project)
        session.flush()
        run = Run(
            project_id=project.id,
            name="big",
            user_id=user.id,
            state="finished",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(run)
        session.commit()
        run_id = run.id
    now = utcnow()
    rows = [
        (run_id, f"media/step_{i:06d}.png", 1000, "1B2M2Y8AsgTpgAmY7PhCfg==", "image/png", uuid.uuid4().hex, now)
        for i in range(n_files)
    ]
    columns = ("run_id", "name", "size_bytes", "md5", "mimetype", "blob_key", "updated_at")
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY files ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            for start in range(0, n_files, 5000):
                conn.execute(
                    insert(File.__table__), [dict(zip(columns, r, strict=True)) for r in rows[start : start + 5000]]
                )
        conn.execute(update(Run).where(Run.id == run_id).values(file_count=n_files))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE files" if engine.dialect.name == "postgresql" else "ANALYZE files")
    engine.dispose()


def bench(backend: str, n_files: int, per_page: int, postgres_url: str | None) -> dict[str, object]:
    from wandb_files.testing import BackgroundServer

    api_key = uuid.uuid4().hex + "abcdefgh"
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        database_url = postgres_url if backend == "postgresql" else None
        started = time.perf_counter()
        seed(database_url or data_dir / "wandb-files.db", n_files, api_key)
        seeded = time.perf_counter() - started
        with BackgroundServer(data_dir, api_key=api_key, database_url=database_url) as server:
            out = subprocess.run(
                [sys.executable, "-c", CLIENT, server.base_url, api_key, str(per_page)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    result = json.loads(out)
    assert result["files"] == result["len"] == n_files, result
    return {"seed_s": seeded, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-page", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database to use instead of a throwaway cluster")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        url = args.postgres_url
        if backend == "postgresql" and url is None:
            from tests.support.services import _start_local_cluster

            try:
                url = _start_local_cluster().create_database()
            except RuntimeError as exc:
                print(f"postgresql: skipped ({exc})")
                continue
        r = bench(backend, args.files, args.per_page, url)
        pages = r["pages"]
        print(
            f"{backend:10s} {r['files']:,} files, per_page={args.per_page}: "
            f"first page {pages[0] * 1000:.0f} ms, last page {pages[-1] * 1000:.0f} ms, "
            f"median page {sorted(pages)[len(pages) // 2] * 1000:.0f} ms, whole run {r['total']:.1f} s, "
            f"client peak RSS {r['peak_rss_mib']:.0f} MiB (seeding {r['seed_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
