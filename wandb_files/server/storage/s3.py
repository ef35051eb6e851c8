"""`S3BlobStore`: blobs in an S3-compatible bucket; clients get presigned URLs and move the bytes themselves."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from .base import BlobStore, ObjectInfo, PrefixUnavailable, check_key

logger = logging.getLogger("wandb_files.server")

_HEX_MD5 = re.compile(r"[0-9a-f]{32}")
# The longest lifetime SigV4 allows a presigned URL.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# Concurrent HEADs (and fallback hashes) one server process sends the bucket, shared by all its requests;
# well under boto3's connection pool (max_pool_connections below).
S3_CHECK_WORKERS = 16
# S3's bounds on the size of a multipart upload's part: every part but the last is at least the minimum.
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024 * 1024 * 1024
# What the bucket answers when an object, or the range asked of it, is not there.
_MISSING_PREFIX = frozenset({"NoSuchKey", "404", "InvalidRange"})

_T = TypeVar("_T")
_R = TypeVar("_R")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; the prefix is '' or ends with '/'."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"a blob store must look like s3://bucket/prefix, not {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3BlobStore(BlobStore):
    """Blobs as objects `<prefix><key>` in an S3 bucket (AWS, or any S3-compatible service via endpoint_url).

    Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
    instance roles...); the region from AWS_REGION/AWS_DEFAULT_REGION, else us-east-1.
    """

    presigned = True

    def __init__(self, url: str, *, endpoint_url: str | None = None, url_ttl: int = 3600) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url
        self.url_ttl = url_ttl
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                signature_version="s3v4",
                # S3-compatible services on their own host name (MinIO, moto, Ceph...) want path-style URLs.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                max_pool_connections=50,
                retries={"mode": "standard", "max_attempts": 5},
            ),
        )
        self._presigner = _SigV4Presigner(self.client, self.bucket, region, min(url_ttl, MAX_PRESIGN_SECONDS))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def object_key(self, key: str) -> str:
        """The object key of blob `key` in the bucket."""
        return self.prefix + check_key(key)

    def uri(self, key: str) -> str:
        """`s3://bucket/object-key` of blob `key`."""
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def check(self) -> None:
        """HEAD the bucket: a missing bucket or bad credentials stop the server at startup."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise RuntimeError(f"the blob store s3://{self.bucket} cannot be used: {exc}") from None

    def abort_stale_uploads(self, older_than_seconds: int) -> int:
        """Abort the multipart uploads of this store's blobs (its prefix and a blob key) begun before the cutoff:
        what a server process killed during `put` or `put_composed` left. Several processes may do this at once."""
        from botocore.exceptions import ClientError

        cutoff = datetime.now(timezone.utc).timestamp() - older_than_seconds
        aborted = 0
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                for upload in page.get("Uploads", []):
                    # Only keys this server makes: a bucket (or a prefix) shared with others keeps their uploads.
                    if _is_blob_key(upload["Key"][len(self.prefix) :]) and upload["Initiated"].timestamp() < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                raise
            # Credentials without the permission: the server works all the same, and a lifecycle rule can do it.
            logger.warning("unfinished multipart uploads not aborted (s3:ListBucketMultipartUploads): %s", exc)
        return aborted

    def put(self, key: str, finished_temp_file: Path) -> None:
        """Upload a temp file as the object (multipart when big), then remove the temp file."""
        self.client.upload_file(str(finished_temp_file), self.bucket, self.object_key(key))
        finished_temp_file.unlink(missing_ok=True)

    def put_composed(self, key: str, prefix_of: str, prefix_len: int, tail_file: Path) -> None:
        """A prefix of at least MIN_PART_BYTES is copied inside the bucket: a multipart upload whose first
        parts are ranges of the old object (UploadPartCopy) and whose last is the tail; a shorter one is read
        (a ranged GET) and uploaded again with the tail. The new object's ETag is then not an md5 of its bytes.
        """
        from botocore.exceptions import ClientError

        try:
            if prefix_len < MIN_PART_BYTES:
                self._put_read_prefix(key, prefix_of, prefix_len, tail_file)
            else:
                self._put_copied_prefix(key, prefix_of, prefix_len, tail_file)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_PREFIX:
                raise PrefixUnavailable(f"blob {prefix_of} is missing or shorter than {prefix_len} bytes") from exc
            raise
        finally:
            tail_file.unlink(missing_ok=True)

    def _put_read_prefix(self, key: str, prefix_of: str, prefix_len: int, tail_file: Path) -> None:
        fd, temp = tempfile.mkstemp(dir=tail_file.parent, prefix="composed-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "wb") as fh:
                if prefix_len:
                    answer = self.client.get_object(
                        Bucket=self.bucket, Key=self.object_key(prefix_of), Range=f"bytes=0-{prefix_len - 1}"
                    )
                    shutil.copyfileobj(answer["Body"], fh)
                    if fh.tell() != prefix_len:
                        raise PrefixUnavailable(f"blob {prefix_of} is shorter than {prefix_len} bytes")
                with open(tail_file, "rb") as tail:
                    shutil.copyfileobj(tail, fh)
            self.put(key, temp_path)
        finally:
            temp_path.unlink(missing_ok=True)

    def _put_copied_prefix(self, key: str, prefix_of: str, prefix_len: int, tail_file: Path) -> None:
        target = {"Bucket": self.bucket, "Key": self.object_key(key)}
        source = {"Bucket": self.bucket, "Key": self.object_key(prefix_of)}
        # As few copied parts as S3 allows, of equal size, so none is below the minimum.
        count = -(-prefix_len // MAX_PART_BYTES)
        size = -(-prefix_len // count)
        upload_id = self.client.create_multipart_upload(**target)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, prefix_len, size), 1):
                end = min(start + size, prefix_len) - 1
                answer = self.client.upload_part_copy(
                    **target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            if tail_file.stat().st_size:
                with open(tail_file, "rb") as tail:
                    number = len(parts) + 1
                    answer = self.client.upload_part(**target, UploadId=upload_id, PartNumber=number, Body=tail)
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.client.complete_multipart_upload(**target, UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            # Nothing left behind: S3 keeps (and bills) the parts of an unfinished upload until it is aborted.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(**target, UploadId=upload_id)
            raise

    def delete(self, key: str) -> None:
        """Delete the object (S3 answers success for a missing one)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def head(self, key: str) -> ObjectInfo | None:
        """Size and md5 of the object; None when it does not exist (yet)."""
        from botocore.exceptions import ClientError

        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        etag = str(answer.get("ETag", "")).strip('"').lower()
        # A single-part PUT's ETag is the hex md5 of the bytes; multipart and SSE-KMS ETags are not.
        md5 = base64.b64encode(bytes.fromhex(etag)).decode() if _HEX_MD5.fullmatch(etag) else None
        return ObjectInfo(size=int(answer["ContentLength"]), md5_b64=md5)

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return self.head(key) is not None

    def _map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        # One pool per store, not per request: bounds what all requests together ask of the bucket at once.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(S3_CHECK_WORKERS, thread_name_prefix="s3-check")
        return list(self._pool.map(fn, items))

    def head_many(self, keys: Iterable[str]) -> list[ObjectInfo | None]:
        """`head` of each key, in order, sent in parallel (boto3 clients are thread-safe).

        Args:
            keys: Blob keys.

        Returns:
            Each object's size and md5, or None where it does not exist.

        Raises:
            botocore.exceptions.ClientError, BotoCoreError: the bucket refused or could not be reached.
        """
        return self._map(self.head, keys)

    def compute_md5_many(self, keys: Iterable[str]) -> list[str]:
        """`compute_md5` of each key, in order, in parallel.

        Args:
            keys: Blob keys of existing objects.

        Returns:
            The base64 md5 of each object's bytes.

        Raises:
            botocore.exceptions.ClientError, BotoCoreError: an object is missing or the bucket failed.
        """
        return self._map(self.compute_md5, keys)

    def compute_md5(self, key: str) -> str:
        """base64 md5 of the object's bytes, read through: the fallback for objects whose ETag is not an md5
        and that were uploaded without a declared md5 (clients that send no fileSpecs)."""
        digest = hashlib.md5()
        body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        for chunk in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(chunk)
        return base64.b64encode(digest.digest()).decode()

    def presigned_get(
        self, key: str, mimetype: str | None = None, *, disposition: str | None = None, now: datetime | None = None
    ) -> str:
        """A presigned GET URL of the object, valid for url_ttl seconds; S3 answers it with `mimetype` as its
        Content-Type and `disposition` (when given) as its Content-Disposition."""
        extra = {"response-content-type": mimetype} if mimetype else {}
        if disposition:
            extra["response-content-disposition"] = disposition
        return self._presigner.url("GET", self.object_key(key), extra, now)

    def presigned_put(
        self, key: str, *, size: int | None = None, md5_b64: str | None = None, now: datetime | None = None
    ) -> str:
        """A presigned PUT URL for the object, valid for url_ttl seconds.

        Args:
            key: The blob key.
            size: When given, Content-Length is signed: S3 refuses a body of any other size (403).
            md5_b64: When given (base64 of the binary md5), Content-MD5 is signed and the PUT must send it;
                S3 checks the body against it (400 BadDigest), so the object's md5 is known once it exists.
            now: The signing time (tests); the current time when omitted.

        Returns:
            The URL.
        """
        headers = {}
        if size is not None:
            headers["content-length"] = str(size)
        if md5_b64 is not None:
            headers["content-md5"] = md5_b64
        return self._presigner.url("PUT", self.object_key(key), {}, now, headers)


def _is_blob_key(text: str) -> bool:
    try:
        check_key(text)
    except ValueError:
        return False
    return True


def _uri_encode(text: str, *, keep_slash: bool = False) -> str:
    # SigV4's encoding: everything but A-Z a-z 0-9 - _ . ~ is percent-encoded (and '/' in paths kept).
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


class _SigV4Presigner:
    """Presigned S3 URLs (AWS Signature Version 4, query-string auth, UNSIGNED-PAYLOAD), fast.

    botocore's generate_presigned_url does its whole signing work for every URL, which a 1,000-file listing
    page (one directUrl each) would pay 1,000 times; this one derives the signing key once a day. The URLs are the ones botocore makes (tests compare the two).
    """

    def __init__(self, client: Any, bucket: str, region: str, ttl: int) -> None:
        self._credentials = client._request_signer._credentials  # boto3's resolved (maybe refreshing) credentials
        self.region = region
        self.ttl = ttl
        endpoint = urlsplit(client.meta.endpoint_url)
        path_style = client.meta.config.s3.get("addressing_style") == "path" or "." in bucket
        if path_style:
            self._scheme_host = f"{endpoint.scheme}://{endpoint.netloc}"
            self._host = endpoint.netloc
            self._path_prefix = f"{endpoint.path.rstrip('/')}/{_uri_encode(bucket)}/"
        else:
            self._host = f"{bucket}.{endpoint.netloc}"
            self._scheme_host = f"{endpoint.scheme}://{self._host}"
            self._path_prefix = f"{endpoint.path.rstrip('/')}/"
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._signing_keys.get((secret, date))
        if cached is None:
            key = ("AWS4" + secret).encode()
            for part in (date, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._signing_keys = {(secret, date): key}  # only today's is kept
            cached = key
        return cached

    def url(
        self,
        method: str,
        object_key: str,
        extra: dict[str, str],
        now: datetime | None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """A presigned URL; `headers` (lowercase names, plain values) are signed besides host, so the request
        must carry them with exactly these values."""
        credentials = self._credentials.get_frozen_credentials()
        now = now or datetime.now(timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        scope = f"{date}/{self.region}/s3/aws4_request"
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{credentials.access_key}/{scope}",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": str(self.ttl),
            **extra,
        }
        signed = {**(headers or {}), "host": self._host}
        signed_names = ";".join(sorted(signed))
        params["X-Amz-SignedHeaders"] = signed_names
        if credentials.token:
            params["X-Amz-Security-Token"] = credentials.token
        query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(params.items()))
        path = self._path_prefix + _uri_encode(object_key, keep_slash=True)
        canonical_headers = "".join(f"{name}:{' '.join(signed[name].split())}\n" for name in sorted(signed))
        canonical = f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\nUNSIGNED-PAYLOAD"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, date), to_sign.encode(), hashlib.sha256)
        return f"{self._scheme_host}{path}?{query}&X-Amz-Signature={signature.hexdigest()}"
