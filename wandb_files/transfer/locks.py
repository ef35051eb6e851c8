"""Claiming a download's temp file, so two processes (or threads) never write the same one at once.

The claim is an exclusive `flock` on the temp (``.part``) file itself: only downloads of the very same target
ever wait for each other, and only while one of them holds that file open. Resuming after a crash needs the
part file's name to be predictable, so it cannot be private to a process; the lock is what makes it safe.

A claim is re-checked after the lock is granted: the holder before us may have renamed the part file into
place (its download finished) or removed it, and then the file we locked is no longer the part file; we
start over on the path as it is now. The file is opened with ``O_NOFOLLOW``: a symbolic link planted where
the part file goes is refused, never written through. Off POSIX, `filelock` on a sibling file does the job.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from wandb_files.transfer.paths import open_no_follow

if sys.platform != "win32":
    import fcntl

#: How often a waiting claim looks again (and asks `should_stop`).
POLL_SECONDS = 0.05


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _open_part(part: Path) -> int:
    return open_no_follow(part, os.O_RDWR | os.O_CREAT)


@contextlib.contextmanager
def claim_part(part: Path, should_stop: Callable[[], None] | None = None) -> Iterator[int]:
    """Hold the temp file `part` (created if missing) exclusively; yields its open file descriptor.

    Args:
        part: The temp file's path.
        should_stop: Called while waiting for another holder; it may raise to give up (e.g. on Ctrl-C).

    Raises:
        ValueError: `part` is a symbolic link.
        OSError: it cannot be created or opened.
    """
    if sys.platform == "win32":  # pragma: no cover
        from filelock import FileLock

        with FileLock(str(part) + ".lock"):
            fd = _open_part(part)
            try:
                yield fd
            finally:
                os.close(fd)
        return
    while True:
        fd = _open_part(part)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if should_stop is not None:
                        should_stop()
                    time.sleep(POLL_SECONDS)
            if not _same_file(fd, part):
                continue  # renamed into place or removed by the holder before us: claim the path anew
            yield fd
            return
        finally:
            os.close(fd)  # closing releases the lock


def release_if_empty(fd: int, part: Path) -> None:
    """Remove a claimed part file that holds nothing worth resuming (while the claim is still held)."""
    if os.fstat(fd).st_size == 0 and _same_file(fd, part):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
