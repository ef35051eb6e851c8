"""Run paths and base URLs as pure logic: no request is sent for any of these."""

from __future__ import annotations

import pytest

import wandb_files
from wandb_files.api import check_base_url
from wandb_files.errors import ConfigurationError
from wandb_files.paginator import batches


@pytest.fixture
def api() -> wandb_files.Api:
    # Nothing listens there: a request would fail the test.
    return wandb_files.Api(api_key="k" * 40, base_url="http://127.0.0.1:9", overrides={"entity": "me", "project": "p"})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("e/p/r", ("e", "p", "r")),
        (" e/p/r/ ", ("e", "p", "r")),
        ("e/p/runs/r", ("e", "p", "r")),
        ("e/p:r", ("e", "p", "r")),
        ("p2/r", ("me", "p2", "r")),
        ("r", ("me", "p", "r")),
        ("https://wandb.ai/e/p/runs/r", ("e", "p", "r")),
        ("https://wandb.ai/e/p/runs/r/overview", ("e", "p", "r")),
        ("https://wandb.ai/e/p/runs/r/files/media/images?nw=x", ("e", "p", "r")),
        ("http://127.0.0.1:8080/e/p/runs/r/logs", ("e", "p", "r")),
    ],
)
def test_run_path_forms(api: wandb_files.Api, path: str, expected: tuple[str, str, str]) -> None:
    assert api.parse_run_path(path) == expected


@pytest.mark.parametrize("bad", ["", "e/p/r/x", "e//r", "e p/r/x", "e/p:", "/"])
def test_bad_run_paths_list_the_forms(api: wandb_files.Api, bad: str) -> None:
    with pytest.raises(ValueError, match="entity/project/run_id"):
        api.parse_run_path(bad)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.wandb.ai", "https://api.wandb.ai"),
        ("https://api.wandb.ai/", "https://api.wandb.ai"),
        ("http://127.0.0.1:8080/graphql", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/graphql/", "http://127.0.0.1:8080"),
        ("https://host/prefix/graphql", "https://host/prefix"),
        ("https://host/prefix", "https://host/prefix"),
    ],
)
def test_base_urls(url: str, expected: str) -> None:
    assert check_base_url(url) == expected


@pytest.mark.parametrize("bad", ["ftp://host", "host:8080", "http://", "https://host?x=1"])
def test_bad_base_urls(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="http"):
        check_base_url(bad)


def test_batches_are_lazy_and_bounded() -> None:
    assert [len(b) for b in batches(range(1201))] == [500, 500, 201]
    assert list(batches([], 3)) == []
    assert list(batches(iter("abcde"), 2)) == [["a", "b"], ["c", "d"], ["e"]]
