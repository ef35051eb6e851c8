"""File, run, project and user name validation (in process; no server needed)."""

from __future__ import annotations

import pytest

from wandb_files.server.names import (
    InvalidName,
    validate_file_name,
    validate_run_or_project_name,
    validate_user_name,
)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "media/images/pic_1.png",
        "deep/er/path/file.tar.gz",
        "ünïcode/名前.txt",
        "a..b",
        ".hidden",
        "x" * 255,
        "/".join(["x" * 255] * 4),
    ],
)
def test_good_file_names(name: str) -> None:
    assert validate_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/abs",
        "../x",
        "a/../b",
        "a/./b",
        ".",
        "..",
        "a//b",
        "dir/",
        "C:\\x",
        "C:x",
        "c:/x",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "x" * 1025,
        "é" * 513,
        None,
        5,
        "x" * 256,
        "a/" + "b" * 256,
        "a\x85b",
        "a\u009bb",
        "report\u202etxt.exe",
        "a\u202ab",
        "a\u2066b",
        "a\u200eb",
        "a\u061cb",
        "a\u2029b",
        "a\udc80b",
    ],
)
def test_bad_file_names(name: object) -> None:
    with pytest.raises(InvalidName):
        validate_file_name(name)


def test_run_and_project_names() -> None:
    assert validate_run_or_project_name("my-run_1.2", "name") == "my-run_1.2"
    for bad in ["", ".", "..", "a/b", "a b", "x" * 129]:
        with pytest.raises(InvalidName, match="modelName"):
            validate_run_or_project_name(bad, "modelName")


def test_user_names() -> None:
    assert validate_user_name("Bob_2-x") == "Bob_2-x"
    for bad in ["", "a.b", "a b", "x" * 65]:
        with pytest.raises(InvalidName):
            validate_user_name(bad)
