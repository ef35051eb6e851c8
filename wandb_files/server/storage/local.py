"""`LocalBlobStore`: blobs as files in a folder, which the server streams."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from .base import BlobStore, PrefixUnavailable, check_key

_COPY_BYTES = 1024 * 1024


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

    def put_composed(self, key: str, prefix_of: str, prefix_len: int, tail_file: Path) -> None:
        """Copy the prefix (in the kernel where the file system can) and the tail into a new temp file beside
        the tail, then move it into place as `put` does."""
        fd, temp = tempfile.mkstemp(dir=tail_file.parent, prefix="composed-")
        temp_path = Path(temp)
        try:
            with os.fdopen(fd, "w+b") as fh:
                try:
                    append_file(self._path(prefix_of), fh, prefix_len)
                except FileNotFoundError:
                    raise PrefixUnavailable(f"blob {prefix_of} is missing") from None
                append_file(tail_file, fh, tail_file.stat().st_size)
            self.put(key, temp_path)
        finally:
            temp_path.unlink(missing_ok=True)
            tail_file.unlink(missing_ok=True)

    def resolve(self, key: str) -> Path:
        """The file holding blob `key`."""
        return self._path(key)

    def delete(self, key: str) -> None:
        """Unlink the blob's file, if any."""
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the blob's file exists."""
        return self._path(key).is_file()


def append_file(source: Path, fh: BinaryIO, length: int) -> None:
    """Append the first `length` bytes of file `source` to the file open as `fh` (a seekable binary file open
    for writing), in the kernel where the file system can.

    Raises:
        PrefixUnavailable: `source` is shorter than `length` bytes.
        OSError: `source` cannot be read.
    """
    fh.seek(0, os.SEEK_END)
    fh.flush()
    start = fh.tell()
    copied = 0
    with open(source, "rb") as src:
        copy_file_range = getattr(os, "copy_file_range", None)
        # A file system that cannot: the rest is copied through this process from where it stopped.
        with contextlib.suppress(OSError):
            while copy_file_range is not None and copied < length:
                n = copy_file_range(src.fileno(), fh.fileno(), length - copied, copied, start + copied)
                if n == 0:
                    break
                copied += n
        src.seek(copied)
        fh.seek(start + copied)
        while copied < length:
            chunk = src.read(min(_COPY_BYTES, length - copied))
            if not chunk:
                raise PrefixUnavailable(f"{source} is shorter than {length} bytes")
            fh.write(chunk)
            copied += len(chunk)
    fh.seek(0, os.SEEK_END)
