"""`wandb_files.query`: neptune-query's `fetch_series` / `fetch_runs_table` / `download_files` on W&B runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import wandb_files
import wandb_files.query as wq
from tests.support import LiveServer, md5_b64
from wandb_files.query import _Matcher

LOGGED = {
    "media/images/predictions_1_a1a1a1.png": b"p1",
    "media/images/predictions_2_a2a2a2.png": b"p2",
    "media/images/predictions_2_b2b2b2.png": b"p2 again",  # a logged list: two images at one step
    "media/images/predictions_3_a3a3a3.png": b"p3",
    "media/images/predictions_4_a4a4a4.png": b"p4",
    "media/images/val/examples_2_c2c2c2.png": b"v2",
    "media/images/predictions_extra_1_e1e1e1.png": b"not predictions",
    "sample.csv": b"a,b\n",
    "labels.json": b"{}",
    "config.yaml": b"lr: 1\n",
}


@pytest.fixture(scope="module")
def project(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, wandb_files.Api]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    source = tmp_path_factory.mktemp("query")
    for name, data in LOGGED.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    for run_id in ("kittiwake-i2ufv", "kittiwake-h7jk2", "other-x1"):
        run = api.create_run(run_id=run_id, project="project-x")
        run.upload_files(sorted(p for p in source.rglob("*") if p.is_file()), root=source, progress=False)
    return "admin/project-x", api


def test_fetch_series_as_in_the_seed(project: tuple, tmp_path: Path) -> None:
    path, api = project
    files = wq.fetch_series(
        project=path,
        runs=["kittiwake-i2ufv", "kittiwake-h7jk2"],
        attributes=r"^predictions$",
        step_range=(1.0, 3.0),
        api=api,
    )
    assert list(files.index.names) == ["run", "step"] and files.columns.name == "attribute"
    assert list(files.columns) == ["predictions"]
    assert list(files.index) == [(r, s) for r in ("kittiwake-i2ufv", "kittiwake-h7jk2") for s in (1.0, 2.0, 3.0)]
    assert isinstance(files.loc[("kittiwake-i2ufv", 1.0), "predictions"], wandb_files.File)
    both = files.loc[("kittiwake-h7jk2", 2.0), "predictions"]
    assert [f.name for f in both] == ["media/images/predictions_2_a2a2a2.png", "media/images/predictions_2_b2b2b2.png"]

    paths = wq.download_files(files=files, destination=tmp_path)
    assert list(paths.index) == list(files.index) and list(paths.columns) == ["predictions"]
    first = paths.loc[("kittiwake-i2ufv", 3.0), "predictions"]
    assert first == str((tmp_path / "kittiwake-i2ufv" / "media/images/predictions_3_a3a3a3.png").resolve())
    assert [Path(p).read_bytes() for p in paths.loc[("kittiwake-i2ufv", 2.0), "predictions"]] == [b"p2", b"p2 again"]


def test_runs_and_attributes_by_regex_and_open_step_ranges(project: tuple) -> None:
    path, api = project
    files = wq.fetch_series(path, runs="^kittiwake", attributes=r"examples", step_range=(2, None), api=api)
    # The project's order: W&B's default for api.runs, oldest first.
    assert list(files.index) == [("kittiwake-i2ufv", 2.0), ("kittiwake-h7jk2", 2.0)]
    assert list(files.columns) == ["val/examples"]
    everything = wq.fetch_series(path, api=api)
    assert set(everything.columns) == {"predictions", "val/examples", "predictions_extra"}
    assert {r for r, _ in everything.index} == {"kittiwake-i2ufv", "kittiwake-h7jk2", "other-x1"}
    listed = wq.fetch_series(path, runs=["other-x1"], attributes=["predictions", "val/examples"], api=api)
    assert sorted({s for _, s in listed.index}) == [1.0, 2.0, 3.0, 4.0]
    assert set(listed.columns) == {"predictions", "val/examples"}  # predictions_extra is another attribute


def test_fetch_runs_table_as_in_the_seed(project: tuple, tmp_path: Path) -> None:
    path, api = project
    table = wq.fetch_runs_table(
        project=path, runs=["kittiwake-i2ufv", "kittiwake-h7jk2"], attributes=r"sample | labels", api=api
    )
    assert table.index.name == "run" and list(table.index) == ["kittiwake-i2ufv", "kittiwake-h7jk2"]
    assert sorted(table.columns) == ["labels.json", "sample.csv"]
    assert table.loc["kittiwake-h7jk2", "sample.csv"].md5 == md5_b64(b"a,b\n")
    paths = wq.download_files(files=table, destination=tmp_path)
    assert list(paths.index.names) == ["run", "step"]
    assert all(math.isnan(step) for _, step in paths.index)
    assert Path(paths.loc[("kittiwake-i2ufv", math.nan), "labels.json"]).read_bytes() == b"{}"
    named = wq.fetch_runs_table(path, runs="x1$", attributes=["config.yaml", "missing.txt"], api=api)
    assert list(named.index) == ["other-x1"] and list(named.columns) == ["config.yaml"]
    plain = wq.fetch_runs_table(path, runs=["other-x1"], api=api)
    assert sorted(plain.columns) == ["config.yaml", "labels.json", "sample.csv"]  # never the media series


def test_a_run_that_does_not_exist_and_bad_arguments_are_clear_errors(project: tuple) -> None:
    path, api = project
    with pytest.raises(wandb_files.NotFoundError, match="no-such-run"):
        wq.fetch_series(path, runs=["no-such-run"], api=api)
    with pytest.raises(TypeError, match="step_range"):
        wq.fetch_series(path, step_range=[1, 2], api=api)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_range .* is empty"):
        wq.fetch_series(path, step_range=(3, 1), api=api)
    with pytest.raises(ValueError, match="attributes .* is not a regular expression"):
        wq.fetch_series(path, attributes="(unclosed", api=api)
    with pytest.raises(TypeError, match="runs must be"):
        wq.fetch_runs_table(path, runs=5, api=api)  # type: ignore[arg-type]
    assert isinstance(wq.fetch_series(path, runs=[], api=api), pd.DataFrame)


@pytest.mark.parametrize(
    ("spec", "media", "plain"),
    [
        (r"^predictions", ["media/%/predictions%"], ["predictions%"]),
        (r"^val/ex.*", ["media/%/val/ex%"], ["val/ex%"]),
        (r"^data_1?", ["media/%/data\\_%"], ["data\\_%"]),  # the quantifier applies to the `1`
        (r"predictions", ["media/%"], [None]),  # not anchored: every media file is a candidate
        (r"^a | ^b", ["media/%"], [None]),
        (["sample.csv", "x_y"], ["media/%/sample.csv\\_%", "media/%/x\\_y\\_%"], [None]),
        (None, ["media/%"], [None]),
    ],
)
def test_filters_go_to_the_server_as_like_patterns_where_they_can(
    spec: object, media: list[str], plain: list[str | None]
) -> None:
    matcher = _Matcher("attributes", spec)  # type: ignore[arg-type]
    assert matcher.media_patterns() == media
    if not isinstance(spec, list):
        assert matcher.patterns() == plain


def test_the_extended_regex_syntax_of_neptune_query() -> None:
    matcher = _Matcher("attributes", r"sample | labels & \.json$ | !csv & config")
    assert [matcher.matches(n) for n in ("sample.csv", "labels.json", "labels.txt", "config.yaml", "x.csv")] == [
        True,
        True,
        False,
        True,
        False,
    ]
