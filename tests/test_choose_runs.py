"""Runs chosen by a filter wherever the SDK walks runs: `sync(filters=)` and `download_files` over `api.runs(...)`."""

from __future__ import annotations

from pathlib import Path

import pytest

import wandb_files
from tests.support import LiveServer, write_files
from wandb_files import download_files
from wandb_files.mirror import STATE_DIR, sync

FILES = {"config.yaml": b"lr: 1\n", "media/images/a_1_abcdef12.png": b"A" * 500, "logs/out.log": b"x\n"}
#: run id -> (config, tags)
RUNS = {"fast": ({"lr": 0.1}, ["keep"]), "slow": ({"lr": 0.001}, []), "mid": ({"lr": 0.01}, ["keep"])}


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.fixture
def project(api: wandb_files.Api, tmp_path: Path, unique: str) -> str:
    source = tmp_path / "src"
    write_files(source, FILES)
    for run_id, (config, tags) in RUNS.items():
        run = api.create_run(run_id, f"choose{unique}", config=config, tags=tags)
        run.upload_files([source / n for n in FILES], root=source, progress=False)
    return f"admin/choose{unique}"


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and STATE_DIR not in p.parts)


def test_sync_with_filters_mirrors_only_the_selected_runs_and_delete_spares_the_rest(
    api: wandb_files.Api, project: str, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    sync(project, dest, api=api, progress=False)
    assert _tree(dest) == sorted(f"{r}/{n}" for r in RUNS for n in FILES)
    for run_id in RUNS:
        api.run(f"{project}/{run_id}").delete_files(["logs/out.log"])

    result = sync(project, dest, api=api, progress=False, filters={"tags": "keep"}, order="-config.lr", delete=True)
    assert sorted(p.relative_to(dest).as_posix() for p in result.deleted) == ["fast/logs/out.log", "mid/logs/out.log"]
    assert (dest / "slow" / "logs" / "out.log").exists()  # not selected: its folder is left as it is
    assert result.unchanged == 4 and not result.fetched

    fresh = tmp_path / "fresh"
    sync(project, fresh, api=api, progress=False, filters={"config.lr": {"$lt": 0.05}})
    assert sorted(p.name for p in fresh.iterdir() if p.name != STATE_DIR) == ["mid", "slow"]

    with pytest.raises(ValueError, match="entity/project"):
        sync(f"{project}/fast", tmp_path / "x", api=api, filters={"state": "finished"})
    with pytest.raises(wandb_files.errors.NotFoundError, match="no project"):
        sync("admin/no-such-project-here", tmp_path / "x", api=api, filters={"state": "finished"})
    with pytest.raises(wandb_files.errors.BadRequestError, match=r"filters\.tags\.\$gt"):
        sync(project, tmp_path / "x", api=api, filters={"tags": {"$gt": "a"}})
    assert not (tmp_path / "x").exists()


def test_download_files_takes_the_runs_a_filter_selects(api: wandb_files.Api, project: str, tmp_path: Path) -> None:
    chosen = api.runs(project, filters={"config.lr": {"$gte": 0.01}})
    table = download_files(chosen, tmp_path / "all", progress=False)
    assert _tree(tmp_path / "all") == sorted(f"{r}/{n}" for r in ("fast", "mid") for n in FILES)
    assert sorted(table.index.get_level_values("run").unique()) == ["fast", "mid"]
    assert (tmp_path / "all" / "mid" / "media" / "images" / "a_1_abcdef12.png").read_bytes() == FILES[
        "media/images/a_1_abcdef12.png"
    ]

    media = download_files(api.runs(project, filters={"tags": "keep"}).files(pattern="media/%"), tmp_path / "media",
                           progress=False)  # fmt: skip
    assert _tree(tmp_path / "media") == ["fast/media/images/a_1_abcdef12.png", "mid/media/images/a_1_abcdef12.png"]
    assert list(media.columns) == ["a"]

    one = download_files(api.run(f"{project}/slow"), tmp_path / "one", progress=False)
    assert _tree(tmp_path / "one") == sorted(f"slow/{n}" for n in FILES) and len(one) >= 1
