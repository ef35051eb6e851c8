"""The server with `--blob-store s3://bucket/prefix` over an S3-compatible server (moto) on loopback.

Bytes go to and from the bucket through presigned URLs, never through our server; markRunFilesUploaded
commits an upload with the size and md5 the bucket reports; deleting or replacing a file deletes its object.

Uploads given a fileSpec get URLs signed for their Content-Length and Content-MD5. moto (5.x) checks neither
presigned signatures nor Content-MD5, so what S3 itself would refuse is tested as far as moto allows: the
signatures equal botocore's, and markRunFilesUploaded refuses an object of another size or md5 than declared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import wandb_files
import wandb_files.files
from tests.support import CREATE_FILES, DELETE_FILES, RUN_FILES, Client, LiveServer, md5_b64
from tests.support.services import S3Service, s3_server

MARK = """
mutation MarkRunFilesUploaded($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  markRunFilesUploaded(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    success } }
"""


CREATE_WITH_SPECS = """
mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!,
                        $fileSpecs: [RunFileSpecInput!]) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files,
                         fileSpecs: $fileSpecs}) {
    uploadHeaders files { name uploadUrl uploadHeaders } } }
"""

FEATURES = "{ serverInfo { features { name isEnabled } } }"


def spec(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "sizeBytes": len(data), "md5": md5_b64(data)}


def create_signed(
    client: Client, path: tuple[str, str, str], specs: list[dict[str, Any]], names: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """createRunFiles with fileSpecs; the answer's files by name."""
    entity, project, run = path
    variables = {
        "entity": entity,
        "project": project,
        "run": run,
        "files": names or [s["name"] for s in specs],
        "fileSpecs": specs,
    }
    return {f["name"]: f for f in client.gql(CREATE_WITH_SPECS, variables)["createRunFiles"]["files"]}


def header_dict(item: dict[str, Any]) -> dict[str, str]:
    return dict(h.split(":", 1) for h in item["uploadHeaders"] or [])


def object_key(url: str) -> str:
    """The object key (prefix/blob key) of a path-style presigned URL."""
    return urlsplit(url).path.split("/", 2)[2]


def pending_rows(server: LiveServer, key: str) -> list[tuple[Any, ...]]:
    """The pending_uploads rows of an object key, read from the server's SQLite database."""
    db = sqlite3.connect(server.data_dir / "wandb-files.db")
    try:
        return db.execute(
            "SELECT declared_size, declared_md5, created_at FROM pending_uploads WHERE blob_key = ?",
            (key.rsplit("/", 1)[-1],),
        ).fetchall()
    finally:
        db.close()


def put_and_mark(client: Client, path: tuple[str, str, str], files: dict[str, bytes], mark: bool = True) -> list[str]:
    """createRunFiles, PUT each file to its presigned URL, then markRunFilesUploaded; returns the URLs."""
    entity, project, run = path
    created = client.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": list(files)})
    urls = [f["uploadUrl"] for f in created["createRunFiles"]["files"]]
    for url, data in zip(urls, files.values(), strict=True):
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
    features = s3_admin.gql(FEATURES)["serverInfo"]["features"]
    assert {"name": "MARK_RUN_FILES_UPLOADED", "isEnabled": True} in features
    assert {"name": "SIGNED_UPLOAD_CHECKSUMS", "isEnabled": True} in features


def test_signed_checksums_are_s3_only(live_server: LiveServer, unique: str) -> None:
    """The local store reads every byte itself: nothing to advertise, and specs are checked but sign nothing."""
    client = Client(live_server.base_url, live_server.api_key)
    assert client.gql(FEATURES)["serverInfo"]["features"] == []
    client.make_run(f"p-{unique}", f"r-{unique}")
    files = create_signed(client, ("admin", f"p-{unique}", f"r-{unique}"), [spec("a.txt", b"abc")])
    assert files["a.txt"]["uploadHeaders"] == []
    assert "/uploads/" in files["a.txt"]["uploadUrl"]


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


