"""The real `wandb` client (0.31.x) works against `wandb-files server` with only WANDB_BASE_URL changed.

Every test drives `wandb.Api()` itself and checks what it returns, and where bytes move, checks them through
both clients: upload with ours and download with theirs, and the reverse.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import LiveServer, md5_b64, run_with_files

wandb = pytest.importorskip("wandb")


def test_tested_version_is_0_31() -> None:
    assert wandb.__version__.startswith("0.31.")


def test_api_start_up_viewer_and_default_entity(wandb_api: Any) -> None:
    assert wandb_api.default_entity == "admin"
    assert wandb_api.viewer.username == "admin"
    assert wandb_api.viewer.entity == "admin"


def test_run_attributes_and_path_forms(wandb_api: Any, our_api: wandb_files.Api, unique: str) -> None:
    ours = our_api.create_run(run_id=f"r{unique}", project=f"p{unique}", display_name="nice name")
    for path in (f"admin/p{unique}/r{unique}", f"admin/p{unique}/runs/r{unique}"):
        run = wandb_api.run(path)
        assert (run.id, run.entity, run.project) == (f"r{unique}", "admin", f"p{unique}")
        assert run.name == "nice name"
        assert run.state == "running"
        assert run.config == {} and dict(run.summary) == {}
        assert isinstance(run.storage_id, str) and run.storage_id == ours.storage_id
        created = datetime.datetime.fromisoformat(run.created_at.replace("Z", "+00:00"))
        assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600
        assert run.tags == [] and run.group is None and run.job_type is None
        assert run.user.username == "admin"


def test_missing_run_is_the_clients_own_clear_error(wandb_api: Any, our_api: wandb_files.Api, unique: str) -> None:
    our_api.create_run(run_id="exists", project=f"p{unique}")
    with pytest.raises(wandb.errors.CommError, match="Could not find run"):
        wandb_api.run(f"admin/p{unique}/missing")


def test_files_paging_len_indexing_and_names(
    wandb_api: Any, our_api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    contents = {f"dir{i % 3}/f_{i:02d}.bin": os.urandom(100 + i) for i in range(11)}
    run = run_with_files(our_api, tmp_path, contents, project=f"p{unique}")
    theirs = wandb_api.run("/".join(run.path))
    files = theirs.files(per_page=3)
    assert len(files) == 11
    listed = list(files)
    assert [f.name for f in listed] == sorted(contents)
    assert files[0].name == sorted(contents)[0]
    assert files[10].name == sorted(contents)[10]
    for f in listed:
        assert f.size == len(contents[f.name])
        assert f.md5 == md5_b64(contents[f.name])
        assert f.mimetype == "application/octet-stream"
        assert f.url == f"{our_api.base_url}/files/{'/'.join(run.path)}/{f.name}"
        assert f.direct_url.startswith(our_api.base_url + "/blobs/")
        assert f.updated_at.endswith("Z")
        assert f.path_uri == ""
    picked = theirs.files(names=[sorted(contents)[4], sorted(contents)[7]])
    assert [f.name for f in picked] == [sorted(contents)[4], sorted(contents)[7]]
    assert theirs.file(sorted(contents)[5]).size == len(contents[sorted(contents)[5]])


def test_upload_with_ours_download_with_theirs(
    wandb_api: Any, our_api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    contents = {"model.ckpt": os.urandom(3 * 1024 * 1024 + 5), "nested/deep/notes.txt": b"hello\n", "empty": b""}
    run = run_with_files(our_api, tmp_path, contents, project=f"p{unique}")
    dest = tmp_path / "theirs"
    for f in wandb_api.run("/".join(run.path)).files():
        f.download(root=str(dest), replace=True)
    for name, data in contents.items():
        assert (dest / name).read_bytes() == data


def test_upload_with_theirs_download_with_ours(
    wandb_api: Any, our_api: wandb_files.Api, tmp_path: Path, unique: str
) -> None:
    run = our_api.create_run(project=f"p{unique}")
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    data = os.urandom(200_000)
    (source / "sub" / "weights.bin").write_bytes(data)
    uploaded = wandb_api.run("/".join(run.path)).upload_file(str(source / "sub" / "weights.bin"), root=str(source))
    assert uploaded.name == "sub/weights.bin" and uploaded.size == len(data)
    ours = run.file("sub/weights.bin")
    assert ours.md5 == md5_b64(data)
    ours.download(root=tmp_path / "ours").close()
    assert (tmp_path / "ours" / "sub" / "weights.bin").read_bytes() == data


def test_delete_with_theirs(wandb_api: Any, our_api: wandb_files.Api, tmp_path: Path, unique: str) -> None:
    run = run_with_files(our_api, tmp_path, {"a.txt": b"a", "b.txt": b"b"}, project=f"p{unique}")
    theirs = wandb_api.run("/".join(run.path))
    theirs.file("a.txt").delete()
    assert [f.name for f in run.files()] == ["b.txt"]
    assert [f.name for f in wandb_api.run("/".join(run.path)).files()] == ["b.txt"]


def test_runs_of_a_project_over_several_pages(wandb_api: Any, our_api: wandb_files.Api, unique: str) -> None:
    ids = [our_api.create_run(run_id=f"run{i}", project=f"p{unique}").id for i in range(5)]
    runs = wandb_api.runs(f"admin/p{unique}", per_page=2)
    assert len(runs) == 5
    assert sorted(r.id for r in runs) == sorted(ids)


def test_another_users_project_is_an_error_not_data(live_server: LiveServer, wandb_api: Any, unique: str) -> None:
    bob = wandb_files.Api(api_key=live_server.add_user("bob"), base_url=live_server.base_url)
    bobs = bob.create_run(project=f"p{unique}")
    with pytest.raises(Exception, match="permission|access") as info:
        wandb_api.run(f"bob/p{unique}/{bobs.id}")
    assert "Traceback" not in str(info.value)


def test_what_we_do_not_implement_is_a_clear_graphql_error(wandb_api: Any) -> None:
    with pytest.raises(Exception) as info:
        wandb_api.artifact("admin/p/some-artifact:v0")
    assert "wandb-files server does not implement artifacts" in str(info.value), info.value


def test_projects_of_an_entity(wandb_api: Any, our_api: wandb_files.Api, unique: str) -> None:
    for name in ("a", "b", "c"):
        our_api.create_run(project=f"proj{unique}{name}")
    names = [p.name for p in wandb_api.projects("admin", per_page=2)]
    assert [n for n in names if unique in n] == [f"proj{unique}{x}" for x in "abc"]
    project = wandb_api.project(f"proj{unique}b", entity="admin")
    assert project.name == f"proj{unique}b" and project.entity == "admin"


def test_the_clients_operations_for_our_features_are_valid_against_our_schema() -> None:
    from pathlib import Path

    from graphql import build_schema, parse, validate
    from wandb.apis._generated import operations

    schema = build_schema((Path(wandb_files.__file__).parent / "server" / "schema.graphql").read_text())
    for name in (
        "GET_VIEWER_GQL",
        "GET_DEFAULT_ENTITY_GQL",
        "GET_PROJECT_GQL",
        "GET_PROJECTS_GQL",
        "IS_PROJECT_READ_ONLY_GQL",
    ):
        assert validate(schema, parse(getattr(operations, name))) == [], name
