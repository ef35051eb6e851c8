"""The blob store: finished uploads kept under opaque keys."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

_KEY = re.compile(r"[0-9a-f]{8,64}")


class BlobStore(ABC):
    """Where file bytes live. Keys are opaque lowercase hex strings chosen by the server."""

    @abstractmethod
    def put(self, key: str, finished_temp_file: Path) -> None:
        """Take ownership of a complete temp file and make it the blob `key` (the temp file is moved)."""

    @abstractmethod
    def resolve(self, key: str) -> Path:
        """The local path that serves blob `key`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove blob `key`; removing a missing blob is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether blob `key` is stored."""


class LocalBlobStore(BlobStore):
    """Blobs as files under `root`, fanned out as root/<first 2 hex>/<key> to keep directories small."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys are server-made, but check anyway: a key must never reach outside root.
        if not _KEY.fullmatch(key):
            raise ValueError("invalid blob key")
        return self.root / key[:2] / key

    def put(self, key: str, finished_temp_file: Path) -> None:
        """Move the temp file into place; atomic because tmp/ and blobs/ share a filesystem."""
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        os.replace(finished_temp_file, path)

    def resolve(self, key: str) -> Path:
        """The file holding blob `key`."""
        return self._path(key)

    def delete(self, key: str) -> None:
        """Unlink the blob's file, if any."""
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the blob's file exists."""
        return self._path(key).is_file()
