"""Where a file may be written: the name rules, the destination folder, the target and its temp file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from pathlib import Path

from wandb_files.formatting import UNSAFE_CHARACTERS, safe_name
from wandb_files.transfer.hashing import file_md5, md5_matches

#: The longest path segment (one folder or file name) that common file systems hold, in bytes.
MAX_SEGMENT_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(name: str) -> str | None:
    """Why a file name cannot be written under a destination folder, or None when it can.

    The rule is the server's (`wandb_files.server.names`), so a name the server accepts always lands at
    ``root/name``; names from other servers get the same scrutiny.
    """
    if not name:
        return "the name is empty"
    unsafe = UNSAFE_CHARACTERS.search(name)
    if unsafe:
        return f"the name contains U+{ord(unsafe.group()):04X}, a control, bidirectional or surrogate character"
    if "\\" in name:
        return "the name contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "the name is an absolute path"
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return "the name has an empty, '.' or '..' path segment"
    if any(len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for segment in segments):
        return f"a part of the name is longer than {MAX_SEGMENT_BYTES} bytes, which no common file system holds"
    return None


def check_root(root: str | os.PathLike[str]) -> Path:
    """The resolved destination folder.

    Raises:
        TypeError: `root` is not a path.
        ValueError: `root`, or a folder it would be created in, exists and is not a folder.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, not {type(root).__name__}")
    base = Path(root).expanduser()
    for folder in (base, *base.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"root {str(base)!r} cannot be a folder: {str(folder)!r} is a file")
            break
    return base.resolve()


def target_path(root: str | os.PathLike[str], name: str, *, folder: bool = False) -> Path:
    """Where a file called `name` goes under `root`, refusing any name or path it could not safely write.

    Args:
        root: The destination folder (created later if missing; it may itself be a symbolic link).
        name: The file's name in its run, a relative POSIX path such as ``media/images/a.png``.
        folder: `name` is a folder to write files into (e.g. a run's), not a file.

    Returns:
        The absolute target path (``resolved root / name``; the target itself is not resolved).

    Raises:
        TypeError: `root` is not a path or `name` is not a string.
        ValueError: `root` is a file; or `name` is empty, absolute, has a drive letter, a backslash, a control
            or bidirectional character, an empty, ``.`` or ``..`` part, or a part over 255 bytes; or a folder
            on the way to the target is a symbolic link or a file; or the target is a folder.
    """
    return Destination(root).target(name, folder=folder)


class Destination:
    """The targets of many files under one destination folder, each checked as `target_path` checks it.

    The root is resolved once and each folder on the way is looked at once, however many files it holds: a
    bulk download of 10,000 files in 50 folders makes 50 of those checks, not 10,000.

    Args:
        root: The destination folder (created later if missing; it may itself be a symbolic link).

    Raises:
        TypeError: `root` is not a path.
        ValueError: `root`, or a folder it would be created in, exists and is not a folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = check_root(root)
        self._base = str(self.root)
        # Folder → an existing real folder (True) or missing (False: the download creates it, as a real folder).
        self._folders: dict[str, bool] = {}

    def _folder_state(self, folder: str, name: str) -> bool:
        state = self._folders.get(folder)
        if state is None:
            try:
                mode = os.lstat(folder).st_mode
            except FileNotFoundError:
                state = False
            else:
                if stat.S_ISLNK(mode):
                    raise ValueError(f"refusing to write {safe_name(name)!r}: {folder!r} is a symbolic link")
                if not stat.S_ISDIR(mode):
                    raise ValueError(f"cannot write {safe_name(name)!r}: {folder!r} is a file, not a folder")
                state = True
            self._folders[folder] = state
        return state

    def target(self, name: str, *, folder: bool = False) -> Path:
        """Where `name` goes (see `target_path`).

        Raises:
            TypeError, ValueError: as `target_path` does.
        """
        if not isinstance(name, str):
            raise TypeError(f"file name must be a string, not {type(name).__name__}")
        problem = name_problem(name)
        if problem:
            raise ValueError(f"refusing to write {safe_name(name)!r}: {problem}")
        parts = name.split("/")
        on_the_way = self._base
        exists = True
        for part in parts if folder else parts[:-1]:
            on_the_way = os.path.join(on_the_way, part)
            if not self._folder_state(on_the_way, name):
                exists = False
                break  # the rest is created by the download
        target = os.path.join(self._base, *parts)
        if exists and not folder:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(target).st_mode):
                    raise ValueError(f"cannot write file {safe_name(name)!r}: {target!r} is a folder")
        return Path(target)


def local_copy_matches(path: Path, size: int | None, md5: str | None) -> bool:
    """Whether `path` is a regular file (not a link) holding exactly these bytes (needs a size and md5)."""
    if size is None or not md5:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size and md5_matches(file_md5(path), md5)


def part_path(target: Path) -> Path:
    """The hidden temp file a download of `target` writes before the rename.

    Named by a hash, so it stays short whatever the target's name (never over the file system's limit).
    """
    key = hashlib.sha1(target.name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return target.with_name(f".{key}.wandb-files.part")


#: Flags for every file a download opens beside its target: a symbolic link planted at the path is refused
#: (never written through), and the descriptor does not leak into child processes.
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_no_follow(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """`os.open` with `NO_FOLLOW`: a symbolic link at `path` is refused, never followed.

    Raises:
        ValueError: `path` is a symbolic link.
        OSError: it cannot be opened otherwise (FileExistsError with ``O_EXCL``, say).
    """
    try:
        return os.open(path, flags | NO_FOLLOW, mode)
    except OSError:
        if os.path.islink(path):
            raise ValueError(f"refusing to write through the symbolic link {os.fspath(path)!r}") from None
        raise


def make_parent(target: Path, name: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot write file {safe_name(name)!r}: a folder on the way to it is a file") from None
