"""Making a run's output.log from the previous one, so a console file stream request costs what it carries.

The file is the run's streamed console lines, in line order (db/streams.console_text). After each request that
carries console lines it is stored again as a new blob (blobs are never changed in place: a download may be
reading the old one). Remade from every stored line, that costs time in the number of lines the run has. Made
from the previous blob, the new file is described as the first bytes of that blob, up to the first line the
request (re)writes, followed by a tail this process writes: the new lines and, when the request rewrote lines
above the last (nested progress bars), the lines after them, read back from the database (at most the last
REWRITABLE_LINES). The blob store puts the two together (BlobStore.put_composed): a copy in the kernel for the
local store, a copy inside the bucket (or a ranged read of a short prefix) on S3, so the prefix never passes
through the database or, on S3, through this process once it is long. The md5 is carried on the same way: this
process keeps the md5 state at the start of each of the last lines it wrote, so a request that rewrites one of
them (a progress bar redrawn with a carriage return) hashes only the new bytes. The md5 stored in the file row is
this one, never the store's (a multipart ETag is not an md5).

What this process knows about a run's file is used only while the run's output.log row still points at the
blob it made and the run's line count is what it left; anything else (another server process stored a newer
one, the client uploaded its own output.log, a line was rewritten further back, lines are missing in between)
makes the file from the stored lines again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..db.streams import console_text

#: How many of a run's last lines can be rewritten without making the file from every stored line.
REWRITABLE_LINES = 64
#: Runs whose file state this process keeps (the least recently streamed are forgotten).
KEPT_RUNS = 1024


@dataclass
class _LineStart:
    line_no: int
    offset: int
    md5_before: Any  # hashlib's md5 state of the bytes before this line


@dataclass
class _Made:
    """An output.log blob this process made."""

    blob_key: str
    line_count: int
    size: int
    md5: Any  # hashlib's md5 state of the whole file
    starts: list[_LineStart] = field(default_factory=list)  # the last REWRITABLE_LINES lines, in order

    def add(self, fh: BinaryIO, first_line_no: int, lines: Sequence[bytes]) -> None:
        """Append `lines` (the file's bytes of each, numbered from `first_line_no`) to `fh` and to this state."""
        for i, data in enumerate(lines):
            self.starts.append(_LineStart(first_line_no + i, self.size, self.md5.copy()))
            fh.write(data)
            self.md5.update(data)
            self.size += len(data)
        del self.starts[:-REWRITABLE_LINES]
        self.line_count = first_line_no + len(lines)


@dataclass
class MadeFile:
    """A new output.log: the first `prefix_len` bytes of the previous blob followed by what was written to the
    temp file; its size and base64-less md5 digest, and the state to keep once stored."""

    size: int
    md5_digest: bytes
    state: _Made
    prefix_len: int = 0


class OutputLogs:
    """The output.log state of the runs this process streamed lately; thread-safe."""

    def __init__(self) -> None:
        self._runs: OrderedDict[int, _Made] = OrderedDict()
        self._lock = threading.Lock()

    def extend(
        self,
        run_id: int,
        blob_key: str | None,
        line_count: int,
        offset: int,
        lines: Sequence[str],
        read_lines: Callable[[int, int], Sequence[str]],
        fh: BinaryIO,
    ) -> MadeFile | None:
        """Write into `fh` what follows the kept prefix of the run's current output.log (blob `blob_key`) once
        `lines` are stored from line `offset` on; None (nothing written) when this process cannot: then make it
        with `remake`.

        Args:
            run_id: The run's row id.
            blob_key: The blob the run's output.log row points at now (None: no row).
            line_count: The run's console line count before these lines.
            offset: The line number of the first of `lines`.
            lines: The console lines the request carries.
            read_lines: The run's stored console lines from a line number up to (not including) another; called
                only for the lines after a rewritten range, at most REWRITABLE_LINES of them.
            fh: A new, empty temp file.

        Returns:
            The new file: its first `prefix_len` bytes are blob `blob_key`'s, the rest is in `fh`.
        """
        with self._lock:
            known = self._runs.get(run_id)
        if known is None or blob_key is None or known.blob_key != blob_key or known.line_count != line_count:
            return None
        new = [console_text([line]) for line in lines]
        if offset == line_count:
            keep, md5 = known.size, known.md5.copy()
            starts = list(known.starts)
        else:
            at = {start.line_no: i for i, start in enumerate(known.starts)}
            if offset not in at:
                return None  # further back than the kept line starts, or a gap
            start = known.starts[at[offset]]
            keep, md5 = start.offset, start.md5_before.copy()
            starts = known.starts[: at[offset]]
            end = offset + len(lines)
            if end < line_count:  # lines after the rewritten ones stay (nested progress bars)
                rest = read_lines(end, line_count)
                if len(rest) != line_count - end:
                    return None  # not the lines this process wrote: made from them all instead
                new += [console_text([line]) for line in rest]
        state = _Made("", offset, keep, md5, starts)
        state.add(fh, offset, new)
        return MadeFile(state.size, state.md5.digest(), state, keep)

    @staticmethod
    def remake(lines: Sequence[str], fh: BinaryIO) -> MadeFile:
        """Write into `fh` the run's output.log made from all its stored console `lines` (in line order).

        With lines missing in between, the state's line count is below the run's, so it serves no later request.
        """
        head = max(0, len(lines) - REWRITABLE_LINES)
        data = console_text(lines[:head])
        fh.write(data)
        state = _Made("", head, len(data), hashlib.md5(data))
        state.add(fh, head, [console_text([line]) for line in lines[head:]])
        return MadeFile(state.size, state.md5.digest(), state)

    def current(self, run_id: int, blob_key: str | None, line_count: int) -> bool:
        """Whether blob `blob_key` is the file this process made of run `run_id`'s `line_count` lines."""
        with self._lock:
            known = self._runs.get(run_id)
        return known is not None and known.blob_key == blob_key and known.line_count == line_count

    def stored(self, run_id: int, blob_key: str, made: MadeFile) -> None:
        """Remember `made` as the file of run `run_id`, now stored as blob `blob_key`."""
        made.state.blob_key = blob_key
        with self._lock:
            self._runs[run_id] = made.state
            self._runs.move_to_end(run_id)
            while len(self._runs) > KEPT_RUNS:
                self._runs.popitem(last=False)

    def forget(self, run_id: int) -> None:
        """Drop what is kept about run `run_id` (its file was not stored after all)."""
        with self._lock:
            self._runs.pop(run_id, None)
