"""neptune-query's shape on W&B runs: `fetch_series`, `fetch_runs_table`, `download_files` and `Filter`.

Porting from neptune-query is a changed import::

    import wandb_files.query as wq
    from wandb_files.query import Filter

    files = wq.fetch_series(
        project="team-alpha/project-x",
        runs=Filter.eq("config/model", "resnet") & Filter.gt("summary/acc", 0.5),
        attributes=r"^predictions",
        step_range=(1.0, 3.0),
    )
    wq.download_files(files=files)

W&B logs media as ``media/<kind>/<key>_<step>_<hash>.<ext>``: such a file is attribute ``<key>`` at step
``<step>`` (see `wandb_files.bulk.attribute_and_step`). Any other file of a run is an attribute of its own,
named by its path, with no step: `fetch_runs_table` lists those, and beside them the run's metadata as
attributes ``config/<key>``, ``summary/<key>`` and ``sys/...`` (the names a `Filter` takes).

Runs are chosen by the server: a `Filter` compiles to W&B's filter document (`Filter.to_wandb`), which the
server evaluates as `Api.runs(filters=...)` does; a list of run ids fetches those runs by id.

Filters on files go to the server where they can: a list of attributes, or a regular expression whose every
match starts with one of a few literals (``^predictions``, ``^predictions|^val_pred``), becomes a ``pattern``
of the listing (one listing a literal), so a run's other files are never listed. Where that is not provable,
every file is listed and the expression is matched here (see `regex_heads`).
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import math
import operator
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from wandb_files.bulk import attribute_and_step, download_files, require_pandas
from wandb_files.files import File, Files
from wandb_files.filters import filters_json
from wandb_files.patterns import like_escape
from wandb_files.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from wandb_files.api import Api

__all__ = ["Filter", "download_files", "fetch_runs_table", "fetch_series"]

#: Files a listing request carries: the most the server gives (fewer requests for big runs).
_PAGE = 1000
#: Up to this many attributes listed by name get a listing each; more are matched in one listing of all media.
_MAX_PATTERNS = 4


# --- choosing runs: neptune-query's Filter, compiled to W&B's filter document -----------------------------------

#: neptune's system attributes: the W&B filter key each stands for, and what its values are.
_SYSTEM: dict[str, tuple[str, str]] = {
    "sys/id": ("name", "text"),  # neptune's run id; W&B's `name` is the run id
    "sys/custom_run_id": ("name", "text"),
    "sys/name": ("display_name", "text"),  # neptune's human-readable name; W&B's display name
    "sys/state": ("state", "text"),
    "sys/tags": ("tags", "tags"),
    "sys/group": ("group", "text"),
    "sys/job_type": ("jobType", "text"),
    "sys/owner": ("username", "text"),
    "sys/creation_time": ("createdAt", "time"),
    "sys/ping_time": ("heartbeatAt", "time"),
}
#: Namespaces whose rest is a W&B key path: ``config/optimizer.lr`` is ``config.optimizer.lr``.
_NAMESPACES = {"config/": "config.", "summary/": "summary_metrics."}
#: Characters a regular expression must escape to stand for themselves (the server's subset takes `\\` + these).
_REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\")


def _wandb_key(attribute: object) -> tuple[str, str]:
    """The W&B filter key an attribute name stands for, and its kind: text, time, tags or value."""
    if not isinstance(attribute, str):
        raise TypeError(f"an attribute is a name such as 'config/lr', not {type(attribute).__name__}")
    if attribute in _SYSTEM:
        return _SYSTEM[attribute]
    for prefix, key in _NAMESPACES.items():
        if attribute.startswith(prefix) and len(attribute) > len(prefix):
            return key + attribute[len(prefix) :], "value"
    raise ValueError(
        f"attribute {attribute!r} has no W&B equivalent: use 'config/<key>', 'summary/<key>' (nested keys with "
        f"dots, e.g. 'config/optimizer.lr') or one of {', '.join(_SYSTEM)}"
    )


def _iso(moment: datetime) -> str:
    """A time as the server compares it: ISO 8601 in UTC (a naive time is taken as UTC already)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _operand(method: str, attribute: str, kind: str, value: object) -> Any:
    """`value` as the filter document holds it, checked against what `attribute` holds."""
    if kind == "tags":
        raise ValueError(
            f"Filter.{method}: {attribute} is a set of tags; use Filter.contains_all, contains_none or matches"
        )
    if isinstance(value, datetime):
        return _iso(value)
    if kind == "time":
        if not isinstance(value, str):
            raise TypeError(f"Filter.{method}: {attribute} takes a datetime or an ISO 8601 string, not {value!r}")
        return value
    if kind == "text" and not isinstance(value, str):
        raise TypeError(f"Filter.{method}: {attribute} holds text, so the value must be a string, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"Filter.{method}: {value} cannot be compared on the server (not a JSON number)")
    if value is None or not isinstance(value, (bool, int, float, str)):
        raise TypeError(f"Filter.{method}: the value must be a number, string, bool or datetime, not {value!r}")
    return value


def _texts(method: str, values: object) -> list[str]:
    items = [values] if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise TypeError(f"Filter.{method}: values must be a string or a list of strings, not {values!r}")
    if not items:
        raise ValueError(f"Filter.{method}: values is an empty list")
    return list(items)


def _literal_regex(text: str) -> str:
    """A regular expression (in the server's subset) that finds `text` itself."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


class Filter:
    """Which runs to take, as neptune-query writes it; the server evaluates it as W&B's filter document.

    Build one with the static methods and combine them with ``&`` (and), ``|`` (or) and ``~`` (not)::

        Filter.eq("config/model", "resnet") & Filter.gt("summary/acc", 0.5) & ~Filter.contains_all("sys/tags", "t")

    Attribute names: ``config/<key>`` and ``summary/<key>`` (nested keys with dots: ``config/optimizer.lr``;
    the rest of the name is the W&B key as it is, so ``summary/val/acc`` is the summary key ``val/acc``), and
    ``sys/id`` (the run id; also ``sys/custom_run_id``), ``sys/name`` (the display name), ``sys/state``,
    ``sys/tags``, ``sys/group``, ``sys/job_type``, ``sys/owner``, ``sys/creation_time``, ``sys/ping_time``
    (the last heartbeat). Any other name is a `ValueError` when the filter is built. ``sys/name`` is the display
    name a run was given: a run given none shows its id as its name, but has no ``sys/name`` to filter on.

    Values follow W&B's (MongoDB's) rules, see docs/run-filters.md: a comparison matches only values of its
    operand's type (numbers with numbers, strings with strings); a run without the attribute matches `ne`,
    `contains_none`, a negated `matches` term and ``~`` of a filter it does not match; datetimes are compared
    as ISO 8601 times in UTC.
    """

    __slots__ = ("_document",)

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Wrap a W&B filter document (checked as `Api.runs` checks it); the static methods build them for you.

        Args:
            document: A W&B filter document, e.g. ``{"config.lr": {"$lt": 0.1}}``.

        Raises:
            TypeError, ValueError: `document` is not a well-formed filter document (the message names the place).
        """
        self._document: dict[str, Any] = json.loads(filters_json(document))

    @staticmethod
    def _compare(method: str, op: str, attribute: str, value: object) -> Filter:
        key, kind = _wandb_key(attribute)
        return Filter({key: {op: _operand(method, attribute, kind, value)}})

    @staticmethod
    def eq(attribute: str, value: int | float | str | bool | datetime) -> Filter:
        """The attribute equals `value` (of the same type).

        Args:
            attribute: An attribute name, e.g. ``"config/model"``.
            value: A number, string, bool or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags`` (use `contains_all`).
        """
        return Filter._compare("eq", "$eq", attribute, value)

    @staticmethod
    def ne(attribute: str, value: int | float | str | bool | datetime) -> Filter:
        """The attribute does not equal `value`; runs without the attribute match too.

        Args:
            attribute: An attribute name, e.g. ``"summary/acc"``.
            value: A number, string, bool or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags``.
        """
        return Filter._compare("ne", "$ne", attribute, value)

    @staticmethod
    def gt(attribute: str, value: int | float | str | datetime) -> Filter:
        """The attribute is greater than `value` (of the same type).

        Args:
            attribute: An attribute name, e.g. ``"summary/acc"``.
            value: A number, string or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags``.
        """
        return Filter._compare("gt", "$gt", attribute, value)

    @staticmethod
    def ge(attribute: str, value: int | float | str | datetime) -> Filter:
        """The attribute is greater than or equal to `value` (of the same type).

        Args:
            attribute: An attribute name, e.g. ``"summary/acc"``.
            value: A number, string or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags``.
        """
        return Filter._compare("ge", "$gte", attribute, value)

    @staticmethod
    def lt(attribute: str, value: int | float | str | datetime) -> Filter:
        """The attribute is less than `value` (of the same type).

        Args:
            attribute: An attribute name, e.g. ``"summary/acc"``.
            value: A number, string or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags``.
        """
        return Filter._compare("lt", "$lt", attribute, value)

    @staticmethod
    def le(attribute: str, value: int | float | str | datetime) -> Filter:
        """The attribute is less than or equal to `value` (of the same type).

        Args:
            attribute: An attribute name, e.g. ``"summary/acc"``.
            value: A number, string or datetime.

        Returns:
            The filter.

        Raises:
            TypeError: `value` has a type the attribute cannot hold.
            ValueError: the attribute has no W&B equivalent, or is ``sys/tags``.
        """
        return Filter._compare("le", "$lte", attribute, value)

    @staticmethod
    def matches(attribute: str, pattern: str) -> Filter:
        """The attribute's text matches neptune's extended regular expression (searched, not anchored).

        Alternatives are joined by `` | ``, terms of one alternative by `` & ``, and a term led by ``!`` must
        not match. On ``sys/tags``, a term holds when some tag matches it. The server takes the common subset
        of RE2, Python and PostgreSQL regular expressions (docs/run-filters.md); others are refused by it.

        Args:
            attribute: An attribute holding text, e.g. ``"sys/name"`` or ``"config/model"``.
            pattern: The expression, e.g. ``r"^res | ^vit & !tiny"``.

        Returns:
            The filter.

        Raises:
            TypeError: `pattern` is not a string.
            ValueError: `pattern` is not a regular expression, or the attribute is a time or has no W&B equivalent.
        """
        key, kind = _wandb_key(attribute)
        if not isinstance(pattern, str):
            raise TypeError(f"Filter.matches: pattern must be a string, not {type(pattern).__name__}")
        if kind == "time":
            raise ValueError(f"Filter.matches: {attribute} is a time; compare it with gt, lt, ...")
        alternatives: list[Filter] = []
        for terms in _extended_regex(f"Filter.matches({attribute!r})", pattern):
            found: list[Filter] = []
            for negated, regex in terms:
                term = Filter({key: {"$regex": regex.pattern}})
                found.append(~term if negated else term)
            alternatives.append(functools.reduce(operator.and_, found))
        return functools.reduce(operator.or_, alternatives)

    @staticmethod
    def contains_all(attribute: str, values: str | list[str]) -> Filter:
        """``sys/tags`` holds every one of the tags; any other attribute's text contains every substring.

        Args:
            attribute: ``"sys/tags"``, or an attribute holding text.
            values: A tag (substring), or a non-empty list of them.

        Returns:
            The filter.

        Raises:
            TypeError: `values` is not a string or a list of strings.
            ValueError: `values` is empty, or the attribute is a time or has no W&B equivalent.
        """
        key, kind = _wandb_key(attribute)
        items = _texts("contains_all", values)
        if kind == "time":
            raise ValueError(f"Filter.contains_all: {attribute} is a time, not text")
        if kind == "tags":
            return functools.reduce(operator.and_, (Filter({key: tag}) for tag in items))
        return functools.reduce(operator.and_, (Filter({key: {"$regex": _literal_regex(v)}}) for v in items))

    @staticmethod
    def contains_none(attribute: str, values: str | list[str]) -> Filter:
        """``sys/tags`` holds none of the tags; any other attribute's text contains none of the substrings
        (runs without the attribute match).

        Args:
            attribute: ``"sys/tags"``, or an attribute holding text.
            values: A tag (substring), or a non-empty list of them.

        Returns:
            The filter.

        Raises:
            TypeError: `values` is not a string or a list of strings.
            ValueError: `values` is empty, or the attribute is a time or has no W&B equivalent.
        """
        key, kind = _wandb_key(attribute)
        items = _texts("contains_none", values)
        if kind == "time":
            raise ValueError(f"Filter.contains_none: {attribute} is a time, not text")
        if kind == "tags":
            return Filter({key: {"$nin": items}})
        return Filter({"$nor": [{key: {"$regex": _literal_regex(v)}} for v in items]})

    @staticmethod
    def exists(attribute: str) -> Filter:
        """The run has the attribute (a config or summary key, a display name, a group...; every run has tags).

        Args:
            attribute: An attribute name.

        Returns:
            The filter.

        Raises:
            ValueError: the attribute has no W&B equivalent.
        """
        key, _ = _wandb_key(attribute)
        return Filter({key: {"$exists": True}})

    @staticmethod
    def name(names: str | list[str]) -> Filter:
        """The display name (``sys/name``) matches an extended regular expression, or is one of `names`.

        Args:
            names: An expression (as `matches` takes it), or a list of display names.

        Returns:
            The filter.

        Raises:
            TypeError: `names` is neither a string nor a list of strings.
        """
        if isinstance(names, str):
            return Filter.matches("sys/name", names)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"Filter.name: names must be a regular expression or a list of names, not {names!r}")
        return Filter({"display_name": {"$in": list(names)}})

    def _joined(self, other: Filter, op: str) -> Filter:
        parts: list[Any] = []
        for side in (self._document, other._document):
            # (a & b) & c is one $and of three: flatter documents, and the server's depth limit is not reached.
            parts += side[op] if list(side) == [op] else [side]
        joined = Filter.__new__(Filter)
        joined._document = {op: copy.deepcopy(parts)}
        return joined

    def __and__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return self._joined(other, "$and")

    def __or__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return self._joined(other, "$or")

    def __invert__(self) -> Filter:
        inverted = Filter.__new__(Filter)
        nor = self._document.get("$nor") or []
        if list(self._document) == ["$nor"] and len(nor) == 1:
            inverted._document = copy.deepcopy(nor[0])  # ~~f is f
        else:
            inverted._document = {"$nor": [copy.deepcopy(self._document)]}
        return inverted

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._document == other._document

    def __hash__(self) -> int:
        return hash(json.dumps(self._document, sort_keys=True))

    def __repr__(self) -> str:
        return f"Filter({json.dumps(self._document)})"

    def to_wandb(self) -> dict[str, Any]:
        """The W&B filter document, as `Api.runs(filters=...)`, `sync(filters=...)` and the CLI's ``--filter`` take it.

        Returns:
            A new dict, e.g. ``{"$and": [{"config.model": {"$eq": "resnet"}}, {"summary_metrics.acc": {"$gt": 0.5}}]}``.
        """
        return copy.deepcopy(self._document)


