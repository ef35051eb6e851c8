"""Inter-process locks on download targets, so two processes never write the same temp file at once.

Lock files are striped: a bounded set (`STRIPES`) in the user's cache, never litter in their folders; two
targets that share a stripe only wait for each other briefly. On POSIX each stripe file is opened once per
process and locked with `flock` (a bulk download takes thousands of locks: `filelock` costs several times more
per lock); a thread lock per stripe makes a process's own threads take turns, since `flock` only keeps other
processes out. Elsewhere, `filelock` does the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import IO, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STRIPES = 4096


@lru_cache(maxsize=None)
def lock_dir() -> Path:
    """`$WANDB_FILES_CACHE_DIR/locks`, else `$XDG_CACHE_HOME/wandb-files/locks` (a temp folder if unwritable)."""
    base = os.environ.get("WANDB_FILES_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "wandb-files"
    )
    path = Path(base) / "locks"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home
        path = Path(tempfile.gettempdir()) / f"wandb-files-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
        path.mkdir(parents=True, exist_ok=True)
    return path


def _stripe(target: Path) -> int:
    digest = hashlib.sha256(str(target).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") % STRIPES


class _FlockStripes:
    """One open file and one thread lock per stripe, for the life of the process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._stripes: dict[tuple[Path, int], tuple[threading.Lock, IO[bytes]]] = {}

    def reset(self) -> None:
        # A forked child must not share its parent's open lock files: flock locks belong to the open file.
        self._guard = threading.Lock()
        self._stripes = {}

    @contextlib.contextmanager
    def hold(self, directory: Path, stripe: int) -> Iterator[None]:
        with self._guard:
            entry = self._stripes.get((directory, stripe))
            if entry is None:
                handle: IO[bytes] = open(directory / f"{stripe:04d}.lock", "ab")  # noqa: SIM115 - kept for the process
                entry = self._stripes[(directory, stripe)] = (threading.Lock(), handle)
        thread_lock, handle = entry
        with thread_lock:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_flock_stripes = _FlockStripes()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_flock_stripes.reset)


def target_lock(target: Path) -> contextlib.AbstractContextManager[object]:
    """A lock held while `target` is being downloaded, across threads and processes."""
    if fcntl is not None:
        return _flock_stripes.hold(lock_dir(), _stripe(target))
    from filelock import FileLock  # pragma: no cover - Windows

    return FileLock(lock_dir() / f"{_stripe(target):04d}.lock")  # pragma: no cover
