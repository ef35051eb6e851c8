"""A page of one folder of a run (what the web page shows): its subfolders and files, keyset-paged on the (run_id, name) index.

Names holding `/` make folders, which exist only through the files under them. A page walks the index from
the cursor on: a file is an entry; the first name under a subfolder makes that folder an entry, and the walk
jumps past every name under it (one more indexed query), so a folder of 100,000 files, or of 10,000
subfolders, costs per page what a small one does. With a LIKE `pattern` (the API's semantics), the page is a
flat list of the matching names under the folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from .filepages import files_page_statement
from .models import File

#: Past every name that starts with ``folder/``: no name is longer than 1,024 bytes, so none under the folder
#: reaches 256 of the highest code point (4 bytes each in UTF-8, which both databases compare byte-wise).
_PAST_FOLDER = "\U0010ffff" * 256
#: Rows fetched after a folder was found: the next names may well be another folder's.
_AFTER_FOLDER_BATCH = 16


@dataclass(frozen=True)
class Entry:
    """A file or a subfolder shown in a folder."""

    #: The full name (a folder's ends with "/"): the position in the listing, and the next page's cursor.
    key: str
    #: The name relative to the folder.
    label: str
    #: The file's row, None for a folder.
    file: File | None

    @property
    def is_folder(self) -> bool:
        """A folder (no row of its own)."""
        return self.file is None


@dataclass(frozen=True)
class FolderPage:
    """One page of a folder."""

    entries: list[Entry]
    #: The key of the last entry when more follow (the next page starts after it), else None.
    next_after: str | None


def folder_end(folder: str) -> str | None:
    """The smallest name after every name under `folder` ("a/" -> "a0", as "0" follows "/"), None for the root.

    Args:
        folder: "" or a prefix ending with "/".

    Returns:
        The bound, or None.
    """
    return folder[:-1] + "0" if folder else None


def _resume_after(folder: str, after: str | None) -> str | None:
    """Where the walk of the index starts (exclusive): after the cursor, and never before the folder."""
    if after is not None:
        if not after.startswith(folder):
            after = folder if after < folder else after
        return after + _PAST_FOLDER if after.endswith("/") else after
    return folder or None


def folder_page(
    session: Session, run_id: int, folder: str, after: str | None, limit: int, *, pattern: str | None = None
) -> FolderPage:
    """Up to `limit` entries of `folder` of a run, in name order, after the entry whose key is `after`.

    Args:
        session: An open session.
        run_id: The run's row id (the caller checked the viewer may see it).
        folder: "" for the run's top level, else a prefix ending with "/".
        after: The key of the previous page's last entry, or None for the first page.
        limit: Entries a page (at least 1).
        pattern: A LIKE pattern over whole names: a flat list of the matches under `folder` instead.

    Returns:
        The page.
    """
    upper = folder_end(folder)
    start = _resume_after(folder, after)
    if pattern is not None:
        rows = list(session.scalars(files_page_statement(run_id, start, limit + 1, pattern=pattern, before_name=upper)))
        return _page([Entry(f.name, f.name[len(folder) :], f) for f in rows], limit)
    entries: list[Entry] = []
    batch = limit + 1
    while len(entries) <= limit:
        rows = list(session.scalars(files_page_statement(run_id, start, batch, before_name=upper)))
        for row in rows:
            rest = row.name[len(folder) :]
            segment, slash, _ = rest.partition("/")
            if slash:
                sub = folder + segment + "/"
                entries.append(Entry(sub, segment + "/", None))
                start = sub + _PAST_FOLDER
                batch = min(limit + 1 - len(entries), _AFTER_FOLDER_BATCH) or 1
                break
            entries.append(Entry(row.name, rest, row))
            start = row.name
            if len(entries) > limit:
                break
        else:
            if len(rows) < batch:
                break  # the folder has no more names
            batch = limit + 1 - len(entries)
    return _page(entries, limit)


def _page(entries: list[Entry], limit: int) -> FolderPage:
    if len(entries) > limit:
        return FolderPage(entries[:limit], entries[limit - 1].key)
    return FolderPage(entries, None)
