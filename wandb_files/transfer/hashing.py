"""md5 in W&B's forms (base64 of the digest, or hex), ETags that are md5s, and hashing while bytes stream."""

from __future__ import annotations

import base64
import binascii
import hashlib
import queue
import threading
from pathlib import Path

#: The size of the engine's reads and writes.
CHUNK_SIZE = 1024 * 1024
#: Files at least this big are hashed in a thread of their own while they download.
BACKGROUND_HASH_BYTES = 8 * CHUNK_SIZE


def md5_base64(digest: bytes) -> str:
    """W&B's form of an md5: the base64 of the binary digest."""
    return base64.b64encode(digest).decode("ascii")


def md5_matches(digest: bytes, expected: str) -> bool:
    """Whether `digest` equals `expected`, given as base64 (W&B's form) or as hex."""
    expected = expected.strip()
    try:
        if len(expected) == 32 and all(c in "0123456789abcdefABCDEF" for c in expected):
            return binascii.unhexlify(expected) == digest
        return base64.b64decode(expected, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def file_md5(path: Path) -> bytes:
    """The binary md5 digest of a local file, read in chunks."""
    hasher = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return hasher.digest()


def remote_changed(etag: str | None, md5: str | None) -> bool:
    """Whether an ETag that is a plain md5 (our server's, a single-part S3 object's) names other bytes than `md5`.

    Other ETags (multipart uploads, other stores) say nothing about the content, so they never count.
    """
    expected = etag_from_md5(md5)
    if not etag or not expected:
        return False
    value = etag.removeprefix("W/").strip('"').lower()
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value) and f'"{value}"' != expected


def etag_from_md5(md5: str | None) -> str | None:
    """The ETag our server and single-part S3 objects give bytes of this md5 (given as base64 or hex)."""
    if not md5:
        return None
    md5 = md5.strip()
    if len(md5) == 32 and all(c in "0123456789abcdefABCDEF" for c in md5):
        return f'"{md5.lower()}"'
    try:
        digest = base64.b64decode(md5, validate=True)
    except (binascii.Error, ValueError):
        return None
    return f'"{digest.hex()}"' if len(digest) == 16 else None


class StreamHasher:
    """md5 of a stream; for big files in a thread of its own, so hashing overlaps with receiving.

    Hashed after the download, md5 would nearly double the time of a large file on a fast link. hashlib
    releases the GIL on large buffers, so a second thread really overlaps. The queue is bounded, so memory
    stays flat whatever the file's size.
    """

    def __init__(self, background: bool) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._queue: queue.Queue[bytes | None] | None = None
        if background:
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._run, name="wandb-files-md5", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        for chunk in iter(self._queue.get, None):
            self._md5.update(chunk)

    def update(self, chunk: bytes) -> None:
        if self._queue is None:
            self._md5.update(chunk)
        else:
            self._queue.put(chunk)

    def digest(self) -> bytes:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
        return self._md5.digest()