def fetch_series(
    project: str,
    runs: str | Sequence[str] | Filter | None = None,
    attributes: str | Sequence[str] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    *,
    api: Api | None = None,
) -> pd.DataFrame:
    """The media files W&B logged as series, as a table by (run, step), one column per attribute.

    Args:
        project: ``"entity/project"``, or a project name of the key's default entity.
        runs: Run ids, a regular expression over run ids (searched, as neptune-query does), or a `Filter` over
            the runs' metadata (evaluated by the server); None for all.
        attributes: Attribute names (media keys, e.g. ``"predictions"`` or ``"val/examples"``), or a regular
            expression over them; None for all.
        step_range: ``(first, last)``, both included; either end None for no bound.
        api: The `Api` to use; a default `Api()` when omitted.

    Returns:
        A DataFrame with the MultiIndex ``["run", "step"]`` (step a float) and one column per attribute,
        whose cells are `File` objects; where several files share a run, step and attribute (a logged list
        of images), the cell is the list of them, in name order. Pass it to `download_files`.

    Raises:
        ImportError: pandas is not installed.
        TypeError, ValueError: a bad argument (named in the message), before any request.
        NotFoundError: the project, or a run named in `runs`, does not exist.
        BadRequestError: the server refused the `Filter` (a regular expression outside its subset, say).
    """
    pd = require_pandas()
    low, high = _check_step_range(step_range)
    wanted = _Matcher("attributes", attributes)
    cells: dict[tuple[str, float], dict[str, list[File]]] = {}
    run_order: list[str] = []
    for run in _runs(project, runs, api):
        run_order.append(run.id)
        for file in _listing(run, wanted.media_patterns()):
            attribute, step = attribute_and_step(file.name)
            if math.isnan(step) or not wanted.matches(attribute):
                continue
            if (low is not None and step < low) or (high is not None and step > high):
                continue
            cells.setdefault((run.id, step), {}).setdefault(attribute, []).append(file)
    order = {run_id: i for i, run_id in enumerate(run_order)}
    keys = sorted(cells, key=lambda key: (order[key[0]], key[1]))
    rows = [{attribute: _cell(found) for attribute, found in cells[key].items()} for key in keys]
    index = pd.MultiIndex.from_tuples(keys, names=["run", "step"])
    return _frame(pd, rows, index)