def test_the_web_pages_download_redirects_to_a_presigned_attachment(
    s3_live: LiveServer, s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service
) -> None:
    """The web page's download link: the same checks as `url`, then a presigned GET whose signed
    response-content-disposition makes the bucket send the bytes as an attachment (RFC 6266 filename*)."""
    from tests.support.web import WebClient

    data = os.urandom(2000)
    name = 'plots/ünï "q".png'
    put_and_mark(s3_admin, s3_run, {name: data})
    web = WebClient(s3_live)
    link = "/e/{}/{}/{}/file/".format(*s3_run) + requests.utils.quote(name)
    assert web.get(link).status_code == 401  # no session, no redirect
    web.sign_in(s3_live.api_key)
    redirect = web.get(link)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(s3.endpoint_url)
    disposition = parse_qs(urlsplit(location).query)["response-content-disposition"][0]
    assert disposition == "attachment; filename=\"_n_ _q_.png\"; filename*=UTF-8''%C3%BCn%C3%AF%20%22q%22.png"
    response = requests.get(location, timeout=30)
    assert response.content == data
    assert response.headers["content-disposition"] == disposition


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
    md5 = md5_b64(b"declared bytes")
    cases: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
        ("get_object", {"ResponseContentType": "image/png"}, {}, "host"),
        ("put_object", {}, {}, "host"),
        # botocore signs ContentLength and ContentMD5 as headers too: the URL only works with exactly these.
        (
            "put_object",
            {"ContentLength": 123456789012, "ContentMD5": md5},
            {"size": 123456789012, "md5_b64": md5},
            "content-length;content-md5;host",
        ),
        ("put_object", {"ContentLength": 0}, {"size": 0}, "content-length;host"),
    ]
    for endpoint in (s3.endpoint_url, None, "https://minio.example.com:9000/base"):
        store = S3BlobStore("s3://bkt/pre/fix", endpoint_url=endpoint, url_ttl=600)
        key = "ab" * 16
        for operation, extra, ours_extra, signed_headers in cases:
            reference = store.client.generate_presigned_url(
                operation, Params={"Bucket": "bkt", "Key": store.object_key(key), **extra}, ExpiresIn=600
            )
            query = parse_qs(urlsplit(reference).query)
            assert query["X-Amz-SignedHeaders"] == [signed_headers]
            now = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            ours = (
                store.presigned_get(key, "image/png", now=now)
                if operation == "get_object"
                else store.presigned_put(key, now=now, **ours_extra)
            )
            assert urlsplit(ours)._replace(query="") == urlsplit(reference)._replace(query="")
            assert parse_qs(urlsplit(ours).query) == query


# --- signed sizes and checksums --------------------------------------------------------------------


def test_create_run_files_signs_declared_size_and_md5(
    s3_live: LiveServer, s3_admin: Client, s3_run: tuple[str, str, str]
) -> None:
    data = os.urandom(777)
    files = create_signed(s3_admin, s3_run, [spec("signed.bin", data)], names=["signed.bin", "plain.bin"])
    signed, plain = files["signed.bin"], files["plain.bin"]
    assert parse_qs(urlsplit(signed["uploadUrl"]).query)["X-Amz-SignedHeaders"] == ["content-length;content-md5;host"]
    assert header_dict(signed) == {"Content-MD5": md5_b64(data)}
    # A name without a spec in the same call gets today's URL (as the real wandb client does).
    assert parse_qs(urlsplit(plain["uploadUrl"]).query)["X-Amz-SignedHeaders"] == ["host"]
    assert plain["uploadHeaders"] == []
    # The declaration is kept with the pending upload, for markRunFilesUploaded.
    assert [row[:2] for row in pending_rows(s3_live, object_key(signed["uploadUrl"]))] == [(777, md5_b64(data))]
    assert [row[:2] for row in pending_rows(s3_live, object_key(plain["uploadUrl"]))] == [(None, None)]


