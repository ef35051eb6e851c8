"""A run's logged history as the wandb client reads it (docs/wandb-wire-logging.md, "Reading history"):
`history`/`events` (sampled rows as JSON strings; wandb-core's scan_history pages with minStep/maxStep),
`sampledHistory` (rows of some keys), `historyKeys` (lastStep: where scans end) and `parquetHistory`."""

from __future__ import annotations

import json
from typing import Any

from ariadne import ObjectType

from ...db.history import edge_lines, sampled_lines, sampled_rows, wire_value
from ...db.models import Run
from ...db.streams import EVENTS, HISTORY, json_object
from ..context import Info, ctx_of
from ..errors import bad_input
from .common import json_object_arg

DEFAULT_SAMPLES = 500  # W&B's when none is given

history_run_type = ObjectType("Run")


def _samples(value: object, name: str) -> int:
    if value is None:
        return DEFAULT_SAMPLES
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_input(f"`{name}` must be a non-negative integer, got {value!r}")
    return value


def _step_bound(value: object, name: str) -> int | None:
    """A step bound of a spec: an integer (a float with no fraction too, as JSON numbers may come), or None."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_input(f"`{name}` must be an integer, got {value!r}")
    return value


@history_run_type.field("historyKeys")
def resolve_history_keys(run: Run, info: Info) -> Any:
    """The summary kept as rows arrive (db/streams.py); null for a run without history."""
    return wire_value(json.loads(run.history_keys)) if run.history_keys else None


@history_run_type.field("history")
def resolve_history(
    run: Run, info: Info, samples: int | None = None, minStep: int | None = None, maxStep: int | None = None
) -> list[str]:
    """Sampled history rows as the JSON strings the client streamed (NaN and Infinity as it wrote them)."""
    count = _samples(samples, "samples")
    if not run.history_line_count:
        return []
    return sampled_lines(ctx_of(info).session, run.id, HISTORY, run.history_line_count, count, minStep, maxStep)


@history_run_type.field("events")
def resolve_events(run: Run, info: Info, samples: int | None = None) -> list[str]:
    """Sampled system-metrics rows as JSON strings."""
    count = _samples(samples, "samples")
    if not run.events_line_count:
        return []
    return sampled_lines(ctx_of(info).session, run.id, EVENTS, run.events_line_count, count)


@history_run_type.field("sampledHistory")
def resolve_sampled_history(run: Run, info: Info, specs: list[str]) -> list[list[dict[str, Any]]]:
    """One list of rows a spec (each checked first: a bad spec fails the field, naming what is wrong)."""
    checked = []
    for i, text in enumerate(specs):
        spec = json_object_arg(text, f"specs[{i}]")
        keys = spec.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise bad_input(f"`specs[{i}].keys` must be a non-empty list of strings")
        # The spec's maxStep is the last step: wandb-core asks for the page [a, b) as minStep a, maxStep b - 1.
        last = _step_bound(spec.get("maxStep"), f"specs[{i}].maxStep")
        checked.append(
            (
                list(dict.fromkeys(keys)),
                _samples(spec.get("samples"), f"specs[{i}].samples"),
                _step_bound(spec.get("minStep"), f"specs[{i}].minStep"),
                None if last is None else last + 1,
            )
        )
    session = ctx_of(info).session
    return [
        sampled_rows(session, run.id, run.history_line_count, keys, samples, min_step, max_step)
        if run.history_line_count
        else []
        for keys, samples, min_step, max_step in checked
    ]


@history_run_type.field("parquetHistory")
def resolve_parquet_history(run: Run, info: Info, liveKeys: list[str]) -> dict[str, Any]:
    """No parquet files; the first and last rows as live data, with the keys asked for (and _step)."""
    wanted = ["_step", *(k for k in liveKeys if k != "_step")]
    live = []
    if run.history_line_count:
        for line in edge_lines(ctx_of(info).session, run.id):
            row = json_object(line) or {}
            live.append({key: wire_value(row[key]) for key in wanted if key in row})
    return {"parquetUrls": [], "liveData": live}
