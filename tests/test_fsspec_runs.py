"""wandb:// over the runs of a project: globs across runs, and `run_filters` choosing which runs a project lists."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

import wandb_files
from tests.support import LiveServer, write_files
from wandb_files.errors import BadRequestError
from wandb_files.fsspec import WandbFileSystem

#: run id -> (config, summary)
RUNS = {"r1": ({"model": "resnet"}, {"acc": 0.9}), "r2": ({"model": "vit"}, {"acc": 0.7}), "r3": ({"model": "resnet"}, {"acc": 0.4})}  # fmt: skip


@pytest.fixture(scope="module")
def project(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    name = f"fs-runs-{tmp_path_factory.mktemp('x').name}"
    for run_id, (config, summary) in RUNS.items():
        files = {"metrics.csv": f"run,acc\n{run_id},{summary['acc']}\n".encode(), f"media/images/p_{run_id}.png": b"P"}
        source = tmp_path_factory.mktemp(run_id)
        write_files(source, files)
        run = api.create_run(run_id, name, config=config, summary=summary)
        run.upload_files([source / n for n in files], root=source, progress=False)
    return f"admin/{name}"


@pytest.fixture
def options(live_server: LiveServer) -> dict[str, str]:
    return {"api_key": live_server.api_key, "base_url": live_server.base_url}


@pytest.fixture
def registered() -> Iterator[None]:
    fsspec.register_implementation("wandb", WandbFileSystem, clobber=True)
    yield
    importlib.import_module("fsspec.registry")._registry.pop("wandb", None)
    WandbFileSystem.clear_instance_cache()


def test_ls_and_glob_go_over_every_run_of_a_project(project: str, options: dict[str, str]) -> None:
    fs = WandbFileSystem(**options, skip_instance_cache=True)
    assert fs.ls(project, detail=False) == [f"{project}/{r}" for r in RUNS]
    assert fs.glob(f"{project}/*/media/images/*.png") == [f"{project}/{r}/media/images/p_{r}.png" for r in RUNS]
    assert fs.glob(f"wandb://{project}/r[12]/metrics.csv") == [f"{project}/r1/metrics.csv", f"{project}/r2/metrics.csv"]


def test_run_filters_choose_the_runs_a_project_lists(project: str, options: dict[str, str]) -> None:
    resnet = WandbFileSystem(**options, run_filters={"config.model": "resnet"}, skip_instance_cache=True)
    assert resnet.ls(project, detail=False) == [f"{project}/r1", f"{project}/r3"]
    assert resnet.glob(f"{project}/*/media/images/*.png") == [
        f"{project}/r1/media/images/p_r1.png",
        f"{project}/r3/media/images/p_r3.png",
    ]
    assert sorted(resnet.find(project)) == sorted(
        f"{project}/{r}/{n}" for r in ("r1", "r3") for n in ("metrics.csv", f"media/images/p_{r}.png")
    )
    good = WandbFileSystem(**options, run_filters={"summary_metrics.acc": {"$gt": 0.5}}, skip_instance_cache=True)
    assert good.glob(f"{project}/*/metrics.csv") == [f"{project}/r1/metrics.csv", f"{project}/r2/metrics.csv"]
    # A run named in a path is reached whatever the filter: it chooses what a project lists.
    assert resnet.cat(f"{project}/r2/metrics.csv") == b"run,acc\nr2,0.7\n"
    assert "resnet" in repr(resnet) and options["api_key"] not in repr(resnet)


def test_run_filters_through_storage_options_and_fsspecs_instance_cache(
    registered: None, project: str, options: dict[str, str]
) -> None:
    import pandas

    chosen = {"run_filters": {"config.model": "resnet", "summary_metrics.acc": {"$gte": 0.5}}}
    files = fsspec.open_files(f"wandb://{project}/*/metrics.csv", "rt", **options, **chosen)
    frames = []
    for opened in files:
        with opened as f:
            frames.append(pandas.read_csv(f))
    assert pandas.concat(frames)["run"].tolist() == ["r1"]

    one = fsspec.filesystem("wandb", **options, **chosen)
    assert one is fsspec.filesystem("wandb", **options, **chosen)  # cached by its arguments, filter included
    everything = fsspec.filesystem("wandb", **options)
    assert everything is not one and len(everything.ls(project)) == 3 and len(one.ls(project)) == 1
    again = WandbFileSystem.from_json(one.to_json(include_password=True))
    assert again.run_filters == chosen["run_filters"] and again.ls(project, detail=False) == [f"{project}/r1"]


def test_a_malformed_filter_fails_at_once_and_one_the_server_refuses_names_its_path(
    project: str, options: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\$gtt"):
        WandbFileSystem(**options, run_filters={"config.lr": {"$gtt": 1}}, skip_instance_cache=True)
    with pytest.raises(TypeError, match="filters must be a dict"):
        WandbFileSystem(**options, run_filters=json.dumps({"state": "finished"}), skip_instance_cache=True)
    refused = WandbFileSystem(**options, run_filters={"tags": {"$gt": "a"}}, skip_instance_cache=True)
    with pytest.raises(BadRequestError, match=r"filters\.tags\.\$gt"):
        refused.ls(project)
