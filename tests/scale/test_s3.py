"""The server with `--blob-store s3://bucket/prefix` over an S3-compatible server (moto) on loopback.

Bytes go to and from the bucket through presigned URLs, never through our server; markRunFilesUploaded
commits an upload with the size and md5 the bucket reports; deleting or replacing a file deletes its object.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import wandb_files
import wandb_files.files
from tests.conftest import LiveServer
from tests.server.conftest import CREATE_FILES, DELETE_FILES, RUN_FILES, Client, md5_b64

from .services import S3Service

MARK = """
mutation MarkRunFilesUploaded($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  markRunFilesUploaded(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    success } }
"""


def put_and_mark(client: Client, path: tuple[str, str, str], files: dict[str, bytes], mark: bool = True) -> list[str]:
    """createRunFiles, PUT each file to its presigned URL, then markRunFilesUploaded; returns the URLs."""
    entity, project, run = path
    created = client.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": list(files)})
    urls = [f["uploadUrl"] for f in created["createRunFiles"]["files"]]
    for url, data in zip(urls, files.values()):
        response = requests.put(url, data=data, timeout=30)
        assert response.status_code == 200, response.text
    if mark:
        answer = client.gql(MARK, {"entity": entity, "project": project, "run": run, "files": list(files)})
        assert answer["markRunFilesUploaded"]["success"] is True
    return urls


def listing(client: Client, path: tuple[str, str, str], **variables: Any) -> dict[str, Any]:
    return client.files(*path, **variables)


@pytest.fixture
def s3_run(s3_admin: Client, unique: str) -> tuple[str, str, str]:
    s3_admin.make_run(f"p-{unique}", f"r-{unique}")
    return "admin", f"p-{unique}", f"r-{unique}"


def test_feature_is_advertised(s3_admin: Client) -> None:
    features = s3_admin.gql("{ serverInfo { features { name isEnabled } } }")["serverInfo"]["features"]
    assert {"name": "MARK_RUN_FILES_UPLOADED", "isEnabled": True} in features


def test_upload_is_presigned_and_committed_by_mark(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    data = os.urandom(5000)
    urls = put_and_mark(s3_admin, s3_run, {"a/b.bin": data}, mark=False)
    # The PUT went straight to the bucket...
    assert urls[0].startswith(f"{s3.endpoint_url}/{s3_bucket}/blobs/")
    assert "X-Amz-Signature=" in urls[0]
    # ...and is not a file until it is marked.
    assert listing(s3_admin, s3_run)["fileCount"] == 0
    s3_admin.gql(MARK, {"entity": s3_run[0], "project": s3_run[1], "run": s3_run[2], "files": ["a/b.bin"]})
    run = listing(s3_admin, s3_run)
    assert run["fileCount"] == 1
    node = run["files"]["edges"][0]["node"]
    assert (node["name"], node["sizeBytes"], node["md5"]) == ("a/b.bin", 5000, md5_b64(data))
    # Marking again is harmless.
    s3_admin.gql(MARK, {"entity": s3_run[0], "project": s3_run[1], "run": s3_run[2], "files": ["a/b.bin"]})
    assert listing(s3_admin, s3_run)["fileCount"] == 1


def test_mark_without_upload_is_not_found(s3_admin: Client, s3_run: tuple[str, str, str]) -> None:
    s3_admin.gql(CREATE_FILES, {"entity": s3_run[0], "project": s3_run[1], "run": s3_run[2], "files": ["never.bin"]})
    error = s3_admin.gql_error(
        MARK, {"entity": s3_run[0], "project": s3_run[1], "run": s3_run[2], "files": ["never.bin"]}
    )
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert listing(s3_admin, s3_run)["fileCount"] == 0


def test_downloads_come_from_the_bucket(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    data = os.urandom(3000)
    put_and_mark(s3_admin, s3_run, {"img.png": data})
    node = listing(s3_admin, s3_run)["files"]["edges"][0]["node"]
    # directUrl: a presigned GET of the object, carrying the file's media type.
    direct = node["directUrl"]
    assert direct.startswith(f"{s3.endpoint_url}/{s3_bucket}/blobs/")
    response = requests.get(direct, timeout=30)
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert requests.get(direct, headers={"Range": "bytes=10-19"}, timeout=30).content == data[10:20]
    # url: needs the key, then redirects to a presigned GET; the bytes come from the S3 endpoint.
    assert requests.get(node["url"], allow_redirects=False, timeout=30).status_code == 401
    redirect = requests.get(node["url"], auth=s3_admin.auth, allow_redirects=False, timeout=30)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(f"{s3.endpoint_url}/{s3_bucket}/blobs/")
    assert requests.get(location, timeout=30).content == data
    followed = requests.get(node["url"], auth=s3_admin.auth, timeout=30)
    assert followed.content == data
    assert [r.status_code for r in followed.history] == [302]
    assert followed.url.startswith(s3.endpoint_url)
    # requests drops Authorization when a redirect changes host (here: port), as our client does.
    assert "authorization" not in {k.lower() for k in followed.request.headers}


def test_replace_and_delete_delete_objects(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    before = set(s3.keys(s3_bucket))
    put_and_mark(s3_admin, s3_run, {"x.txt": b"one"})
    first = set(s3.keys(s3_bucket)) - before
    assert len(first) == 1
    put_and_mark(s3_admin, s3_run, {"x.txt": b"two!"})
    second = set(s3.keys(s3_bucket)) - before
    assert len(second) == 1 and second != first  # the replaced object is gone
    node = listing(s3_admin, s3_run)["files"]["edges"][0]["node"]
    assert (node["sizeBytes"], node["md5"]) == (4, md5_b64(b"two!"))
    run = listing(s3_admin, s3_run)
    s3_admin.gql(DELETE_FILES, {"files": [node["id"]], "projectId": None})
    assert set(s3.keys(s3_bucket)) - before == set()
    assert listing(s3_admin, s3_run)["fileCount"] == run["fileCount"] - 1 == 0


def test_newest_of_several_pending_uploads_wins(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    before = set(s3.keys(s3_bucket))
    entity, project, run = s3_run
    urls = []
    for _ in range(2):
        created = s3_admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["n.txt"]})
        urls.append(created["createRunFiles"]["files"][0]["uploadUrl"])
    requests.put(urls[0], data=b"older", timeout=30)
    requests.put(urls[1], data=b"newer", timeout=30)
    s3_admin.gql(MARK, {"entity": entity, "project": project, "run": run, "files": ["n.txt"]})
    node = listing(s3_admin, s3_run)["files"]["edges"][0]["node"]
    assert node["md5"] == md5_b64(b"newer")
    assert len(set(s3.keys(s3_bucket)) - before) == 1  # the superseded object was deleted


def test_upload_url_of_a_listed_file_is_presigned_too(s3_admin: Client, s3_run: tuple[str, str, str]) -> None:
    put_and_mark(s3_admin, s3_run, {"u.txt": b"first"})
    run = s3_admin.gql(RUN_FILES, {"entity": s3_run[0], "project": s3_run[1], "name": s3_run[2], "upload": True})
    url = run["project"]["run"]["files"]["edges"][0]["node"]["url"]
    assert "X-Amz-Signature=" in url
    assert requests.put(url, data=b"second", timeout=30).status_code == 200
    s3_admin.gql(MARK, {"entity": s3_run[0], "project": s3_run[1], "run": s3_run[2], "files": ["u.txt"]})
    assert listing(s3_admin, s3_run)["files"]["edges"][0]["node"]["md5"] == md5_b64(b"second")


def test_fast_presigner_matches_botocore(s3: S3Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb_files.server.storage import S3BlobStore

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    for endpoint in (s3.endpoint_url, None, "https://minio.example.com:9000/base"):
        store = S3BlobStore("s3://bkt/pre/fix", endpoint_url=endpoint, url_ttl=600)
        key = "ab" * 16
        for operation, extra in (("get_object", {"ResponseContentType": "image/png"}), ("put_object", {})):
            reference = store.client.generate_presigned_url(
                operation, Params={"Bucket": "bkt", "Key": store.object_key(key), **extra}, ExpiresIn=600
            )
            query = parse_qs(urlsplit(reference).query)
            now = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            ours = (store.presigned_get(key, "image/png", now=now) if operation == "get_object"
                    else store.presigned_put(key, now=now))
            assert urlsplit(ours)._replace(query="") == urlsplit(reference)._replace(query="")
            assert parse_qs(urlsplit(ours).query) == query


# --- the two clients, end to end -------------------------------------------------------------------


def test_our_sdk_round_trip(s3_live: LiveServer, s3_admin: Client, s3: S3Service, s3_bucket: str,
                            tmp_path: Path, unique: str) -> None:
    api = wandb_files.Api(api_key=s3_live.api_key, base_url=s3_live.base_url)
    run = api.create_run(run_id=f"r{unique}", project=f"p{unique}")
    contents = {f"d/f{i}.bin": os.urandom(1000 + i) for i in range(5)}
    source = tmp_path / "src"
    for name, data in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    uploaded = run.upload_files([source / n for n in contents], root=source, progress=False)
    assert [f.md5 for f in uploaded] == [md5_b64(d) for d in contents.values()]
    files = run.files(per_page=2)
    assert len(files) == 5
    listed = list(files)
    assert [f.name for f in listed] == sorted(contents)
    for f in listed:
        assert f.path_uri.startswith(f"s3://{s3_bucket}/blobs/")
        assert f.path_uri.split("/", 3)[3] in s3.keys(s3_bucket)
        assert f.md5 == md5_b64(contents[f.name])
        f.download(root=str(tmp_path / "out"), replace=True).close()
        assert (tmp_path / "out" / f.name).read_bytes() == contents[f.name]
    gone = run.file("d/f0.bin")
    key = gone.path_uri.split("/", 3)[3]
    gone.delete()
    assert key not in s3.keys(s3_bucket)
    assert len(run.files()) == 4


def test_real_wandb_client_round_trip(s3_live: LiveServer, s3: S3Service, s3_bucket: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    wandb = pytest.importorskip("wandb", reason="the real wandb client is installed by `make test` ([compat])")
    monkeypatch.setenv("WANDB_BASE_URL", s3_live.base_url)
    monkeypatch.setenv("WANDB_API_KEY", s3_live.api_key)
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    wandb_files.Api(api_key=s3_live.api_key, base_url=s3_live.base_url).create_run(
        run_id=f"r{unique}", project=f"p{unique}"
    )
    api = wandb.Api()
    run = api.run(f"admin/p{unique}/r{unique}")
    data = os.urandom(4321)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.ckpt").write_bytes(data)
    uploaded = run.upload_file(str(tmp_path / "src" / "model.ckpt"), root=str(tmp_path / "src"))
    assert uploaded.name == "model.ckpt"
    assert uploaded.size == 4321 and uploaded.md5 == md5_b64(data)
    files = run.files()
    assert len(files) == 1
    (theirs,) = list(files)
    # wandb's own path_uri knows only amazonaws.com hosts (it warns and gives "" for this loopback endpoint);
    # ours reads any presigned S3 URL.
    uri = wandb_files.files.s3_uri(theirs.direct_url)
    assert uri.startswith(f"s3://{s3_bucket}/blobs/")
    assert theirs.path_uri in ("", uri)
    theirs.download(root=str(tmp_path / "out"), replace=True)
    assert (tmp_path / "out" / "model.ckpt").read_bytes() == data
    key = uri.split("/", 3)[3]
    assert key in s3.keys(s3_bucket)
    theirs.delete()
    assert key not in s3.keys(s3_bucket)
    assert len(api.run(f"admin/p{unique}/r{unique}").files()) == 0
