"""The project page's table of runs: which config and summary columns to show, and their cells as text.

The runs come from the API's own selection (db/runfilters.py: filter, order, keyset page); this only reads the
rows' JSON columns. Columns are the config keys, then the summary keys: of each kind, those the filter and the
order name, then the keys most runs of the page have (W&B's own ``_`` keys left out) up to `MAX_VALUE_COLUMNS`.
Nested objects are shown as dotted keys, as filters name them (``config.optimizer.lr``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..db import runfilters
from ..db.models import Run
from ..db.runvalues import config_value, parsed_json

#: Config columns, and summary columns, shown (more when the filter and the order name more).
MAX_VALUE_COLUMNS = 3
#: Nested objects are opened this deep; deeper ones are shown as JSON.
_MAX_DEPTH = 3
#: Longer cells are cut (the full value is in the cell's title).
MAX_CELL = 80


@dataclass(frozen=True)
class RunsPage:
    """One page of a project's selected runs."""

    runs: list[Run]
    #: How many runs the filter selects in all.
    total: int
    #: The position text of the page's last run when more follow, else None.
    cursor: str | None
    selection: runfilters.Selection


@dataclass(frozen=True)
class Column:
    """A config or summary column: its stored key (``config.lr``, ``summary.acc``), its label, and the order
    that sorts by it."""

    key: str
    label: str
    order_key: str


@dataclass(frozen=True)
class Cell:
    """A value as shown, and in full for the title (the same when short)."""

    text: str
    full: str


@dataclass(frozen=True)
class RunRow:
    """A run and its cells."""

    run: Run
    tags: list[str]
    cells: list[Cell]


@dataclass(frozen=True)
class RunsTable:
    """The value columns and the rows of the page."""

    columns: list[Column]
    rows: list[RunRow]


def _flat(prefix: str, value: object, depth: int = 0) -> Iterator[tuple[str, object]]:
    if isinstance(value, Mapping) and value and depth < _MAX_DEPTH:
        for key, item in value.items():
            yield from _flat(f"{prefix}.{key}", item, depth + 1)
    else:
        yield prefix, value


def run_values(run: Run) -> dict[str, object]:
    """The run's config (plain values) and summary as ``config.KEY`` and ``summary.KEY``, nested keys dotted."""
    values: dict[str, object] = {}
    config = parsed_json(run.config)
    if isinstance(config, dict):
        for name, entry in config.items():
            if name not in ("_wandb", "wandb_version"):
                values.update(_flat(f"config.{name}", config_value(entry)))
    summary = parsed_json(run.summary)
    if isinstance(summary, dict):
        for name, item in summary.items():
            values.update(_flat(f"summary.{name}", item))
    return values


def run_tags(run: Run) -> list[str]:
    """The run's tags (a JSON list in the row)."""
    tags = parsed_json(run.tags)
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _named(node: runfilters.Node | None) -> Iterator[str]:
    if isinstance(node, runfilters.Logic):
        for item in node.items:
            yield from _named(item)
    elif isinstance(node, runfilters.Cond) and isinstance(node.field, runfilters.ValueField):
        yield node.field.key


def _order_key(key: str) -> str:
    """The key an order names a stored value by: ``config.lr`` as it is, ``summary.acc`` as ``summary_metrics.acc``."""
    kind, _, rest = key.partition(".")
    return key if kind == "config" else f"summary_metrics.{rest}"


def _column(key: str) -> Column:
    return Column(key, key, _order_key(key))


def order_param(order: runfilters.Order) -> str:
    """`order` as the page's ``order=`` writes it (a text `runfilters.parse_order` reads back to it)."""
    field = order.field
    key = _order_key(field.key) if isinstance(field, runfilters.ValueField) else order.text[1:]
    return ("-" if order.descending else "+") + key


def cell(value: object) -> Cell:
    """A value as text: numbers short, strings as they are, objects and lists as JSON; "" when missing."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = str(value) if math.isnan(value) or math.isinf(value) else f"{value:.6g}"
    elif isinstance(value, (int, str)):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    short = text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    return Cell(short, text)


def runs_table(runs: list[Run], sel: runfilters.Selection) -> RunsTable:
    """The columns and rows of a page of runs.

    Args:
        runs: The page's runs.
        sel: The selection they were chosen by (its filter's and order's keys become columns first).

    Returns:
        The table.
    """
    values = [run_values(run) for run in runs]
    named = list(_named(sel.node))
    if isinstance(sel.order.field, runfilters.ValueField):
        named.insert(0, sel.order.field.key)
    named = list(dict.fromkeys(named))
    counts = Counter(key for row in values for key in row)
    keys: list[str] = []
    for kind in ("config.", "summary."):
        chosen = [k for k in named if k.startswith(kind)]
        common = [k for k in counts if k.startswith(kind) and not k[len(kind) :].startswith("_") and k not in named]
        keys += chosen + sorted(common, key=lambda k: (-counts[k], k))[: max(0, MAX_VALUE_COLUMNS - len(chosen))]
    columns = [_column(key) for key in keys]
    rows = [
        RunRow(run, run_tags(run), [cell(row.get(c.key)) for c in columns])
        for run, row in zip(runs, values, strict=True)
    ]
    return RunsTable(columns, rows)
