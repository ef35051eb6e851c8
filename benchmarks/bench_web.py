"""The web page's run view: a page of a 100,000-file run against a page of a 100-file run, on one server.

Seeds, straight through the database layer (rows with no bytes: the page never reads them), a run of 100 files,
a run of 100,000 files, and a run of 100,000 files in 1,000 folders; starts `wandb-files server`; signs in over
HTTP; then times GETs of the run page (median of --repeat), each printed as a ratio to the small run's first
page measured in the same run:

    .venv/bin/python benchmarks/bench_web.py [--files 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seed(db: Path, api_key: str, runs: dict[str, list[str]]) -> None:
    from sqlalchemy import insert

    from wandb_files.server.db.database import create_db_engine, make_session_factory, write_transaction
    from wandb_files.server.db.models import Entity, File, Project, Run, utcnow
    from wandb_files.server.db.users import ensure_admin

    engine = create_db_engine(db)
    with make_session_factory(engine)() as session:
        ensure_admin(session, api_key)
        with write_transaction(session):
            entity = session.query(Entity).filter_by(name="admin").one()
            project = Project(entity_id=entity.id, name="web", created_at=utcnow())
            session.add(project)
            session.flush()
            for name, files in runs.items():
                run = Run(project_id=project.id, name=name, user_id=entity.owner_id, file_count=len(files))
                session.add(run)
                session.flush()
                now = utcnow()
                for start in range(0, len(files), 10_000):
                    session.execute(
                        insert(File),
                        [
                            {
                                "run_id": run.id,
                                "name": f,
                                "size_bytes": 1000,
                                "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
                                "mimetype": "application/json",
                                "blob_key": uuid.uuid4().hex,
                                "updated_at": now,
                            }
                            for f in files[start : start + 10_000]
                        ],
                    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    import requests

    from wandb_files.server.graphql.ids import encode_cursor
    from wandb_files.testing import BackgroundServer

    key = uuid.uuid4().hex + "abcdefgh"
    n = args.files
    runs = {
        "small": [f"step_{i:05d}.json" for i in range(100)],
        "big": [f"step_{i:06d}.json" for i in range(n)],
        "folders": [f"dir_{i // 100:04d}/step_{i % 100:03d}.json" for i in range(n)],
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        started = time.perf_counter()
        seed(data / "wandb-files.db", key, runs)
        print(f"seeded {sum(map(len, runs.values())):,} rows in {time.perf_counter() - started:.1f} s")
        with BackgroundServer(data, api_key=key) as server:
            web = requests.Session()
            page = web.get(server.base_url + "/web/", timeout=30).text
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            web.post(server.base_url + "/web/signin", data={"api_key": key, "csrf": token}, timeout=30)

            def timed(path: str, **params: str) -> float:
                url = server.base_url + "/web/e/admin/web/" + path
                web.get(url, params=params, timeout=60).raise_for_status()  # warm
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = web.get(url, params=params, timeout=60)
                    times.append(time.perf_counter() - t0)
                    assert response.status_code == 200, response.text[:300]
                return statistics.median(times)

            middle = runs["big"][n // 2]
            last = runs["big"][-101]
            cases = {
                "small run (100 files), first page": timed("small"),
                f"big run ({n:,} files), first page": timed("big"),
                "big run, page at the middle (cursor)": timed("big", after=encode_cursor("file", middle)),
                "big run, last page (cursor)": timed("big", after=encode_cursor("file", last)),
                "big run, filter %_099999.json": timed("big", pattern="%_099999.json"),
                f"{n // 100:,} folders x 100 files, top level (100 folders a page)": timed("folders"),
                "one of those folders (100 files)": timed("folders", folder="dir_0500/"),
            }
    reference = cases["small run (100 files), first page"]
    print(f"{'case':<62} {'median ms':>10} {'ratio':>7}")
    for name, seconds in cases.items():
        print(f"{name:<62} {seconds * 1000:>10.1f} {seconds / reference:>7.2f}")


if __name__ == "__main__":
    main()
