"""What the wandb SDK's file stream sends for a run, kept line by line (see docs/wandb-wire-logging.md).

The client POSTs `{"files": {name: {"offset": n, "content": [line, ...]}}, "complete", "exitcode",
"preempting", "uploaded"}`; `offset` is the line number of the first line. Every line is stored under its
line number (`RunLine`), so a retried request rewrites the very rows it wrote before and nothing is counted
twice, and a console line the client rewrites (a progress bar redrawn with a carriage return) replaces its
row. `wandb-summary.json` is sent whole each time and becomes the run's summary.

History rows stay in the database, one row a step, in the order the client numbered them (and in step order:
db/history.py finds a step range by bisecting line numbers); the run's historyKeys are kept as they arrive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .database import upsert_insert, write_transaction
from .models import Run, RunLine, utcnow

HISTORY = 0
EVENTS = 1
OUTPUT = 2

HISTORY_FILE = "wandb-history.jsonl"
EVENTS_FILE = "wandb-events.jsonl"
SUMMARY_FILE = "wandb-summary.json"
OUTPUT_FILE = "output.log"

#: The streamed files kept as lines, and their kind.
LINE_FILES = {HISTORY_FILE: HISTORY, EVENTS_FILE: EVENTS, OUTPUT_FILE: OUTPUT}

#: How many trailing lines historyTail and eventsTail hold.
TAIL_LINES = 10

# Run states (W&B's words). A run is "crashed" once it has sent nothing for the heartbeat timeout.
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CRASHED = "crashed"
PREEMPTING = "preempting"
PREEMPTED = "preempted"

# A streamed console line: optional "ERROR " (stderr), the client's UTC timestamp, optional "[label] ", text.
_CONSOLE_PREFIX = re.compile(r"(?:ERROR )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)? (?:\[[^\]]*\] )?")


class StreamError(ValueError):
    """A file stream request the server cannot take (the message names the part)."""


@dataclass
class StreamRequest:
    """One file stream request, checked."""

    lines: dict[int, tuple[int, list[str]]] = field(default_factory=dict)  # kind -> (offset, lines)
    summary: str | None = None
    complete: bool = False
    exit_code: int | None = None
    preempting: bool = False
    uploaded: list[str] = field(default_factory=list)


def parse_stream_request(body: object) -> StreamRequest:
    """Check a decoded file stream body and return what it asks.

    Args:
        body: The decoded JSON body.

    Returns:
        The request.

    Raises:
        StreamError: it is not the shape the wandb SDK sends.
    """
    if not isinstance(body, dict):
        raise StreamError("the body must be a JSON object")
    request = StreamRequest()
    files = body.get("files") or {}
    if not isinstance(files, dict):
        raise StreamError("`files` must be an object")
    for name, chunk in files.items():
        if not isinstance(chunk, dict):
            raise StreamError(f"`files.{name}` must be an object")
        offset = chunk.get("offset", 0)
        content = chunk.get("content") or []
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise StreamError(f"`files.{name}.offset` must be a non-negative integer")
        if not isinstance(content, list) or not all(isinstance(line, str) for line in content):
            raise StreamError(f"`files.{name}.content` must be a list of strings")
        if name == SUMMARY_FILE:
            if content:
                summary = json_object(content[-1])
                if summary is None:
                    raise StreamError(f"`files.{name}.content` must hold a JSON object")
                request.summary = content[-1]
        elif name in LINE_FILES and content:
            request.lines[LINE_FILES[name]] = (offset, content)
        # Other names are not sent by the 0.31 client; they are ignored rather than failing its stream.
    complete = body.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise StreamError("`complete` must be a boolean")
    request.complete = bool(complete)
    exit_code = body.get("exitcode")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise StreamError("`exitcode` must be an integer")
    request.exit_code = exit_code
    request.preempting = bool(body.get("preempting"))
    uploaded = body.get("uploaded") or []
    if not isinstance(uploaded, list) or not all(isinstance(n, str) for n in uploaded):
        raise StreamError("`uploaded` must be a list of strings")
    request.uploaded = uploaded
    return request


def json_object(text: str) -> dict[str, Any] | None:
    """A line decoded when it is a JSON object, else None. NaN and ±Infinity (the client writes them as the bare
    words, as Python's json does) decode to floats."""
    try:
        # orjson is several times faster; it refuses those words (and integers beyond 64 bits), json takes them.
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def apply_stream_request(session: Session, run: Run, request: StreamRequest) -> bool:
    """Store a file stream request's lines and apply its summary, state and exit code to `run`.

    Inside a write transaction that holds the run's lock.

    Args:
        session: The session of that transaction.
        run: The run (its row is updated in the session).
        request: The checked request.

    Returns:
        Whether output.log must be made again.
    """
    for kind, (offset, lines) in request.lines.items():
        if kind == HISTORY:
            # Lines below the count were stored before (a retried request): counted once only.
            new = lines[max(run.history_line_count - offset, 0) :]
            if new:
                run.history_keys = updated_history_keys(run.history_keys, map(json_object, new))
        _upsert_lines(session, run.id, kind, offset, lines)
        end = offset + len(lines)
        if kind == HISTORY:
            run.history_line_count = max(run.history_line_count, end)
        elif kind == EVENTS:
            run.events_line_count = max(run.events_line_count, end)
        else:
            run.log_line_count = max(run.log_line_count, end)
    if request.summary is not None:
        run.summary = request.summary
    now = utcnow()
    run.heartbeat_at = now
    run.streamed_at = now
    run.updated_at = now
    if request.complete:
        run.exit_code = request.exit_code
        run.state = FINISHED if not request.exit_code else FAILED
    elif request.preempting:
        run.state = PREEMPTING
    elif run.state != PREEMPTING:
        # The client streams in order, one request at a time: anything before its final request means the
        # run is live (again, when it was resumed after finishing or was marked crashed while unreachable).
        run.state = RUNNING
        run.exit_code = None
    # On completion too: the client uploads its own output.log as it finishes, which after a resume holds
    # only this session's lines; the streamed lines of every session make the file again.
    return OUTPUT in request.lines or (request.complete and run.log_line_count > 0)


def _upsert_lines(session: Session, run_id: int, kind: int, offset: int, lines: Sequence[str]) -> None:
    rows = [{"run_id": run_id, "kind": kind, "line_no": offset + i, "content": line} for i, line in enumerate(lines)]
    insert = upsert_insert(session)(RunLine)
    conflict = [RunLine.run_id, RunLine.kind, RunLine.line_no]
    session.execute(
        insert.on_conflict_do_update(index_elements=conflict, set_={"content": insert.excluded.content}), rows
    )


def history_step(row: dict[str, Any] | None) -> int | None:
    """A history row's `_step` when it is an integer (the client sends one with every row), else None."""
    step = row.get("_step") if row is not None else None
    if isinstance(step, float) and step.is_integer():
        return int(step)
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def updated_history_keys(keys_text: str | None, rows: Iterable[dict[str, Any] | None]) -> str:
    """W&B's historyKeys after `rows` more history rows: each key's value types counted and its last value,
    and the last step. A nested object is counted under its dotted keys ("a.b"), as W&B flattens them; one
    with a `_type` (a logged image, table, histogram) is one value of that type.

    Args:
        keys_text: The stored historyKeys (a JSON object string), or None before the first row.
        rows: The new rows, decoded (None for a line that is not a JSON object: skipped).

    Returns:
        The historyKeys as a JSON object string.
    """
    summary: dict[str, Any] = json.loads(keys_text) if keys_text else {"keys": {}}
    # Counted in plain dicts first (a request brings a thousand rows of the same few keys), merged at the end.
    counts: dict[str, dict[str, int]] = {}
    values: dict[str, Any] = {}
    last_step = summary.get("lastStep", -1)
    for row in rows:
        if row is None:
            continue
        for key, value in _flat_items(row, ""):
            kind = _TYPE_NAMES.get(type(value)) or _value_type(value)
            of_key = counts.get(key)
            if of_key is None:
                of_key = counts[key] = {}
            of_key[kind] = of_key.get(kind, 0) + 1
            values[key] = value
        step = history_step(row)
        if step is not None and step > last_step:
            last_step = step
    keys: dict[str, Any] = summary.setdefault("keys", {})
    for key, of_key in counts.items():
        entry = keys.get(key)
        if entry is None:
            entry = keys[key] = {"typeCounts": []}
        counted = {c["type"]: c for c in entry["typeCounts"]}
        for kind, n in of_key.items():
            if kind in counted:
                counted[kind]["count"] += n
            else:
                entry["typeCounts"].append({"type": kind, "count": n})
        entry["previousValue"] = values[key]
    if last_step >= 0:
        summary["lastStep"] = last_step
    return json.dumps(summary)


def _flat_items(row: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in row.items():
        if type(value) is dict and value and "_type" not in value:
            yield from _flat_items(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


_TYPE_NAMES = {int: "number", float: "number", str: "string", bool: "boolean", type(None): "nil", list: "list"}


def _value_type(value: Any) -> str:
    """The type name W&B's historyKeys counts a value under."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "nil"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict) and isinstance(value.get("_type"), str):
        return str(value["_type"])
    return "map"


def stream_lines(session: Session, run_id: int, kind: int, start: int = 0, stop: int | None = None) -> list[str]:
    """The stored lines of one streamed file of a run, in line order (a line never sent is skipped).

    Args:
        session: An open session.
        run_id: The run's row id.
        kind: HISTORY, EVENTS or OUTPUT.
        start: The first line number.
        stop: One past the last line number; None for all.

    Returns:
        The lines' contents.
    """
    stmt = (
        select(RunLine.content)
        .where(RunLine.run_id == run_id, RunLine.kind == kind, RunLine.line_no >= start)
        .order_by(RunLine.line_no)
    )
    if stop is not None:
        stmt = stmt.where(RunLine.line_no < stop)
    return list(session.scalars(stmt))


def tail_json(session: Session, run_id: int, kind: int, count: int) -> str:
    """The last `count` lines as W&B's historyTail/eventsTail: a JSON string of a list of the line strings."""
    stmt = (
        select(RunLine.content)
        .where(RunLine.run_id == run_id, RunLine.kind == kind)
        .order_by(RunLine.line_no.desc())
        .limit(count)
    )
    return json.dumps(list(reversed(list(session.scalars(stmt)))))


def console_text(lines: Iterable[str]) -> bytes:
    """output.log as the client writes it to its own run directory: each streamed console line without the
    stream's "ERROR "/timestamp prefix, each ended by a newline."""
    return b"".join(_CONSOLE_PREFIX.sub("", line, count=1).encode() + b"\n" for line in lines)


def md5_b64_of(data: bytes) -> str:
    """W&B's form of an md5: the base64 of the binary digest."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def mark_silent_runs(session: Session, timeout_seconds: float, now: datetime | None = None) -> int:
    """Mark runs that have sent nothing for `timeout_seconds` as crashed (preempting ones as preempted).

    Args:
        session: A session outside any transaction (one write transaction is used).
        timeout_seconds: The heartbeat timeout.
        now: The current time (naive UTC); now when omitted.

    Returns:
        How many runs changed state.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=timeout_seconds)
    changed = 0
    with write_transaction(session):
        for old, new in ((RUNNING, CRASHED), (PREEMPTING, PREEMPTED)):
            result = session.execute(
                update(Run)
                .where(Run.state == old, Run.streamed_at.is_not(None), Run.streamed_at < cutoff)
                .values(state=new)
                .execution_options(synchronize_session=False)
            )
            changed += int(getattr(result, "rowcount", 0) or 0)
    return changed
