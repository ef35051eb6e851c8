"""A run's config, summary and tags flattened into `run_values` rows, the index run filters and orders use.

The JSON columns of `runs` stay the truth (the Run type answers from them); these rows are derived from them
and rewritten by `store_run_values` in the transaction that changes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import NamedTuple

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session

from .models import Run, RunValue

# Type ranks in MongoDB's comparison/sort order (null < numbers < strings < objects < arrays < booleans).
# NaN gets a rank of its own just below the numbers: MongoDB sorts it before every number, equal only to itself.
RANK_NULL = 0
RANK_NAN = 1
RANK_NUMBER = 2
RANK_STRING = 3
RANK_OBJECT = 4
RANK_ARRAY = 5
RANK_BOOL = 6

#: Strings compare and sort on their first this many characters (an index entry must stay small on PostgreSQL).
MAX_TEXT = 256
#: Keys (the dotted path with its root) longer than this are not stored, and filters on them are refused.
MAX_KEY = 256
#: Objects nested deeper than this are stored as objects, their members not.
MAX_DEPTH = 8
#: At most this many values of one run are stored (config first, then summary, then tags).
MAX_VALUES_PER_RUN = 10_000

TAGS_KEY = "tags"


class ValueRow(NamedTuple):
    """One stored value: its key, type rank, number and text (see models.RunValue)."""

    key: str
    rank: int
    num: float
    txt: str


def scalar_sort_value(value: object) -> tuple[int, float, str]:
    """The (rank, num, txt) a JSON value is stored, compared and sorted as.

    Args:
        value: A value parsed from JSON.

    Returns:
        Its type rank, its number (numbers and booleans; else 0) and its text (strings, cut to MAX_TEXT; else "").
    """
    if value is None:
        return RANK_NULL, 0.0, ""
    if isinstance(value, bool):
        return RANK_BOOL, float(value), ""
    if isinstance(value, int):
        try:
            return RANK_NUMBER, float(value), ""
        except OverflowError:
            return RANK_NUMBER, math.inf if value > 0 else -math.inf, ""
    if isinstance(value, float):
        if math.isnan(value):
            return RANK_NAN, 0.0, ""
        return RANK_NUMBER, value, ""
    if isinstance(value, str):
        return RANK_STRING, 0.0, value[:MAX_TEXT]
    if isinstance(value, dict):
        return RANK_OBJECT, 0.0, ""
    return RANK_ARRAY, 0.0, ""


def _walk(key: str, value: object, depth: int) -> Iterator[ValueRow]:
    if len(key) > MAX_KEY:
        return
    yield ValueRow(key, *scalar_sort_value(value))
    if isinstance(value, dict) and depth < MAX_DEPTH:
        for sub, item in value.items():
            yield from _walk(f"{key}.{sub}", item, depth + 1)


def config_value(entry: object) -> object:
    """The value of a config entry: W&B's wire form is {"value": v, "desc": ...}; anything else is the value."""
    if isinstance(entry, dict) and "value" in entry:
        return entry["value"]
    return entry


def parsed_json(text: str | None) -> object:
    """The value a stored JSON column holds, or None when it is empty or not JSON."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def value_rows(config: str | None, summary: str | None, tags: str | None) -> list[ValueRow]:
    """The rows a run with these JSON columns has in `run_values`.

    A key reached twice (a literal dotted key beside the same path through nested objects) keeps its first value.

    Args:
        config: The run's config column (JSON object of W&B config entries), or None.
        summary: The run's summary column (JSON object), or None.
        tags: The run's tags column (JSON list of strings), or None.

    Returns:
        The rows, at most MAX_VALUES_PER_RUN of them, each key once except "tags" (one row per distinct tag).
    """
    rows: dict[tuple[str, str], ValueRow] = {}
    seen: set[str] = set()

    def add(row: ValueRow) -> bool:
        if len(rows) >= MAX_VALUES_PER_RUN:
            return False
        if row.key != TAGS_KEY:
            if row.key in seen:
                return True
            seen.add(row.key)
        rows.setdefault((row.key, row.txt), row)
        return True

    parsed_config = parsed_json(config)
    if isinstance(parsed_config, dict):
        for name, entry in parsed_config.items():
            for row in _walk(f"config.{name}", config_value(entry), 1):
                if not add(row):
                    return list(rows.values())
    parsed_summary = parsed_json(summary)
    if isinstance(parsed_summary, dict):
        for name, item in parsed_summary.items():
            for row in _walk(f"summary.{name}", item, 1):
                if not add(row):
                    return list(rows.values())
    parsed_tags = parsed_json(tags)
    if isinstance(parsed_tags, list):
        for tag in parsed_tags:
            if isinstance(tag, str) and not add(ValueRow(TAGS_KEY, RANK_STRING, 0.0, tag[:MAX_TEXT])):
                break
    return list(rows.values())


def store_run_values(session: Session, run: Run) -> None:
    """Bring the run's `run_values` rows in line with its config, summary and tags columns.

    Call it inside the write transaction that changed them, after a flush (the run needs its id). Only rows
    that changed are deleted or inserted, so a summary update of one key writes one or two rows.

    Args:
        session: The session of the open write transaction.
        run: The run, flushed.
    """
    wanted = {(r.key, r.txt): r for r in value_rows(run.config, run.summary, run.tags)}
    stored = {
        (key, txt): (rank, num)
        for key, txt, rank, num in session.execute(
            select(RunValue.key, RunValue.txt, RunValue.rank, RunValue.num).where(RunValue.run_id == run.id)
        )
    }
    stale = [k for k, v in stored.items() if k not in wanted or (wanted[k].rank, wanted[k].num) != v]
    fresh = [r for k, r in wanted.items() if k not in stored or (r.rank, r.num) != stored[k]]
    for start in range(0, len(stale), 500):
        chunk = stale[start : start + 500]
        session.execute(
            delete(RunValue).where(RunValue.run_id == run.id, tuple_(RunValue.key, RunValue.txt).in_(chunk))
        )
    if fresh:
        session.execute(
            insert(RunValue),
            [
                {
                    "run_id": run.id,
                    "project_id": run.project_id,
                    "key": r.key,
                    "txt": r.txt,
                    "rank": r.rank,
                    "num": r.num,
                }
                for r in fresh
            ],
        )
