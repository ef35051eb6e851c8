"""Choosing runs on the command line: the `--filter` and `--order` options of `runs`, `download` and `sync`,
and the config and summary values of a run as table columns."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from wandb_files.runs import Run

FILTER_HELP = (
    "Only the runs this W&B filter document (JSON) selects, e.g. "
    '\'{"state": "finished", "config.lr": {"$lt": 0.01}, "tags": {"$in": ["best"]}}\'. '
    "Keys: name, display_name, state, tags, group, jobType, createdAt, heartbeatAt, username, config.KEY, "
    "summary_metrics.KEY; operators: $and $or $nor $eq $ne $gt $gte $lt $lte $in $nin $exists $regex."
)
ORDER_HELP = (
    "The runs' order: + (ascending) or - (descending), then created_at, heartbeat_at, name, display_name, "
    "config.KEY or summary_metrics.KEY (default +created_at, oldest first)."
)


def _kind(value: object) -> str:
    return "a list" if isinstance(value, list) else "null" if value is None else f"a {type(value).__name__}"


def parse_filter_option(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> Any:
    """`--filter`'s JSON as a filter document; bad JSON is a usage error naming where the JSON breaks.

    Raises:
        click.BadParameter: not JSON, not a JSON object, or a document the SDK can see is malformed.
    """
    if value is None:
        return None
    from wandb_files.filters import filters_json

    try:
        document = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} (character {exc.pos + 1})",
            ctx,
            param,
        ) from None
    if not isinstance(document, dict):
        raise click.BadParameter(
            f'expected a JSON object such as \'{{"state": "finished"}}\', got {_kind(document)}', ctx, param
        )
    try:
        filters_json(document)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return document


FILTER_OPTION = click.option("--filter", "filters", metavar="JSON", callback=parse_filter_option, help=FILTER_HELP)
ORDER_OPTION = click.option("--order", metavar="KEY", help=ORDER_HELP)


def flat_values(values: Mapping[str, Any], prefix: str, depth: int = 0) -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"opt": {"lr": 1}}`` -> ``{"config.opt.lr": 1}``), as filters name them."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping) and value and depth < 4:
            flat.update(flat_values(value, name, depth + 1))
        else:
            flat[name] = value
    return flat


def run_values(run: Run) -> dict[str, Any]:
    """A run's config and summary as ``config.KEY`` and ``summary_metrics.KEY`` columns."""
    return {**flat_values(run.config, "config"), **flat_values(dict(run.summary), "summary_metrics")}


def _named_keys(document: object) -> Iterable[str]:
    """The config and summary keys a filter document names, in order."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if key.startswith(("config.", "summary_metrics.")):
                parts = key.split(".")
                if key.startswith("config.") and len(parts) > 2 and parts[2] == "value":
                    del parts[2]
                yield ".".join(parts)
            yield from _named_keys(value)
    elif isinstance(document, list):
        for item in document:
            yield from _named_keys(item)


def value_columns(rows: list[dict[str, Any]], filters: object, order: str | None, per_kind: int = 3) -> list[str]:
    """The config and summary columns to show: those the filter and the order name, then the keys most runs
    have (at most `per_kind` of each kind beyond the named ones, W&B's own ``_`` keys left out), config first."""
    named = list(dict.fromkeys([*_named_keys(filters), *_named_keys({(order or "").lstrip("+-"): None})]))
    counts: dict[str, int] = {}
    for row in rows:
        for key in row:
            counts[key] = counts.get(key, 0) + 1
    chosen = list(named)
    for kind in ("config.", "summary_metrics."):
        keys = (k for k in counts if k.startswith(kind) and not k[len(kind) :].startswith("_") and k not in named)
        common = sorted(keys, key=lambda k: (-counts[k], k))
        chosen += common[:per_kind]
    return chosen


def cell(value: Any) -> str:
    """A config or summary value as a table cell: numbers short, strings as they are, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(value) if math.isnan(value) or math.isinf(value) else f"{value:.6g}"
    if isinstance(value, (int, str)):
        return str(value)
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= 60 else text[:59] + "…"