def fetch_runs_table(
    project: str,
    runs: str | Sequence[str] | Filter | None = None,
    attributes: str | Sequence[str] | None = None,
    *,
    api: Api | None = None,
) -> pd.DataFrame:
    """The runs' metadata and their files that are not media series, as a table: one row per run.

    A run's attributes are its files that are not W&B media series, named by path (``config.yaml``,
    ``data/sample.csv``), and its metadata: ``config/<key>`` and ``summary/<key>`` for each top-level key,
    and ``sys/id``, ``sys/name`` (display name), ``sys/state``, ``sys/tags``, ``sys/group``, ``sys/job_type``,
    ``sys/owner``, ``sys/creation_time``, ``sys/ping_time``: the names a `Filter` takes. A name listed
    explicitly may also reach into a nested value with dots (``config/optimizer.lr``).

    Args:
        project: ``"entity/project"``, or a project name of the key's default entity.
        runs: Run ids, a regular expression over run ids (searched), or a `Filter` (evaluated by the server);
            None for all.
        attributes: Attribute names (``["config/lr", "summary/acc", "sample.csv"]``: names under ``config/``,
            ``summary/`` and ``sys/`` are metadata, never files), or neptune's extended regular expression over
            every attribute of a run (``r"^config/ | ^summary/acc$"``); None for the files only.
        api: The `Api` to use; a default `Api()` when omitted.

    Returns:
        A DataFrame indexed by ``run``, one column per attribute found (NaN where a run lacks it; listed
        attributes in the list's order, others by name): metadata
        columns hold the values (numbers, strings, lists, dicts; times as UTC `pandas.Timestamp`), file
        columns `File` objects. `download_files` turns the file columns into local paths by ``(run, step)``
        with step NaN, and ignores the metadata columns.

    Raises:
        ImportError: pandas is not installed.
        TypeError, ValueError: a bad argument (named in the message), before any request; also a run that
            holds a file named as one of its metadata attributes (``config/lr``) that a regular expression
            matches, since the column would be ambiguous.
        NotFoundError: the project, or a run named in `runs`, does not exist.
        BadRequestError: the server refused the `Filter` (a regular expression outside its subset, say).
    """
    pd = require_pandas()
    wanted = _Matcher("attributes", attributes)
    value_names: list[str] = []
    file_names: list[str] = []
    if wanted.names is not None:
        for name in wanted.names:
            if _is_metadata(name):
                _wandb_key(name)  # an unknown sys/ name is an error before any request
                value_names.append(name)
            else:
                file_names.append(name)
    rows: list[dict[str, Any]] = []
    run_ids: list[str] = []
    metadata: set[str] = set()
    for run in _runs(project, runs, api):
        row: dict[str, Any] = {}
        listing: Iterator[File] | Files
        if wanted.names is not None:
            row.update((name, value) for name in value_names for value in _run_value(run, name))
            listing = run.files(names=file_names, per_page=_PAGE) if file_names else iter(())
        else:
            if wanted.alternatives is not None:
                row.update((name, value) for name, value in _run_values(run) if wanted.matches(name))
            listing = _listing(run, wanted.patterns())
        metadata.update(row)
        for file in listing:
            if math.isnan(attribute_and_step(file.name)[1]) and wanted.matches(file.name):
                if file.name in row:
                    raise ValueError(
                        f"run {run.id} has a file named {file.name!r}, the name of one of its metadata attributes; "
                        "list the attributes by name to choose which (a listed config/... name is metadata)"
                    )
                row[file.name] = file
        run_ids.append(run.id)
        rows.append(row)
    frame = _frame(pd, rows, pd.Index(run_ids, name="run"))
    found = list(frame.columns)
    frame = frame[[n for n in wanted.names if n in found] if wanted.names is not None else sorted(found)]
    for column in metadata:
        frame[column] = frame[column].infer_objects()  # numbers and times get pandas' dtypes
    return frame


