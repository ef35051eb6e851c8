"""The real wandb client's own documents get the same answers from planned and from plain execution.

The client is run against a live server over a seeded database, through a relay that keeps every GraphQL body
it sends; each query it sent is then executed in this process over the same database with graphql-core's
plain Executor and with PlannedExecutor (tests.support.executors.same_answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import GraphQLRecorder
from tests.support.executors import HOSTILE_NAMES, Seeded, same_answer, seeded_state
from wandb_files.testing import BackgroundServer

wandb = pytest.importorskip("wandb")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    state = seeded_state(tmp_path_factory.mktemp("planned-wandb") / "data")
    yield state
    state.state.engine.dispose()


def record_wandb_session(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the real client sends while it reads runs, files and projects of the seeded database."""
    with (
        BackgroundServer(seeded.state.config.data_dir, api_key=seeded.admin_key) as server,
        GraphQLRecorder(server.base_url) as recorder,
    ):
        monkeypatch.setenv("WANDB_BASE_URL", recorder.url)
        monkeypatch.setenv("WANDB_API_KEY", seeded.admin_key)
        monkeypatch.setenv("WANDB_SILENT", "true")
        for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
            monkeypatch.setenv(var, str(tmp_path / var.lower()))
        api = wandb.Api()
        assert api.viewer.username == "admin"
        run = api.run("admin/proj-0/run0")
        assert run.name == "Run zero ✓" and run.tags == ["a", "b c"]
        assert [f.name for f in run.files()] == sorted(HOSTILE_NAMES)
        paged = run.files(per_page=4)
        assert len(paged) == len(HOSTILE_NAMES) and [f.name for f in paged] == sorted(HOSTILE_NAMES)
        assert [f.name for f in run.files(names=HOSTILE_NAMES[:3])] == sorted(HOSTILE_NAMES[:3])
        assert run.file(HOSTILE_NAMES[5]).size == 5
        assert {r.id for r in api.runs("admin/proj-1", per_page=2)} == {"run0", "run1", "run2"}
        assert [f.name for f in api.run("admin/proj-1/run2").files(per_page=5)][:2] == ["f000.txt", "f001.txt"]
        assert api.project("proj-0", entity="admin").name == "proj-0"
        assert sorted(p.name for p in api.projects("admin")) == ["proj-0", "proj-1"]
        for missing in ("admin/proj-0/nope", "bob/proj-0/run0"):
            with pytest.raises(Exception, match="(?i)not found|could not find"):
                api.run(missing).files()
        return recorder.bodies


def test_the_real_clients_queries_answer_alike(seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = record_wandb_session(seeded, tmp_path, monkeypatch)
    sent = [b for b in bodies if not str(b.get("query", "")).lstrip().startswith("mutation")]
    assert any("RunFiles" in str(b.get("query")) for b in sent)
    for body in sent:
        same_answer(seeded, body)
    assert len(sent) >= 10