@pytest.mark.parametrize(
    ("bad_spec", "message"),
    [
        ({"name": "x.bin", "sizeBytes": 60 * 1024**3, "md5": md5_b64(b"")}, "larger than the limit"),
        ({"name": "x.bin", "sizeBytes": -1, "md5": md5_b64(b"")}, "negative"),
        ({"name": "x.bin", "sizeBytes": 3, "md5": hashlib.md5(b"abc").hexdigest()}, "base64"),
        ({"name": "x.bin", "sizeBytes": 3, "md5": base64.b64encode(b"short").decode()}, "base64"),
        ({"name": "other.bin", "sizeBytes": 3, "md5": md5_b64(b"abc")}, "not in `files`"),
        ({"name": "x.bin", "sizeBytes": "3", "md5": md5_b64(b"abc")}, "Int64"),
        ({"name": "x.bin", "sizeBytes": 2**63, "md5": md5_b64(b"abc")}, "Int64"),
    ],
)
def test_bad_file_specs_are_refused_before_any_url(
    s3_admin: Client, s3_run: tuple[str, str, str], bad_spec: dict[str, Any], message: str
) -> None:
    entity, project, run = s3_run
    variables = {"entity": entity, "project": project, "run": run, "files": ["x.bin"], "fileSpecs": [bad_spec]}
    error = s3_admin.gql_error(CREATE_WITH_SPECS, variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in error["message"]


def test_put_of_other_bytes_than_signed_is_never_committed(
    s3_live: LiveServer, s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    """Real S3 refuses the PUT itself (403 for another Content-Length, 400 BadDigest for other bytes); moto
    stores whatever arrives, and then markRunFilesUploaded refuses it, deleting the object and the upload."""
    entity, project, run = s3_run
    declared = os.urandom(1000)
    attempts = {
        "longer.bin": (declared + b"!", "1001 bytes, but 1000 were declared"),
        "same-size.bin": (os.urandom(1000), "but " + md5_b64(declared) + " was declared"),
    }
    files = create_signed(s3_admin, s3_run, [spec(n, declared) for n in attempts])
    for name, (body, why) in attempts.items():
        url = files[name]["uploadUrl"]
        response = requests.put(url, data=body, headers=header_dict(files[name]), timeout=30)
        mark = {"entity": entity, "project": project, "run": run, "files": [name]}
        if response.status_code == 200:  # the store did not check (moto): the server must
            assert object_key(url) in s3.keys(s3_bucket)
            error = s3_admin.gql_error(MARK, mark)
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            assert why in error["message"]
        else:  # the store checked, as S3 does
            assert response.status_code in (400, 403), response.text
        assert object_key(url) not in s3.keys(s3_bucket)
        assert pending_rows(s3_live, object_key(url)) == []
        assert s3_admin.gql_error(MARK, mark)["extensions"]["code"] == "NOT_FOUND"
    assert listing(s3_admin, s3_run)["fileCount"] == 0


def test_declared_upload_of_the_signed_bytes_is_committed(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    entity, project, run = s3_run
    data = os.urandom(2048)
    files = create_signed(s3_admin, s3_run, [spec("ok.bin", data)])
    url = files["ok.bin"]["uploadUrl"]
    assert requests.put(url, data=data, headers=header_dict(files["ok.bin"]), timeout=30).status_code == 200
    s3_admin.gql(MARK, {"entity": entity, "project": project, "run": run, "files": ["ok.bin"]})
    node = listing(s3_admin, s3_run)["files"]["edges"][0]["node"]
    assert (node["name"], node["sizeBytes"], node["md5"]) == ("ok.bin", 2048, md5_b64(data))
    assert s3.client().get_object(Bucket=s3_bucket, Key=object_key(url))["Body"].read() == data


def test_undeclared_multipart_object_is_hashed(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    """The fallback for clients that declare nothing: a multipart ETag is no md5, so the bytes are read."""
    entity, project, run = s3_run
    created = s3_admin.gql(CREATE_FILES, {"entity": entity, "project": project, "run": run, "files": ["big.bin"]})
    key = object_key(created["createRunFiles"]["files"][0]["uploadUrl"])
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    bucket = s3.client()
    upload_id = bucket.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    etags = [
        bucket.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=i + 1, Body=part)["ETag"]
        for i, part in enumerate(parts)
    ]
    bucket.complete_multipart_upload(
        Bucket=s3_bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(etags)]},
    )
    assert "-" in bucket.head_object(Bucket=s3_bucket, Key=key)["ETag"]
    s3_admin.gql(MARK, {"entity": entity, "project": project, "run": run, "files": ["big.bin"]})
    node = listing(s3_admin, s3_run)["files"]["edges"][0]["node"]
    assert (node["sizeBytes"], node["md5"]) == (len(parts[0]) + 1000, md5_b64(b"".join(parts)))


def test_mark_of_many_files_at_once(
    s3_admin: Client, s3_run: tuple[str, str, str], s3: S3Service, s3_bucket: str
) -> None:
    """50 names in one mark (the objects are checked in parallel): declared and undeclared uploads, and
    names uploaded twice, where the newer upload must win whatever order the checks finish in."""
    entity, project, run = s3_run
    before = set(s3.keys(s3_bucket))
    contents = {f"many/{i:02d}.bin": os.urandom(100 + i) for i in range(50)}
    declared = [n for i, n in enumerate(contents) if i % 2 == 0]
    for name in list(contents)[:10]:  # an older upload of other bytes under the same name, handed out first
        older = create_signed(s3_admin, s3_run, [spec(name, b"older " + name.encode())])[name]
        assert (
            requests.put(
                older["uploadUrl"], data=b"older " + name.encode(), headers=header_dict(older), timeout=30
            ).status_code
            == 200
        )
    files = create_signed(s3_admin, s3_run, [spec(n, contents[n]) for n in declared], names=list(contents))
    for name, data in contents.items():
        assert (
            requests.put(files[name]["uploadUrl"], data=data, headers=header_dict(files[name]), timeout=30).status_code
            == 200
        )
    s3_admin.gql(MARK, {"entity": entity, "project": project, "run": run, "files": list(contents)})
    run_files = listing(s3_admin, s3_run, fileLimit=100)
    assert run_files["fileCount"] == 50
    nodes = {e["node"]["name"]: e["node"] for e in run_files["files"]["edges"]}
    assert {n: (v["sizeBytes"], v["md5"]) for n, v in nodes.items()} == {
        n: (len(d), md5_b64(d)) for n, d in contents.items()
    }
    # One object per file: the ten older uploads were deleted.
    assert len(set(s3.keys(s3_bucket)) - before) == 50


# --- periodic cleanup ------------------------------------------------------------------------------


def test_abandoned_uploads_are_cleaned_periodically(s3: S3Service, tmp_path: Path) -> None:
    bucket = s3.create_bucket()
    server = s3_server(tmp_path / "data", s3, bucket, extra_args=["--upload-cleanup-interval", "1"])
    try:
        client = Client(server.base_url, server.api_key)
        client.make_run("clean", "r")
        path = ("admin", "clean", "r")
        files = put_and_mark(client, path, {"old.bin": b"abandoned", "fresh.bin": b"still wanted"}, mark=False)
        old, fresh = (object_key(url) for url in files)
        assert {old, fresh} <= set(s3.keys(bucket))
        # Long expired: as if handed out in 2000 and never marked.
        db = sqlite3.connect(server.data_dir / "wandb-files.db")
        db.execute(
            "UPDATE pending_uploads SET created_at = '2000-01-01 00:00:00.000000' WHERE blob_key = ?",
            (old.rsplit("/", 1)[-1],),
        )
        db.commit()
        db.close()
        deadline = time.monotonic() + 15
        while (pending_rows(server, old) or old in s3.keys(bucket)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pending_rows(server, old) == []
        assert old not in s3.keys(bucket)
        # The running server is unharmed, and the fresh upload still commits.
        assert fresh in s3.keys(bucket)
        client.gql(MARK, {"entity": "admin", "project": "clean", "run": "r", "files": ["fresh.bin"]})
        assert client.files(*path)["files"]["edges"][0]["node"]["md5"] == md5_b64(b"still wanted")
        assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
    # The cleaner stopped with the server: uvicorn logs this only when the lifespan's shutdown succeeded.
    assert "Application shutdown complete." in server.log()
    assert "Traceback" not in server.log() and "removing abandoned uploads failed" not in server.log()


# --- the two clients, end to end -------------------------------------------------------------------


def test_our_sdk_declares_sizes_and_md5s(
    s3_live: LiveServer, s3: S3Service, s3_bucket: str, tmp_path: Path, unique: str
) -> None:
    """The SDK sends fileSpecs when SIGNED_UPLOAD_CHECKSUMS is on, and each PUT carries its own Content-MD5."""
    api = wandb_files.Api(api_key=s3_live.api_key, base_url=s3_live.base_url)
    sent: list[requests.PreparedRequest] = []
    # A response hook of the SDK's own session: a record of the real requests, nothing replaced.
    api.client.session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    run = api.create_run(run_id=f"r{unique}", project=f"p{unique}")
    contents = {"a.bin": os.urandom(3000), "d/b.txt": b"hello", "empty": b""}
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    uploaded = run.upload_files([tmp_path / n for n in contents], root=tmp_path, progress=False)
    assert [(f.name, f.size, f.md5) for f in uploaded] == [(n, len(d), md5_b64(d)) for n, d in contents.items()]

    bodies = [json.loads(r.body) for r in sent if r.url.endswith("/graphql") and b"createRunFiles" in r.body]
    assert len(bodies) == 1
    assert bodies[0]["variables"]["fileSpecs"] == [spec(n, d) for n, d in contents.items()]
    puts = {object_key(r.url): r for r in sent if r.method == "PUT"}
    assert len(puts) == 3
    by_md5 = {md5_b64(d): d for d in contents.values()}
    bucket = s3.client()
    for key, request in puts.items():
        assert request.url.startswith(f"{s3.endpoint_url}/{s3_bucket}/")
        assert parse_qs(urlsplit(request.url).query)["X-Amz-SignedHeaders"] == ["content-length;content-md5;host"]
        data = by_md5[request.headers["Content-MD5"]]
        assert request.headers["Content-Length"] == str(len(data))
        assert bucket.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
    listed = {f.name: (f.size, f.md5) for f in run.files()}
    assert listed == {n: (len(d), md5_b64(d)) for n, d in contents.items()}


def test_our_sdk_round_trip(
    s3_live: LiveServer, s3_admin: Client, s3: S3Service, s3_bucket: str, tmp_path: Path, unique: str
) -> None:
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


def test_real_wandb_client_round_trip(
    s3_live: LiveServer, s3: S3Service, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
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