def _is_metadata(name: str) -> bool:
    return name.startswith(("config/", "summary/", "sys/"))


#: The run's system attributes a regular expression of `fetch_runs_table` may find (not the alias of sys/id).
_LISTED_SYSTEM = tuple(name for name in _SYSTEM if name != "sys/custom_run_id")


def _run_values(run: Run) -> Iterator[tuple[str, Any]]:
    """Every metadata attribute the run has, by name: its sys/ fields, then its config and summary keys."""
    for name in _LISTED_SYSTEM:
        for value in _run_value(run, name):
            yield name, value
    for key, value in run.config.items():
        yield f"config/{key}", copy.deepcopy(value)
    for key, value in run.summary.items():
        yield f"summary/{key}", copy.deepcopy(value)


#: How each system attribute is read off a `Run` (None: the run does not have it).
_SYSTEM_VALUES: dict[str, Callable[[Run], Any]] = {
    "sys/id": lambda run: run.id,
    "sys/custom_run_id": lambda run: run.id,
    "sys/name": lambda run: run.display_name,
    "sys/state": lambda run: run.state,
    "sys/tags": lambda run: list(run.tags),
    "sys/group": lambda run: run.group,
    "sys/job_type": lambda run: run.job_type,
    "sys/owner": lambda run: run.user.username if run.user is not None else None,
    "sys/creation_time": lambda run: _timestamp(run.created_at),
    "sys/ping_time": lambda run: _timestamp(run.heartbeat_at),
}


