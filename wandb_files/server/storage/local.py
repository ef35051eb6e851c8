"""`LocalBlobStore`: blobs as files in a folder, which the server streams."""

from __future__ import annotations

import os
from pathlib import Path

from .base import BlobStore, check_key


class LocalBlobStore(BlobStore):
    """Blobs as files under `root`, fanned out as root/<first 2 hex>/<key> to keep directories small."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)[:2] / key

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
