"""Reading a run's streamed history (and system-metrics lines) back: by step range, and sampled.

The client numbers steps upwards (wandb-core drops a `log(step=...)` below the current step, and a resumed run
goes on after its last step), so a run's history rows are in step order when they are in line order. A step
range is therefore a range of line numbers, found by bisecting them (each probe one primary-key lookup and
one row decoded: about 2 * log2(rows) of them); the rows in it are read by line number through the primary
key, a page or a chunk at a time. No step is stored, so logging pays nothing for this. Sampling is
deterministic: evenly spaced rows of the range, the first and the last always among them, in step order
(W&B's own sampling is random).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import RunLine
from .streams import HISTORY, history_step, json_object

T = TypeVar("T")

#: How many lines one query reads when rows are scanned for keys, and how many line numbers one IN list holds.
CHUNK = 1_000
#: How many matching rows a keyed sample holds before it thins them (rows of a few keys: small).
KEPT_ROWS = 10_000


def evenly_spaced(count: int, samples: int) -> list[int] | None:
    """`samples` evenly spaced indexes of `count` items, the first and the last among them.

    Args:
        count: How many items there are.
        samples: How many to keep (at least 1).

    Returns:
        The indexes in increasing order; None when every item is kept (`count <= samples`).
    """
    if count <= samples:
        return None
    if samples == 1:
        return [0]
    # count - 1 > samples - 1, so the rounded positions are distinct.
    return [(k * (count - 1) + (samples - 1) // 2) // (samples - 1) for k in range(samples)]


def _first_line_from(session: Session, run_id: int, start: int, stop: int, step: int) -> int:
    """The first history line number in `[start, stop)` whose row's `_step` is at least `step`; `stop` when
    none is. Bisects the line numbers; a number never sent (a gap) is passed over, as is a row without a step
    (counted as before any step)."""
    low, high = start, stop
    while low < high:
        middle = (low + high) // 2
        found = session.execute(
            select(RunLine.line_no, RunLine.content)
            .where(RunLine.run_id == run_id, RunLine.kind == HISTORY, RunLine.line_no >= middle, RunLine.line_no < high)
            .order_by(RunLine.line_no)
            .limit(1)
        ).first()
        if found is None:
            high = middle  # no line in [middle, high)
            continue
        line_no, content = found
        at = history_step(json_object(content))
        if at is None or at < step:
            low = line_no + 1
        else:
            high = line_no  # lines [middle, line_no) do not exist
    return low


def line_range(
    session: Session, run_id: int, kind: int, line_count: int, min_step: int | None, max_step: int | None
) -> tuple[int, int] | None:
    """The line numbers `[start, stop)` that hold a run's rows with `min_step <= _step < max_step`.

    Args:
        session: An open session.
        run_id: The run's row id.
        kind: HISTORY or EVENTS (the steps bound history rows only).
        line_count: The run's line count of that kind.
        min_step: The first step, or None.
        max_step: One past the last step, or None.

    Returns:
        The range, or None when it is empty.
    """
    start, stop = 0, line_count
    if kind == HISTORY and min_step is not None:
        start = _first_line_from(session, run_id, start, stop, min_step)
    if kind == HISTORY and max_step is not None:
        stop = _first_line_from(session, run_id, start, stop, max_step)
    return (start, stop) if start < stop else None


def _lines_between(session: Session, run_id: int, kind: int, start: int, stop: int) -> list[str]:
    stmt = (
        select(RunLine.content)
        .where(RunLine.run_id == run_id, RunLine.kind == kind, RunLine.line_no >= start, RunLine.line_no < stop)
        .order_by(RunLine.line_no)
    )
    return list(session.scalars(stmt))


def sampled_lines(
    session: Session,
    run_id: int,
    kind: int,
    line_count: int,
    samples: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> list[str]:
    """At most `samples` lines of a run (every one when there are no more), evenly spaced, in line order.

    Reads only the lines it returns (the picked line numbers, through the primary key) and the probes that
    find the step range.

    Args:
        session: An open session.
        run_id: The run's row id.
        kind: HISTORY or EVENTS.
        line_count: The run's line count of that kind.
        samples: The most lines to return (0 returns none).
        min_step: History only: the first step, or None.
        max_step: History only: one past the last step, or None.

    Returns:
        The lines' text (JSON objects, as the client sent them).
    """
    found = line_range(session, run_id, kind, line_count, min_step, max_step) if samples > 0 else None
    if found is None:
        return []
    start, stop = found
    picks = evenly_spaced(stop - start, samples)
    if picks is None:
        return _lines_between(session, run_id, kind, start, stop)
    lines: list[str] = []
    for i in range(0, len(picks), CHUNK):
        numbers = [start + pick for pick in picks[i : i + CHUNK]]
        stmt = (
            select(RunLine.content)
            .where(RunLine.run_id == run_id, RunLine.kind == kind, RunLine.line_no.in_(numbers))
            .order_by(RunLine.line_no)
        )
        lines.extend(session.scalars(stmt))
    return lines


def edge_lines(session: Session, run_id: int) -> list[str]:
    """The first and the last history rows of a run (one when they are the same; none without history).

    Args:
        session: An open session.
        run_id: The run's row id.

    Returns:
        The rows' text, in step order.
    """
    found: list[tuple[int, str]] = []
    for order in (RunLine.line_no, RunLine.line_no.desc()):
        stmt = (
            select(RunLine.line_no, RunLine.content)
            .where(RunLine.run_id == run_id, RunLine.kind == HISTORY)
            .order_by(order)
            .limit(1)
        )
        row = session.execute(stmt).first()
        if row is not None and (not found or found[0][0] != row[0]):
            found.append((row[0], row[1]))
    return [content for _, content in found]


def _lookup(row: dict[str, Any], key: str) -> tuple[bool, Any]:
    """A row's value of `key`: a top-level key, else a dotted path into nested objects (W&B's flat names)."""
    if key in row:
        return True, row[key]
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def wire_value(value: Any) -> Any:
    """A value as a JSON answer carries it: NaN and ±Infinity (which JSON cannot hold) as the strings "NaN",
    "Infinity" and "-Infinity", inside lists and objects too."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [wire_value(v) for v in value]
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    return value


