"""The blob store interface: where finished uploads are kept, under opaque keys."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

_KEY = re.compile(r"[0-9a-f]{8,64}")


def check_key(key: str) -> str:
    # Keys are server-made, but check anyway: a key must never reach outside its folder or prefix.
    if not _KEY.fullmatch(key):
        raise ValueError("invalid blob key")
    return key


class PrefixUnavailable(OSError):
    """`BlobStore.put_composed`: the blob whose first bytes were to come first is gone or shorter than asked."""


class BlobStore(ABC):
    """Where file bytes live. Keys are opaque lowercase hex strings chosen by the server."""

    #: True when clients move bytes to and from the store themselves, through presigned URLs.
    presigned: bool = False

    @abstractmethod
    def put(self, key: str, finished_temp_file: Path) -> None:
        """Take ownership of a complete temp file and make it the blob `key` (the temp file is moved)."""

    @abstractmethod
    def put_composed(self, key: str, prefix_of: str, prefix_len: int, tail_file: Path) -> None:
        """Make blob `key` the first `prefix_len` bytes of blob `prefix_of` followed by a complete temp file's
        bytes, without bringing the whole prefix through this process where the store can (the temp file is
        taken over and removed).

        Args:
            key: The new blob's key.
            prefix_of: The blob whose first bytes come first; it is left as it is.
            prefix_len: How many of its bytes (at most its size).
            tail_file: The bytes that follow.

        Raises:
            PrefixUnavailable: blob `prefix_of` is missing or shorter than `prefix_len`; nothing is stored.
            OSError: a local file cannot be read or written.
            botocore.exceptions.ClientError, BotoCoreError: the bucket refused or could not be reached (S3);
                no new object is left behind.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove blob `key`; removing a missing blob is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether blob `key` is stored."""

    def check(self) -> None:  # noqa: B027 - an optional hook: most stores have nothing to check
        """Fail at startup, with a message for the operator, when the store cannot be used."""

    def abort_stale_uploads(self, older_than_seconds: int) -> int:
        """Abort this store's unfinished uploads begun more than `older_than_seconds` ago (a process killed
        mid-upload leaves them, and a bucket keeps and bills their parts until they are aborted).

        Returns:
            How many were aborted; a store without such uploads aborts none.
        """
        return 0


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD of a stored object tells: its size, and its md5 when the ETag is one."""

    size: int
    md5_b64: str | None
