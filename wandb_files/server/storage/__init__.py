"""Blob stores: where finished uploads are kept, under opaque keys.

`LocalBlobStore` keeps them in a folder and the server streams them. `S3BlobStore` keeps them in an
S3-compatible bucket: clients get presigned URLs and move the bytes to and from the bucket themselves.
"""

from __future__ import annotations

from pathlib import Path

from .base import BlobStore, ObjectInfo, PrefixUnavailable
from .local import LocalBlobStore
from .s3 import S3BlobStore, parse_s3_url

__all__ = [
    "BlobStore",
    "LocalBlobStore",
    "ObjectInfo",
    "PrefixUnavailable",
    "S3BlobStore",
    "open_blob_store",
    "parse_s3_url",
]


def open_blob_store(
    url: str | None, *, local_root: Path, endpoint_url: str | None = None, url_ttl: int = 3600
) -> BlobStore:
    """The store named by --blob-store: None (or a path) is the local folder; s3://bucket/prefix is S3."""
    if url is None or url == "":
        return LocalBlobStore(local_root)
    if url.startswith("s3://"):
        return S3BlobStore(url, endpoint_url=endpoint_url, url_ttl=url_ttl)
    if "://" in url and not url.startswith("file://"):
        raise ValueError(f"unsupported blob store {url!r}: use s3://bucket/prefix or a local folder")
    return LocalBlobStore(Path(url.removeprefix("file://")).expanduser())