def _rows_with_keys(
    session: Session, run_id: int, start: int, stop: int, keys: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """The rows in the line range that hold every key, as `{key: value}` of those keys only."""
    for chunk in range(start, stop, CHUNK):
        for line in _lines_between(session, run_id, HISTORY, chunk, min(chunk + CHUNK, stop)):
            row = json_object(line)
            if row is None:
                continue
            picked = {}
            for key in keys:
                found, value = _lookup(row, key)
                if not found:
                    break
                picked[key] = wire_value(value)
            else:
                yield picked


def sampled_rows(
    session: Session,
    run_id: int,
    line_count: int,
    keys: Sequence[str],
    samples: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> list[dict[str, Any]]:
    """W&B's sampledHistory of one spec: the history rows that hold every key, with those keys only, at most
    `samples` of them (every one when there are no more), evenly spaced, first and last kept, in step order.

    The step range is read a chunk at a time and decoded; at most `max(4 * samples, KEPT_ROWS)` rows are held.

    Args:
        session: An open session.
        run_id: The run's row id.
        line_count: The run's history line count.
        keys: The keys a row must hold (W&B's flat names: "a.b" is key b of object a).
        samples: The most rows to return (0 returns none).
        min_step: The first step, or None.
        max_step: One past the last step, or None.

    Returns:
        The rows.
    """
    found = line_range(session, run_id, HISTORY, line_count, min_step, max_step) if samples > 0 else None
    if found is None:
        return []
    rows = _rows_with_keys(session, run_id, *found, keys)
    return sample_evenly(rows, samples, max(4 * samples, KEPT_ROWS))


def sample_evenly(items: Iterable[T], samples: int, room: int) -> list[T]:
    """At most `samples` of `items`, evenly spaced, the first and the last among them, in their order; all of
    them when there are no more. One pass, holding at most `room` + 1 items.

    Every stride-th item is kept; when more than `room` are, the stride doubles and every other kept item goes.
    At least room / 2 stay for the final even pick, so with `room >= 4 * samples` no gap is off by more than
    half of one. The last item is kept aside, so it is always among the answer.

    Args:
        items: The items, in order.
        samples: The most to return (at least 1).
        room: How many to hold at most before thinning (at least 2 * samples).

    Returns:
        The sample.
    """
    kept: list[tuple[int, T]] = []
    stride = 1
    last: tuple[int, T] | None = None
    for count, item in enumerate(items):
        if count % stride == 0:
            kept.append((count, item))
            if len(kept) > room:
                stride *= 2
                kept = [(n, x) for n, x in kept if n % stride == 0]
        last = (count, item)
    if last is not None and kept[-1][0] != last[0]:
        kept.append(last)
    picks = evenly_spaced(len(kept), samples)
    return [item for _, item in kept] if picks is None else [kept[i][1] for i in picks]