def _run_value(run: Run, name: str) -> Iterator[Any]:
    """The value of the run's metadata attribute `name`, once, or nothing when the run does not have it."""
    if name in _SYSTEM_VALUES:
        value = _SYSTEM_VALUES[name](run)
        if value is not None:
            yield value
        return
    source: Mapping[str, Any] = run.config if name.startswith("config/") else run.summary
    found = _lookup(source, name.split("/", 1)[1])
    if found:
        yield copy.deepcopy(found[0])


def _lookup(values: Mapping[str, Any], key: str) -> list[Any]:
    """``[value]`` of `key` in `values` (a literal key first, else a path of nested keys joined by dots), or []."""
    if key in values:
        return [values[key]]
    head, dot, rest = key.partition(".")
    while dot:
        inner = values.get(head)
        if isinstance(inner, Mapping):
            found = _lookup(inner, rest)
            if found:
                return found
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return []


def _timestamp(text: str | None) -> Any:
    """An ISO 8601 time from the server as a UTC `pandas.Timestamp`."""
    if not text:
        return None
    moment = require_pandas().Timestamp(text)
    return moment if moment.tzinfo is not None else moment.tz_localize("UTC")


# --- choosing runs and files --------------------------------------------------------------------------------


def _check_step_range(step_range: object) -> tuple[float | None, float | None]:
    if not isinstance(step_range, tuple) or len(step_range) != 2:
        raise TypeError(f"step_range must be a (first, last) tuple, not {step_range!r}")
    low, high = step_range
    for end in (low, high):
        if end is not None and (isinstance(end, bool) or not isinstance(end, (int, float)) or math.isnan(end)):
            raise TypeError(f"step_range ends must be numbers or None, not {end!r}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"step_range {step_range!r} is empty: its first step is after its last")
    return low, high


class _Matcher:
    """A filter given as a list of names, or as neptune-query's extended regular expression: alternatives
    joined by `` | ``, each a conjunction of terms joined by `` & ``, a term led by ``!`` negated; each term
    is searched (``re.search``). A plain regular expression is one term."""

    def __init__(self, argument: str, spec: str | Sequence[str] | None) -> None:
        self.names: list[str] | None = None
        self.alternatives: list[list[tuple[bool, re.Pattern[str]]]] | None = None
        if spec is None:
            return
        if isinstance(spec, str):
            self.alternatives = _extended_regex(argument, spec)
        else:
            try:
                self.names = list(dict.fromkeys(spec))
            except TypeError:
                raise TypeError(f"{argument} must be a list of names or a regular expression, not {spec!r}") from None
            if not all(isinstance(name, str) for name in self.names):
                raise TypeError(f"{argument} must be a list of strings or a regular expression, not {spec!r}")

    def matches(self, name: str) -> bool:
        if self.names is not None:
            return name in self.names
        if self.alternatives is None:
            return True
        return any(
            all(
                (regex.search(name) is None) if negated else (regex.search(name) is not None)
                for negated, regex in terms
            )
            for terms in self.alternatives
        )

    def _prefixes(self) -> list[str] | None:
        """Texts one of which starts every name that matches, or None when no such texts are known."""
        if self.alternatives is None:
            return None
        found: set[str] = set()
        for terms in self.alternatives:
            # A conjunction holds only names every term holds: any one term's heads will do; the fewest, longest.
            options: list[list[str]] = [
                texts for negated, regex in terms if not negated for texts in [regex_heads(regex)] if texts
            ]
            if not options:
                return None
            best = min(options, key=_listing_cost)
            found.update(best)
        # A head that another head starts already lists nothing more (`^ab|^a`: `a` is enough).
        heads = sorted(head for head in found if not any(head.startswith(o) and head != o for o in found))
        if len(heads) > _MAX_PATTERNS:
            common = os.path.commonprefix(heads)  # noqa: RUF071 - a prefix of characters, not of path components
            return [common] if common else None
        return heads

    def patterns(self) -> list[str | None]:
        """LIKE patterns over whole file names that hold every match (None: list everything)."""
        heads = self._prefixes()
        return [like_escape(head) + "%" for head in heads] if heads else [None]

    def media_patterns(self) -> list[str | None]:
        """LIKE patterns over media file names (``media/<kind>/<key>_<step>_…``) that hold every match."""
        if self.names is not None and len(self.names) <= _MAX_PATTERNS:
            return [f"media/%/{like_escape(name)}\\_%" for name in self.names]
        heads = self._prefixes()
        return [f"media/%/{like_escape(head)}%" for head in heads] if heads else ["media/%"]


# --- what a regular expression says about the start of its matches ---------------------------------------------

# Python's own parser of regular expressions: what `re.compile` itself compiles, so the derivation below reads the
# expression exactly as matching does (flags, escapes, verbose mode, the parser's own rewriting of `^a|^b`). It is
# internal (`re._parser` from 3.11, `sre_parse` before); anything it gives that the walk does not know ends the
# walk, and a failure of the walk only means no pattern goes to the server.
_sre: Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
#: Flags under which a literal in the parse does not stand for exactly itself, or `^` for the name's start only.
_FLAGS_THAT_CHANGE_MATCHING = re.IGNORECASE | re.MULTILINE
#: Most texts one part of an expression may stand for (`^(a|b)`: two) before the walk stops there.
_MAX_HEADS = _MAX_PATTERNS
#: Most steps one derivation may take (alternations compound: `^(a|b)(c|d)…`).
_MAX_STEPS = 500


def regex_heads(regex: re.Pattern[str]) -> list[str] | None:
    """Texts one of which every name that `regex` finds (``regex.search(name)``) starts with, or None.

    Only what the expression provably implies: it must be anchored at the start in every alternative, and the
    texts are the literal characters that follow, through groups and alternations (``^(?:ab|cd)e`` gives
    ``abe`` and ``cde``); the walk stops at the first part that may match other text. A case-insensitive or
    multi-line expression gives None.

    Args:
        regex: A compiled pattern over names.

    Returns:
        The texts (none empty), sorted, at most a few; None when matches may start anywhere or with anything.
    """
    if regex.flags & _FLAGS_THAT_CHANGE_MATCHING:
        return None
    try:
        parsed = _sre.parse(regex.pattern, regex.flags)
        if parsed.state.flags & _FLAGS_THAT_CHANGE_MATCHING:
            return None
        heads = _anchored_heads(list(parsed), [_MAX_STEPS])
    except (RecursionError, AttributeError, TypeError, ValueError, IndexError, re.error):
        return None  # an expression or a parser version the walk does not follow: no pattern is safe
    return sorted(heads) if heads and all(heads) else None


def _anchored_heads(items: list[Any], steps: list[int]) -> set[str] | None:
    """Heads of the matches of `items` when every way through them starts with `^` or ``\\A``, else None."""
    steps[0] -= 1
    if not items or steps[0] < 0:
        return None
    (op, av), rest = items[0], items[1:]
    if op is _sre.AT and av in (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING):
        return _heads(rest, steps)
    ways = _ways(op, av)
    if ways is None:
        return None
    found: set[str] = set()
    for way in ways:
        heads = _anchored_heads(way + rest, steps)
        if heads is None:
            return None
        found |= heads
    return found


def _heads(items: list[Any], steps: list[int]) -> set[str]:
    """Texts one of which every match of `items` (a sequence of the parse) starts with: at least ``{""}``."""
    literal: list[str] = []
    for i, (op, av) in enumerate(items):
        if op is _sre.LITERAL:
            literal.append(chr(av))
            continue
        head = "".join(literal)
        steps[0] -= 1
        repeated = op in _REPEATS and av[0] >= 1
        # A match of a repeat starts with one of the repeated part; what follows it cannot be known to come next.
        ways = [list(av[2])] if repeated else _ways(op, av)
        if ways is None or steps[0] < 0:
            return {head}
        # What follows the item extends its texts, unless that makes too many (`^(a|b)(c|d)(e|f)`).
        tails = None if repeated else _union([way + items[i + 1 :] for way in ways], steps)
        tails = tails or _union(ways, steps) or {""}
        return {head + tail for tail in tails}
    return {"".join(literal)}


def _union(ways: list[list[Any]], steps: list[int]) -> set[str] | None:
    """The heads of all `ways` together, or None when they are more than a listing per head is worth."""
    found: set[str] = set()
    for way in ways:
        found |= _heads(way, steps)
        if len(found) > _MAX_HEADS:
            return None
    return found


def _ways(op: Any, av: Any) -> list[list[Any]] | None:
    """The sequences one item of the parse stands for, one of which each match of it matches; None if unknown."""
    if op is _sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op is _sre.IN and av and all(kind is _sre.LITERAL for kind, _ in av):  # a set of characters, not negated
        return [[(_sre.LITERAL, ch)] for _, ch in av]
    if op is _sre.SUBPATTERN and not av[1] & _FLAGS_THAT_CHANGE_MATCHING:
        return [list(av[3])]
    return None


_REPEATS = tuple(
    getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name)
)


