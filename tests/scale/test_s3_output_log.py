"""output.log over an S3 blob store (moto on loopback): made from the previous object, never from every stored
line; a long file's prefix copied inside the bucket (a multipart upload whose first part is a ranged
UploadPartCopy); the bytes, size and md5 a client gets always those of the streamed lines."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

import wandb_files
from tests.scale.test_s3 import put_and_mark
from tests.server.test_stream_output_log import complete, console, expected, output_log, stream
from tests.support import Client, LiveServer, md5_b64
from tests.support.services import S3Service
from wandb_files.server.storage import PrefixUnavailable, S3BlobStore
from wandb_files.server.storage.s3 import MIN_PART_BYTES

RunPath = tuple[str, str, str]


@pytest.fixture
def s3_run(s3_admin: Client, unique: str) -> RunPath:
    s3_admin.make_run(f"p-{unique}", f"r-{unique}")
    return "admin", f"p-{unique}", f"r-{unique}"


def etag(s3: S3Service, bucket: str, path_uri: str) -> str:
    """The ETag of the object at `s3://bucket/key`."""
    return str(s3.client().head_object(Bucket=bucket, Key=path_uri.split("/", 3)[3])["ETag"]).strip('"')


def test_console_requests_on_s3(s3_admin: Client, s3_run: RunPath, s3: S3Service, s3_bucket: str) -> None:
    texts = [f"epoch {i}" for i in range(5)]
    stream(s3_admin, s3_run, 0, [console(t) for t in texts])
    assert output_log(s3_admin, s3_run) == expected(texts)
    for percent in (10, 50, 100):  # a progress bar redrawn with a carriage return: its line again, then a new one
        texts[4:] = [f"train {percent}%|###", "next"]
        stream(s3_admin, s3_run, 4, [console(t) for t in texts[4:]])
        assert output_log(s3_admin, s3_run) == expected(texts)
    texts += [f"line {i}" for i in range(100)]
    stream(s3_admin, s3_run, 6, [console(t) for t in texts[6:]])
    texts[-1] = "the last again"
    stream(s3_admin, s3_run, len(texts) - 1, [console(texts[-1])])
    assert output_log(s3_admin, s3_run) == expected(texts)
    texts[-40:-38] = ["nested bar 1", "nested bar 2"]  # within the last 64 lines: the ones after them stay
    stream(s3_admin, s3_run, len(texts) - 40, [console("nested bar 1"), console("nested bar 2")])
    assert output_log(s3_admin, s3_run) == expected(texts)
    texts[2] = "rewritten long ago"  # further back: made from every stored line
    stream(s3_admin, s3_run, 2, [console(texts[2])])
    assert output_log(s3_admin, s3_run) == expected(texts)
    put_and_mark(s3_admin, s3_run, {"output.log": b"only this session\n"})  # the client's own, at finish
    assert output_log(s3_admin, s3_run) == b"only this session\n"
    texts.append("after the upload")
    stream(s3_admin, s3_run, len(texts) - 1, [console(texts[-1])])
    assert output_log(s3_admin, s3_run) == expected(texts)
    complete(s3_admin, s3_run)
    assert output_log(s3_admin, s3_run) == expected(texts)
    assert not s3.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


def test_a_long_output_log_is_copied_inside_the_bucket(
    s3_live: LiveServer, s3_admin: Client, s3_run: RunPath, s3: S3Service, s3_bucket: str, tmp_path: Path
) -> None:
    """Past S3's minimum part size the prefix is never read back: the new object is a multipart upload of a
    copied range and the new lines (its ETag ends in -2), and downloads byte for byte with the md5 listed."""
    texts = [f"{i:05d} " + "x" * 8000 for i in range(MIN_PART_BYTES // 8000 + 10)]
    stream(s3_admin, s3_run, 0, [console(t) for t in texts])
    api = wandb_files.Api(api_key=s3_live.api_key, base_url=s3_live.base_url)
    run = api.run("/".join(s3_run))
    assert not etag(s3, s3_bucket, run.file("output.log").path_uri).endswith("-2")  # one PUT: made from the lines
    texts.append("appended")
    stream(s3_admin, s3_run, len(texts) - 1, [console(texts[-1])])
    texts[-1] = "appended 100%"
    stream(s3_admin, s3_run, len(texts) - 1, [console(texts[-1])])
    texts[-3] = "two up"
    stream(s3_admin, s3_run, len(texts) - 3, [console(texts[-3])])
    listed = run.file("output.log")
    assert etag(s3, s3_bucket, listed.path_uri).endswith("-2")
    data = expected(texts)
    assert (listed.size, listed.md5) == (len(data), md5_b64(data))
    listed.download(root=str(tmp_path), replace=True).close()
    assert (tmp_path / "output.log").read_bytes() == data
    assert not s3.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")


def test_a_failed_composition_leaves_nothing_behind(
    s3: S3Service, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(f"s3://{s3_bucket}/failed", endpoint_url=s3.endpoint_url)
    tail = tmp_path / "tail"
    tail.write_bytes(b"new line\n")
    with pytest.raises(PrefixUnavailable, match="missing"):
        store.put_composed("ab" * 16, "cd" * 16, MIN_PART_BYTES, tail)  # the source object is missing
    assert not tail.exists()
    assert not store.exists("ab" * 16)
    assert not s3.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    source = tmp_path / "source"
    source.write_bytes(os.urandom(100))
    store.put("cd" * 16, source)
    tail.write_bytes(b"new line\n")
    with pytest.raises(PrefixUnavailable, match="shorter"):
        store.put_composed("ab" * 16, "cd" * 16, 101, tail)  # a short source, read back
    assert not store.exists("ab" * 16)


def test_unfinished_multipart_uploads_of_the_stores_blobs_are_aborted(
    s3: S3Service, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process killed mid-upload leaves is aborted once old enough; another prefix's uploads, and keys under
    this prefix the server never makes, are left alone."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(f"s3://{s3_bucket}/sweep", endpoint_url=s3.endpoint_url)
    bucket = s3.client()
    ours = [store.object_key(f"{i:02d}" * 16) for i in range(2)]
    others = ["elsewhere/" + "ab" * 16, "sweep/not-a-blob-key.bin"]
    for key in ours + others:
        bucket.create_multipart_upload(Bucket=s3_bucket, Key=key)

    def open_uploads() -> dict[str, datetime]:
        return {u["Key"]: u["Initiated"] for u in bucket.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])}

    # The age the bucket gives (moto's listing gives every upload one fixed day in 2010; S3 the real one).
    age = (datetime.now(timezone.utc) - max(open_uploads().values())).total_seconds()
    assert store.abort_stale_uploads(int(age) + 3600) == 0  # not that old yet
    assert set(open_uploads()) == set(ours + others)
    assert store.abort_stale_uploads(max(0, int(age) - 3600)) == 2
    assert set(open_uploads()) == set(others)
