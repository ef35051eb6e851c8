"""`Files`: lazy cursor paging, len, indexing, filters, W&B's paginator names, direct constructors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import LiveServer, md5_b64, random_files, run_with_files
from wandb_files import File, Files
from wandb_files.errors import NotFoundError
from wandb_files.files import s3_uri

PER_PAGE = 4


@pytest.fixture(scope="module")
def module_api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.fixture(scope="module")
def runs_by_size(module_api: wandb_files.Api, tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple]:
    """Runs holding 0, 1, per_page, per_page + 1 and several pages of files."""
    tmp = tmp_path_factory.mktemp("runs")
    result = {}
    for n in (0, 1, PER_PAGE, PER_PAGE + 1, 3 * PER_PAGE + 2):
        files = random_files(n)
        result[n] = (run_with_files(module_api, tmp, files, project="paging"), files)
    return result


@pytest.mark.parametrize("n", [0, 1, PER_PAGE, PER_PAGE + 1, 3 * PER_PAGE + 2])
def test_iteration_len_and_metadata_for_every_page_shape(runs_by_size: dict, n: int) -> None:
    run, contents = runs_by_size[n]
    files = run.files(per_page=PER_PAGE)
    listed = list(files)
    assert [f.name for f in listed] == sorted(contents)
    assert len(files) == n
    for f in listed:
        assert f.size == len(contents[f.name])
        assert f.md5 == md5_b64(contents[f.name])
        assert f.mimetype
        assert f.updated_at and f.updated_at.endswith("Z")
        assert f.url and f.url.endswith("/" + f.name)
        assert f.direct_url and f.direct_url.startswith("http://127.0.0.1")
        assert f.path_uri == ""  # local disk, not S3
        assert f.run is run
    assert files.more is (n > PER_PAGE)  # the cache only holds the first page; loops page on their own


def test_indexing_and_slicing(runs_by_size: dict) -> None:
    run, contents = runs_by_size[3 * PER_PAGE + 2]
    names = sorted(contents)
    files = run.files(per_page=PER_PAGE)
    assert files[0].name == names[0]
    assert files[-1].name == names[-1]
    assert [f.name for f in files[2:5]] == names[2:5]
    assert [f.name for f in files[::-5]] == names[::-5]
    assert files[PER_PAGE * 2].name == names[PER_PAGE * 2]
    with pytest.raises(IndexError):
        files[len(names)]
    with pytest.raises(IndexError):
        files[-len(names) - 1]
    with pytest.raises(TypeError):
        files["0"]  # type: ignore[call-overload]


def test_nested_loops_do_not_disturb_each_other(runs_by_size: dict) -> None:
    run, contents = runs_by_size[PER_PAGE + 1]
    files = run.files(per_page=2)
    pairs = [(a.name, b.name) for a in files for b in files]
    names = sorted(contents)
    assert pairs == [(a, b) for a in names for b in names]


def test_iterating_twice_gives_the_same_files(runs_by_size: dict) -> None:
    run, _ = runs_by_size[3 * PER_PAGE + 2]
    files = run.files(per_page=PER_PAGE)
    assert [f.name for f in files] == [f.name for f in files]


def test_names_filter_has_an_exact_len(runs_by_size: dict) -> None:
    run, contents = runs_by_size[3 * PER_PAGE + 2]
    wanted = [*sorted(contents)[3:9], "no-such-file"]
    files = run.files(names=wanted, per_page=4)
    assert len(files) == 6
    assert [f.name for f in files] == sorted(contents)[3:9]


def test_pattern_filter_uses_like_syntax_and_has_an_exact_len(module_api: wandb_files.Api, tmp_path: Path) -> None:
    run = run_with_files(
        module_api, tmp_path, {"a.json": b"{}", "b/c.json": b"[]", "d.txt": b"x", "e_json": b"y"}, "pattern"
    )
    assert [f.name for f in run.files(pattern="%.json", per_page=1)] == ["a.json", "b/c.json"]
    assert len(run.files(pattern="%.json", per_page=1)) == 2
    assert [f.name for f in run.files(pattern="b/%")] == ["b/c.json"]
    assert [f.name for f in run.files(pattern="_.txt")] == ["d.txt"]
    assert len(run.files(pattern="nothing%")) == 0
    assert len(run.files()) == 4


def test_filter_arguments_are_checked_before_any_request(runs_by_size: dict) -> None:
    run, _ = runs_by_size[1]
    with pytest.raises(ValueError, match="names or pattern"):
        run.files(names=["a"], pattern="%")
    with pytest.raises(TypeError, match="single string"):
        run.files(names="f_0000.bin")
    with pytest.raises(TypeError, match="strings"):
        run.files(names=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="pattern"):
        run.files(pattern=5)  # type: ignore[arg-type]
    for bad in (0, -1, 10_001):
        with pytest.raises(ValueError, match="per_page"):
            run.files(per_page=bad)
    with pytest.raises(TypeError, match="per_page"):
        run.files(per_page="50")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="names must be a list of file names, not int"):
        run.files(names=5)  # type: ignore[arg-type]


def test_a_names_filter_is_read_once_and_an_empty_one_selects_nothing(
    module_api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    for run_id in ("one", "two"):
        run = module_api.create_run(run_id=run_id, project=f"gen{unique}")
        source = tmp_path / run_id
        for name in ("a.txt", "b.txt", "c.txt"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_text(name)
            run.upload_file(source / name, root=source)
    runs = module_api.runs(f"gen{unique}")
    # A generator filters every run, not only the first one it was read for.
    assert sorted((f.run.id, f.name) for f in runs.files(names=(n for n in ["b.txt"]))) == [
        ("one", "b.txt"),
        ("two", "b.txt"),
    ]
    # A filter that names nothing selects nothing (W&B's client would list every file), without a request.
    assert list(runs.files(names=[])) == []
    empty = module_api.run(f"gen{unique}/one").files(names=iter([]))
    assert len(empty) == 0 and list(empty) == [] and empty.last_response is None


def test_indices_may_be_numpy_integers(runs_by_size: dict) -> None:
    numpy = pytest.importorskip("numpy")
    run, contents = runs_by_size[3 * PER_PAGE + 2]
    files = run.files(per_page=PER_PAGE)
    assert files[numpy.int64(2)].name == sorted(contents)[2]
    assert [f.name for f in files[numpy.int64(1) : numpy.int32(3)]] == sorted(contents)[1:3]
    with pytest.raises(TypeError, match="indices must be integers or slices, not str"):
        files["2"]  # type: ignore[call-overload]


@contextlib.contextmanager
def _counted_run(live_server: LiveServer, tmp_path: Path, files: dict[str, bytes], project: str) -> Iterator[Any]:
    """(proxy, run): a new run holding `files`, reached through a FaultProxy that counts the requests."""
    from wandb_files.testing import FaultProxy

    with FaultProxy(live_server.base_url) as proxy:
        api = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        yield proxy, run_with_files(api, tmp_path, files, project)


def test_a_bounded_slice_fetches_only_the_pages_up_to_its_stop(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    with _counted_run(live_server, tmp_path, random_files(30, prefix="p"), f"slice{unique}") as (proxy, run):
        files = run.files(pattern="p_%", per_page=4)  # filtered: its count would need a walk of every page
        proxy.reset_stats()
        assert [f.name for f in files[:10]] == [f"p_{i:04d}.bin" for i in range(10)]
        assert proxy.stats["requests"] == 3  # pages of 4, 4 and 4 files; not 8 pages, twice
        assert [f.name for f in files[2:6:2]] == ["p_0002.bin", "p_0004.bin"]
        assert proxy.stats["requests"] == 3  # already fetched
        assert [f.name for f in files[-2:]] == ["p_0028.bin", "p_0029.bin"]  # needs the count: walks on


def test_list_of_a_filtered_collection_walks_it_once(live_server: LiveServer, tmp_path: Path, unique: str) -> None:
    with _counted_run(live_server, tmp_path, random_files(30, prefix="p"), f"once{unique}") as (proxy, run):
        proxy.reset_stats()
        listed = list(run.files(pattern="p_%", per_page=4))  # list() asks len() first: a filtered count walks
        assert [f.name for f in listed] == [f"p_{i:04d}.bin" for i in range(30)]
        assert proxy.stats["requests"] == 8  # 8 pages, each asked once (it was 16: the count, then the loop)


def test_a_loop_past_its_first_page_reads_the_next_page_ahead(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    with _counted_run(live_server, tmp_path, random_files(12, prefix="a"), f"ahead{unique}") as (proxy, run):
        proxy.reset_stats()
        for _ in run.files(per_page=3):
            break
        time.sleep(0.3)
        assert proxy.stats["requests"] == 1  # a loop that stops in its first page asks for nothing more

        proxy.reset_stats()
        names = []
        for file in run.files(per_page=3):
            names.append(file.name)
            if len(names) == 4:  # the first file of page 2: page 3 is asked for before the loop gets to it
                deadline = time.monotonic() + 5
                while proxy.stats["requests"] < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert proxy.stats["requests"] == 3
        assert names == [f"a_{i:04d}.bin" for i in range(12)]
        assert proxy.stats["requests"] == 4  # 4 pages, each asked once; the last says no more follow


def test_bulk_delete_sends_one_request_per_500_files_and_reports_each_failure(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    from wandb_files.testing import FaultProxy

    with FaultProxy(live_server.base_url) as proxy:
        api = wandb_files.Api(api_key=live_server.api_key, base_url=proxy.url)
        run = api.create_run(project=f"rm{unique}")
        contents = random_files(620, size=10, prefix="d")
        source = tmp_path / "src"
        for name, data in contents.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        run.upload_files([source / n for n in contents], root=source, progress=False)
        doomed = run.files(pattern="d_%", per_page=1000)
        proxy.reset_stats()
        deleted = doomed.delete()
        assert proxy.stats["requests"] == 1 + 2  # one listing page, then two deleteFiles (500 + 120)
    assert sorted(f.name for f in deleted) == sorted(contents)
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    assert len(api.run("/".join(run.path)).files()) == 0

    keep = run_with_files(api, tmp_path, {"x.txt": b"x", "y.txt": b"y", "z.txt": b"z"}, f"rm{unique}")
    stale = keep.file("y.txt")
    stale.delete()  # deleted behind the collection's back
    with pytest.raises(wandb_files.DeleteError) as info:
        wandb_files.files.delete_files(keep.client, [keep.file("x.txt"), stale, keep.file("z.txt")])
    assert [name for name, _ in info.value.failures] == ["y.txt"]
    assert isinstance(info.value.failures[0][1], NotFoundError)
    assert sorted(f.name for f in info.value.results) == ["x.txt", "z.txt"]
    assert len(keep.files()) == 0

    named = run_with_files(api, tmp_path, {"k.txt": b"k", "l.txt": b"l"}, f"rm{unique}")
    with pytest.raises(wandb_files.DeleteError) as missing:
        named.delete_files(["k.txt", "no-such.txt"])
    assert [name for name, _ in missing.value.failures] == ["no-such.txt"]
    assert [f.name for f in named.files()] == ["l.txt"]


def test_wandb_paginator_names(runs_by_size: dict) -> None:
    run, contents = runs_by_size[PER_PAGE + 1]
    files = Files(run.client, run, per_page=PER_PAGE)
    assert files.cursor is None and files.more is True and files.last_response is None
    files.update_variables()
    assert files.variables["fileLimit"] == PER_PAGE and files.variables["fileCursor"] is None
    assert files.length == PER_PAGE + 1  # loads page 1, reads fileCount
    assert files.cursor is not None and files.more is True
    first = files.convert_objects()
    assert [f.name for f in first] == sorted(contents)[:PER_PAGE]
    files.update_variables()
    assert files.variables["fileCursor"] == files.cursor


def test_repr_shows_run_filters_and_count_without_fetching_everything(runs_by_size: dict) -> None:
    run, _ = runs_by_size[3 * PER_PAGE + 2]
    files = run.files(per_page=PER_PAGE)
    assert repr(files) == f"<Files {'/'.join(run.path)} (? files)>"
    files[0]
    assert repr(files) == f"<Files {'/'.join(run.path)} ({3 * PER_PAGE + 2} files)>"
    assert "pattern='f%'" in repr(run.files(pattern="f%"))
    assert repr(files[0]).startswith("<File f_0000.bin (")


def test_file_of_a_run(runs_by_size: dict) -> None:
    run, contents = runs_by_size[PER_PAGE]
    name = sorted(contents)[2]
    assert run.file(name).md5 == md5_b64(contents[name])
    with pytest.raises(NotFoundError, match="no-such"):
        run.file("no-such")


def test_files_of_a_deleted_run_are_not_found(module_api: wandb_files.Api, unique: str) -> None:
    run = module_api.create_run(project=f"p{unique}")
    ghost = wandb_files.Run(module_api.client, run.entity, run.project, "ghost", attrs={})
    with pytest.raises(NotFoundError, match="ghost"):
        list(ghost.files())


def test_the_seed_constructors(module_api: wandb_files.Api, runs_by_size: dict) -> None:
    run, contents = runs_by_size[1]
    files = Files(module_api.client, run)
    assert [f.name for f in files] == list(contents)
    attrs = {
        "id": "file-id",
        "name": "example_file.txt",
        "url": "https://example.com/file",
        "direct_url": "https://example.com/direct_file",
        "sizeBytes": 1024,
        "mimetype": "text/plain",
        "updated_at": "2025-03-25T21:43:51Z",
        "md5": "d41d8cd98f00b204e9800998ecf8427e",
        "someFieldFromTheFuture": {"x": 1},
    }
    f = File(module_api.client, attrs, run)
    assert (f.id, f.name, f.size, f.direct_url, f.updated_at) == (
        "file-id",
        "example_file.txt",
        1024,
        "https://example.com/direct_file",
        "2025-03-25T21:43:51Z",
    )
    nulls = File(module_api.client, {"name": "n", "sizeBytes": None, "md5": None, "url": None})
    assert nulls.size == 0 and nulls.md5 is None and nulls.run is None
    with pytest.raises(ValueError, match="name"):
        File(module_api.client, {"url": "x"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://my-bucket.s3.amazonaws.com/runs/a/file.txt?X-Amz-Signature=x", "s3://my-bucket/runs/a/file.txt"),
        ("https://my.bucket.s3.us-west-2.amazonaws.com/k%20ey", "s3://my.bucket/k ey"),
        ("https://s3.eu-central-1.amazonaws.com/bkt/deep/key.bin", "s3://bkt/deep/key.bin"),
        ("http://127.0.0.1:9000/bkt/key?X-Amz-Credential=abc&X-Amz-Signature=def", "s3://bkt/key"),
        ("https://storage.googleapis.com/bkt/key", ""),
        ("http://127.0.0.1:8080/blobs/token", ""),
        (None, ""),
    ],
)
def test_path_uri(url: str | None, expected: str) -> None:
    assert s3_uri(url) == expected


def test_notebook_rendering_and_pandas(runs_by_size: dict, module_api: wandb_files.Api) -> None:
    run, contents = runs_by_size[3 * PER_PAGE + 2]
    files = run.files(per_page=PER_PAGE)
    page = files._repr_html_()
    assert page.count("<tr>") == PER_PAGE + 1  # header + the first page only
    assert f"showing {PER_PAGE} of {3 * PER_PAGE + 2}" in page
    assert "f_0000.bin" in page and "<script" not in page
    evil = File(module_api.client, {"name": "<script>alert(1)</script>.txt"})
    assert "<script>" not in evil._repr_html_() and "&lt;script&gt;" in evil._repr_html_()
    frame = files.to_pandas()
    assert list(frame.columns) == ["id", "name", "size", "mimetype", "md5", "updated_at", "url"]
    assert list(frame["name"]) == sorted(contents)
    assert list(frame["size"]) == [len(contents[n]) for n in sorted(contents)]
    assert "direct_url" not in frame.columns  # signed URLs stay out of tables
    assert repr(module_api).startswith("<Api http://127.0.0.1:")
    module_api.viewer
    assert repr(module_api).endswith(" as admin>")
