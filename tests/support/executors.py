"""Planned against plain GraphQL execution: a seeded server state, and a check that both give the same answer.

`seeded_state` opens the server's state in this process (the app `wandb-files server` runs, over SQLite or a
PostgreSQL database) and fills it with two users, projects, runs with and without their optional fields, and
files with hostile names. `same_answer` executes one request body through the server's GraphQL path with
graphql-core's plain `Executor` and with `PlannedExecutor`, and asserts the status and the whole result
(`data` and `errors`) are identical.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from graphql import Executor

from wandb_files.server.config import ServerConfig
from wandb_files.server.db.models import File, Project, Run
from wandb_files.server.db.users import create_user
from wandb_files.server.graphql.planned import PlannedExecutor
from wandb_files.server.http.app import create_app
from wandb_files.server.http.graphql_endpoint import GraphQLEndpoint

PUBLIC_URL = "http://127.0.0.1:9"

# Names a URL must quote, that JSON must escape, or that sort in surprising places; all are valid file names.
HOSTILE_NAMES = [
    "a b/c d.txt",
    "100%/50%_done.csv",
    "q?x=1&y=2#frag.json",
    "quote\"s'and\\back.txt",
    "ünïcødé/文件/ファイル.png",
    "emoji/😀🚀.bin",
    "semi;colon,comma+plus=eq@at$.txt",
    "~tilde/-dash_/.hidden",
    "UPPER/lower/MiXeD.PNG",
    "deep/" + "/".join(f"d{i}" for i in range(12)) + "/leaf",
    "long/" + "x" * 200 + ".dat",
    "media/images/step_000001.png",
    "media/images/step_000002.png",
    "tab\u00a0nbsp and\u2003em-space.txt",
    "%2F-looks-encoded%20.txt",
]


@dataclass
class Seeded:
    """The seeded state and what was put in it."""

    state: GraphQLEndpoint
    admin_key: str
    bob_key: str
    # (entity, project, run) of the runs made, the first one holding the hostile names.
    runs: list[tuple[str, str, str]]
    file_names: dict[tuple[str, str, str], list[str]]


def seeded_state(data_dir: Path, database_url: str | None = None) -> Seeded:
    """A server state over `data_dir` (and `database_url`), seeded for comparisons (see the module docstring)."""
    app = create_app(ServerConfig(data_dir=data_dir, database_url=database_url))
    state: GraphQLEndpoint = app.state.server
    admin_key, bob_key = "a" * 8 + uuid.uuid4().hex, "b" * 8 + uuid.uuid4().hex
    runs: list[tuple[str, str, str]] = []
    names: dict[tuple[str, str, str], list[str]] = {}
    base = datetime(2026, 11, 23, 8, 5, 41)
    with state.sessions() as session:
        admin, _ = create_user(session, "admin", admin_key, admin=True)
        bob, _ = create_user(session, "bob", bob_key)
        session.flush()
        for user, entity_id in ((admin, _entity_id(session, "admin")), (bob, _entity_id(session, "bob"))):
            for p in range(2):
                project = Project(entity_id=entity_id, name=f"proj-{p}", created_at=base + timedelta(days=p))
                session.add(project)
                session.flush()
                for r in range(3):
                    full = r == 0  # every optional field set on one run, none on the others
                    run = Run(
                        project_id=project.id,
                        name=f"run{r}",
                        user_id=user.id,
                        state="finished" if full else "running",
                        display_name="Run zero ✓" if full else None,
                        config=json.dumps({"lr": 0.1, "name": "ü"}) if full else None,
                        summary=json.dumps({"acc": 1}) if full else None,
                        description="a run" if full else None,
                        notes="notes\nwith lines" if full else None,
                        group="g" if full else None,
                        job_type="train" if full else None,
                        tags=json.dumps(["a", "b c"]) if full else None,
                        commit="abc123" if full else None,
                        created_at=base + timedelta(hours=r),
                        updated_at=base + timedelta(hours=r, minutes=1),
                        heartbeat_at=base + timedelta(hours=r, minutes=2) if full else None,
                    )
                    session.add(run)
                    session.flush()
                    run_names = HOSTILE_NAMES if (p, r) == (0, 0) else [f"f{i:03d}.txt" for i in range(7 * r)]
                    for i, name in enumerate(run_names):
                        session.add(
                            File(
                                run_id=run.id,
                                name=name,
                                size_bytes=(2**40 + i) if i % 3 == 0 else i,
                                md5="1B2M2Y8AsgTpgAmY7PhCfg==",
                                mimetype="application/octet-stream" if i % 2 else "image/png",
                                blob_key=uuid.uuid4().hex,
                                updated_at=base + timedelta(seconds=i),
                            )
                        )
                    run.file_count = len(run_names)
                    path = (user.name, project.name, run.name)
                    runs.append(path)
                    names[path] = sorted(run_names)
        session.commit()
    return Seeded(state, admin_key, bob_key, runs, names)


def _entity_id(session: Any, name: str) -> int:
    from sqlalchemy import select

    from wandb_files.server.db.models import Entity

    entity_id: int = session.scalars(select(Entity.id).where(Entity.name == name)).one()
    return entity_id


def execute(seeded: Seeded, api_key: str, body: dict[str, Any], planned: bool) -> tuple[int, dict[str, Any]]:
    """One request body through the server's GraphQL path, with the planned or the plain executor."""
    return seeded.state.execute_graphql(
        api_key, body, PUBLIC_URL, executor_class=PlannedExecutor if planned else Executor
    )


def same_answer(seeded: Seeded, body: dict[str, Any], api_key: str | None = None) -> tuple[int, dict[str, Any]]:
    """Assert the planned and the plain executor answer `body` identically; return that answer.

    Signed URLs carry the second they were made in: the plain answer is taken before and after the planned
    one, and the comparison is repeated when a second boundary fell between them.
    """
    key = api_key or seeded.admin_key
    for _ in range(5):
        before = execute(seeded, key, body, planned=False)
        planned = execute(seeded, key, body, planned=True)
        after = execute(seeded, key, body, planned=False)
        if before == after:
            assert planned == before, f"planned and plain execution differ for {body!r}"
            return planned
    raise AssertionError(f"plain execution of {body!r} does not give one answer")