def _listing_cost(heads: list[str]) -> tuple[int, int]:
    """Fewer listings first, then the longer shortest head (a narrower listing)."""
    return len(heads), -min(len(head) for head in heads)


def _extended_regex(argument: str, spec: str) -> list[list[tuple[bool, re.Pattern[str]]]]:
    """neptune-query's extended regular expression: alternatives joined by `` | ``, each a conjunction of terms
    joined by `` & ``, a term led by ``!`` negated, as (negated, pattern) pairs."""
    return [[_term(argument, spec, term) for term in alternative.split(" & ")] for alternative in spec.split(" | ")]


def _term(argument: str, spec: str, term: str) -> tuple[bool, re.Pattern[str]]:
    text = term.strip()
    negated = text.startswith("!")
    try:
        return negated, re.compile(text[1:].strip() if negated else text)
    except re.error as exc:
        raise ValueError(f"{argument} {spec!r} is not a regular expression: {exc}") from None


def _runs(project: str, runs: str | Sequence[str] | Filter | None, api: Api | None) -> Iterator[Run]:
    """The runs asked for: by id (no listing of the project), those a `Filter` selects (the server evaluates
    it), or the project's runs filtered by a regex over their ids; oldest first, as `Api.runs` lists them."""
    if api is None:
        from wandb_files.api import Api

        api = Api()
    if not isinstance(project, str):
        raise TypeError(f"project must be a string like 'entity/project', not {type(project).__name__}")
    if isinstance(runs, Filter):
        yield from api.runs(project, filters=runs.to_wandb(), per_page=_PAGE)
        return
    matcher = _Matcher("runs", runs)
    listed = api.runs(project, per_page=_PAGE)  # checks the path; fetches nothing yet
    if matcher.names is not None:
        for run_id in matcher.names:
            yield api.run(f"{listed.entity}/{listed.project}/{run_id}")
        return
    for run in listed:
        if matcher.matches(run.id):
            yield run


def _listing(run: Run, patterns: list[str | None]) -> Iterator[File]:
    """The run's files matching any of `patterns` (None: all), each file once, in name order per pattern."""
    seen: set[str] = set()
    for pattern in patterns:
        for file in run.files(pattern=pattern, per_page=_PAGE):
            if file.name not in seen:
                seen.add(file.name)
                yield file


def _cell(found: list[File]) -> File | list[File]:
    return found[0] if len(found) == 1 else sorted(found, key=lambda f: f.name)


def _frame(pd: Any, rows: list[dict[str, Any]], index: Any) -> pd.DataFrame:
    frame = pd.DataFrame(rows, index=index, dtype=object)
    frame.columns.name = "attribute"
    return frame
