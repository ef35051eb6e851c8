"""Run selection: W&B's filter documents (MongoDB-style JSON) and orders, compiled to SQL and paged by keyset.

The one compiler from a filter document to SQLAlchemy, for GraphQL's `Project.runs`/`runCount` and anything
else that chooses runs. Filters on config, summary and tags read the `run_values` rows (db/runvalues.py), so
they and the orders use indexes on SQLite and PostgreSQL alike. docs/run-filters.md describes the language.

Semantics follow MongoDB's: type bracketing (`$gt: 0.5` only matches numbers; booleans are not numbers),
a missing key or null matches `{k: null}`, `$ne` and `$nin` also match a missing key, `$exists: false` only a
missing one. Every compiled condition is two-valued (never SQL NULL), so NOT composes without surprises.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    except_,
    false,
    func,
    intersect,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
    union,
)
from sqlalchemy.orm import Session, aliased, lazyload
from sqlalchemy.sql.elements import KeyedColumnElement

from . import runregex
from .models import Run, RunValue, User
from .runvalues import MAX_KEY, MAX_TEXT, RANK_BOOL, RANK_NAN, RANK_NULL, RANK_NUMBER, RANK_STRING, TAGS_KEY

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Longest filter document accepted, in characters of JSON.
MAX_FILTER_CHARS = 65_536
#: Deepest nesting of $and/$or/$nor accepted.
MAX_DEPTH = 16
#: Most conditions and list items a filter document may hold in all.
MAX_NODES = 1_000

Scalar = None | bool | int | float | str
_COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
_OPERATORS = (*_COMPARISONS, "$in", "$nin", "$exists", "$regex", "$options")


class RunFilterError(ValueError):
    """A filter document or order that cannot be run; `path` names the offending part (e.g. "filters.$or[1].state")."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"invalid {path}: {message}")
        self.path = path


# --- fields ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueField:
    """A config or summary key, stored in run_values under `key` ("config.lr", "summary.eval.acc")."""

    key: str


@dataclass(frozen=True)
class ColumnField:
    """A column of runs (or the owner's user name): text or time, maybe NULL (treated as missing)."""

    name: str
    kind: Literal["text", "time"]
    nullable: bool


@dataclass(frozen=True)
class TagsField:
    """The run's tags: a list; $eq/$in mean "contains"."""


Field = ValueField | ColumnField | TagsField

_COLUMNS: dict[str, ColumnField] = {}
for _names, _field in (
    (("name",), ColumnField("name", "text", False)),
    (("display_name", "displayName"), ColumnField("display_name", "text", True)),
    (("state",), ColumnField("state", "text", False)),
    (("group",), ColumnField("group", "text", True)),
    (("jobType", "job_type"), ColumnField("job_type", "text", True)),
    (("createdAt", "created_at"), ColumnField("created_at", "time", False)),
    (("heartbeatAt", "heartbeat_at"), ColumnField("heartbeat_at", "time", True)),
    (("username",), ColumnField("username", "text", False)),
):
    for _name in _names:
        _COLUMNS[_name] = _field

_KEY_HINT = (
    "use name, display_name, state, tags, group, jobType, createdAt, heartbeatAt, username, "
    "config.<key> or summary_metrics.<key>"
)


def parse_field(key: str, path: str) -> Field:
    """The field a filter or order key names.

    Args:
        key: The key, e.g. "state", "config.lr.value", "summary_metrics.eval.acc".
        path: Where the key is, for the error.

    Returns:
        The field.

    Raises:
        RunFilterError: the key names nothing a run has.
    """
    if key in _COLUMNS:
        return _COLUMNS[key]
    if key == "tags":
        return TagsField()
    root, dot, rest = key.partition(".")
    parts = rest.split(".")
    if not dot or any(not p for p in parts):
        if root in ("config", "summary_metrics"):
            raise RunFilterError(path, f"{key!r} needs a key after '{root}.' and no empty parts")
        raise RunFilterError(path, f"unknown key {key!r}; {_KEY_HINT}")
    if root == "config":
        # config.K and config.K.value are the same value (W&B's wire form keeps it under "value").
        if len(parts) >= 2 and parts[1] == "value":
            del parts[1]
        stored = "config." + ".".join(parts)
    elif root == "summary_metrics":
        stored = "summary." + ".".join(parts)
    else:
        raise RunFilterError(path, f"unknown key {key!r}; {_KEY_HINT}")
    if len(stored) > MAX_KEY:
        raise RunFilterError(path, f"keys may have at most {MAX_KEY} characters")
    return ValueField(stored)


# --- the parsed filter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    """One operator applied to one field; `operand` already checked against the field's type."""

    field: Field
    op: str  # one of _OPERATORS but $options
    operand: Any
    path: str


@dataclass(frozen=True)
class Logic:
    """$and / $or / $nor of sub-filters."""

    op: str  # $and, $or or $nor
    items: tuple[Node, ...]


Node = Cond | Logic


@dataclass
class _Budget:
    nodes: int = 0

    def spend(self, path: str, count: int = 1) -> None:
        self.nodes += count
        if self.nodes > MAX_NODES:
            raise RunFilterError(path, f"a filter may hold at most {MAX_NODES} conditions and list items")


def parse_filters(text: str | None, path: str = "filters") -> Node | None:
    """Parse and check a filter document (W&B sends it as a JSON string).

    Args:
        text: The JSON text; None, "" or "null" mean no filter.
        path: The argument's name, the root of error paths.

    Returns:
        The parsed filter, or None when it selects every run.

    Raises:
        RunFilterError: invalid JSON, a wrong shape, an unknown key or operator, an operand of the wrong type,
            a regex outside the supported subset, or a document over the limits.
    """
    if text is None or text == "":
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise RunFilterError(path, f"a filter document may have at most {MAX_FILTER_CHARS} characters")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise RunFilterError(path, f"not valid JSON ({exc})") from None
    if doc is None:
        return None
    node = _parse_doc(doc, path, 0, _Budget())
    return None if isinstance(node, Logic) and node.op == "$and" and not node.items else node


def _parse_doc(doc: object, path: str, depth: int, budget: _Budget) -> Node:
    if depth > MAX_DEPTH:
        raise RunFilterError(path, f"filters may nest $and/$or/$nor at most {MAX_DEPTH} deep")
    if not isinstance(doc, dict):
        raise RunFilterError(path, f"expected a JSON object, got {_kind(doc)}")
    items: list[Node] = []
    for key, value in doc.items():
        sub = f"{path}.{key}"
        if key in ("$and", "$or", "$nor"):
            if not isinstance(value, list) or not value:
                raise RunFilterError(sub, f"{key} takes a non-empty list of filter objects")
            budget.spend(sub, len(value))
            parts = tuple(_parse_doc(item, f"{sub}[{i}]", depth + 1, budget) for i, item in enumerate(value))
            items.append(Logic(key, parts))
        elif key.startswith("$"):
            raise RunFilterError(sub, f"unknown operator {key!r} here; use $and, $or, $nor or a key")
        else:
            items.extend(_parse_field_value(parse_field(key, sub), value, sub, budget))
    return items[0] if len(items) == 1 else Logic("$and", tuple(items))


def _parse_field_value(field: Field, value: object, path: str, budget: _Budget) -> list[Cond]:
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.startswith("$") for k in value):
        options = value.get("$options")
        if options is not None and "$regex" not in value:
            raise RunFilterError(f"{path}.$options", "$options only goes with $regex")
        conds = []
        for op, operand in value.items():
            if op == "$options":
                continue
            sub = f"{path}.{op}"
            if op not in _OPERATORS:
                raise RunFilterError(sub, f"unknown operator {op!r}; use one of {', '.join(_OPERATORS[:-1])}")
            budget.spend(sub)
            if op == "$regex":
                operand = _regex_operand(operand, options, sub, f"{path}.$options")
            conds.append(Cond(field, op, _check_operand(field, op, operand, sub, budget), sub))
        return conds
    if isinstance(value, dict):
        if any(isinstance(k, str) and k.startswith("$") for k in value):
            raise RunFilterError(path, "an object cannot mix operators ($...) and keys")
        raise RunFilterError(path, "equality with an object is not supported; name nested keys with dots")
    budget.spend(path)
    return [Cond(field, "$eq", _check_operand(field, "$eq", value, path, budget), path)]


def _regex_operand(pattern: object, options: object, path: str, options_path: str) -> tuple[str, str]:
    if not isinstance(pattern, str):
        raise RunFilterError(path, f"$regex takes a string, got {_kind(pattern)}")
    if options is not None:
        if not isinstance(options, str) or options.strip("i"):
            raise RunFilterError(options_path, "only the option 'i' (case-insensitive) is supported")
        if options and not pattern.startswith("(?i)"):
            pattern = "(?i)" + pattern
    try:
        return runregex.translate(pattern)
    except runregex.RegexNotSupported as exc:
        raise RunFilterError(path, str(exc)) from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _check_operand(field: Field, op: str, operand: Any, path: str, budget: _Budget) -> Any:
    """The operand, checked for `op` on `field` (and parsed: times to datetimes)."""
    if op == "$regex":
        if isinstance(field, ColumnField) and field.kind == "time":
            raise RunFilterError(path, f"$regex does not apply to {field.name}")
        return operand
    if op == "$exists":
        if not isinstance(operand, bool):
            raise RunFilterError(path, f"$exists takes true or false, got {_kind(operand)}")
        return operand
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise RunFilterError(path, f"{op} takes a list, got {_kind(operand)}")
        budget.spend(path, len(operand))
        return tuple(_check_scalar(field, "$eq", item, f"{path}[{i}]") for i, item in enumerate(operand))
    return _check_scalar(field, op, operand, path)


def _check_scalar(field: Field, op: str, value: Any, path: str) -> Any:
    if not _is_scalar(value):
        raise RunFilterError(path, f"expected a string, number, boolean or null, got {_kind(value)}")
    if isinstance(field, ValueField):
        return value
    if isinstance(field, TagsField):
        if op not in ("$eq", "$ne"):
            raise RunFilterError(path, f"{op} does not apply to tags; use $eq, $ne, $in, $nin, $regex or $exists")
        if not isinstance(value, str):
            raise RunFilterError(path, f"tags are strings, got {_kind(value)}")
        return value
    if value is None:
        if op not in ("$eq", "$ne"):
            raise RunFilterError(path, f"{op} null is not supported on {field.name}")
        return None
    if not isinstance(value, str):
        raise RunFilterError(path, f"{field.name} takes a string, got {_kind(value)}")
    if field.kind == "time":
        return _parse_time(value, path)
    return value


def _parse_time(value: str, path: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise RunFilterError(
            path, f"expected an ISO 8601 date and time such as 2024-05-01T12:00:00Z, got {value!r}"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


# --- compiling to SQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    dialect: str


def compile_filter(node: Node | None, dialect: str) -> ColumnElement[bool]:
    """The WHERE clause over `runs` (correlated with `Run`) selecting what `node` selects.

    Args:
        node: A parsed filter (`parse_filters`), or None for every run.
        dialect: The database's dialect name ("sqlite" or "postgresql"), for `$regex`.

    Returns:
        A boolean SQL expression that is never NULL. Conditions on config, summary and tags are correlated EXISTS
    probes of run_values' primary key: the fast way to fill a page that stops after its first runs (`run_ids`
    is the fast way to count a whole selection).
    """
    return _compile(node, _Target(dialect))


def _compile(node: Node | None, to: _Target) -> ColumnElement[bool]:
    if node is None:
        return true()
    if isinstance(node, Logic):
        parts = [_compile(item, to) for item in node.items]
        if not parts:  # only {} nested in a list: every run
            return true()
        if node.op == "$and":
            return and_(*parts)
        either = or_(*parts)
        return either if node.op == "$or" else not_(either)
    field = node.field
    if isinstance(field, ValueField):
        return _value_cond(field.key, node.op, node.operand, to)
    if isinstance(field, TagsField):
        return _tags_cond(node.op, node.operand, to)
    return _column_cond(field, node.op, node.operand, to)


def _regexp(column: Any, translated: tuple[str, str], dialect: str) -> ColumnElement[bool]:
    re2_pattern, postgres_pattern = translated
    if dialect == "postgresql":
        matched: ColumnElement[bool] = column.op("~")(literal(postgres_pattern))
        return matched
    return func.wf_regexp(literal(re2_pattern), column) == 1


def _has_value(to: _Target, key: str, *conds: Any) -> ColumnElement[bool]:
    v = aliased(RunValue)
    return select(literal(1)).where(v.run_id == Run.id, v.key == key, *(c(v) for c in conds)).exists()


def _scalar_match(op: str, operand: Scalar) -> Any:
    """A condition on a run_values alias: the stored value `op` the non-null operand, with type bracketing."""
    if isinstance(operand, float) and math.isnan(operand):
        # NaN is only equal to itself and neither above nor below anything.
        return (lambda v: v.rank == RANK_NAN) if op in ("$eq", "$gte", "$lte") else None
    value: str | float
    if isinstance(operand, str):
        rank, column, value = RANK_STRING, "txt", operand[:MAX_TEXT]
    elif isinstance(operand, bool):
        rank, column, value = RANK_BOOL, "num", float(operand)
    else:
        assert operand is not None
        rank, column, value = RANK_NUMBER, "num", _as_float(operand)
    compare = _COMPARE[op]
    return lambda v: and_(v.rank == rank, compare(getattr(v, column), value))


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "$eq": operator.eq,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# A condition on one stored key, as (positive, tests): the runs having a row of the key passing `tests` (each a
# function of a run_values alias), or, when not positive, the runs having none. True/False: every run/none.
_Leaf = tuple[bool, list[Callable[[Any], Any]]] | bool


def _value_leaf(op: str, operand: Any, dialect: str) -> _Leaf:
    """A condition on a config/summary key (one row per run and key) as a leaf."""
    if op == "$exists":
        return bool(operand), []
    if op == "$regex":
        return True, [lambda v: v.rank == RANK_STRING, lambda v: _regexp(v.txt, operand, dialect)]
    if op in ("$ne", "$nin"):
        leaf = _value_leaf("$eq" if op == "$ne" else "$in", operand, dialect)
        return (not leaf[0], leaf[1]) if isinstance(leaf, tuple) else not leaf
    if op == "$in":
        matchers = [m for m in (_scalar_match("$eq", x) for x in operand if x is not None) if m is not None]
        if None in operand:  # null or missing, or one of the values: no non-null value outside them
            return False, [lambda v: v.rank != RANK_NULL, lambda v: not_(or_(false(), *(m(v) for m in matchers)))]
        return (True, [lambda v: or_(*(m(v) for m in matchers))]) if matchers else False
    if operand is None:
        # null or missing for $eq, $gte, $lte: no non-null value; $gt and $lt null match nothing.
        return (False, [lambda v: v.rank != RANK_NULL]) if op in ("$eq", "$gte", "$lte") else False
    matcher = _scalar_match(op, operand)
    return False if matcher is None else (True, [matcher])


def _tags_leaf(op: str, operand: Any, dialect: str) -> _Leaf:
    """A condition on the tags (a row per tag) as a leaf."""
    if op == "$exists":
        return bool(operand)
    if op == "$regex":
        return True, [lambda v: _regexp(v.txt, operand, dialect)]
    if op in ("$eq", "$ne"):
        return op == "$eq", [lambda v: v.txt == operand[:MAX_TEXT]]
    wanted = sorted({tag[:MAX_TEXT] for tag in operand})
    if not wanted:
        return op == "$nin"
    return op == "$in", [lambda v: v.txt.in_(wanted)]


def _leaf(node: Cond, dialect: str) -> tuple[str, _Leaf] | None:
    """The stored key and leaf of a condition on config, summary or tags; None for run columns."""
    if isinstance(node.field, ValueField):
        return node.field.key, _value_leaf(node.op, node.operand, dialect)
    if isinstance(node.field, TagsField):
        return TAGS_KEY, _tags_leaf(node.op, node.operand, dialect)
    return None


def _leaf_cond(key: str, leaf: _Leaf, to: _Target) -> ColumnElement[bool]:
    if isinstance(leaf, bool):
        return true() if leaf else false()
    positive, tests = leaf
    has = _has_value(to, key, *tests)
    return has if positive else not_(has)


def _value_cond(key: str, op: str, operand: Any, to: _Target) -> ColumnElement[bool]:
    return _leaf_cond(key, _value_leaf(op, operand, to.dialect), to)


def _tags_cond(op: str, operand: Any, to: _Target) -> ColumnElement[bool]:
    return _leaf_cond(TAGS_KEY, _tags_leaf(op, operand, to.dialect), to)


def _column(field: ColumnField) -> Any:
    if field.name == "username":
        return select(User.name).where(User.id == Run.user_id).scalar_subquery()
    return getattr(Run, field.name)


def _column_cond(field: ColumnField, op: str, operand: Any, to: _Target) -> ColumnElement[bool]:
    column = _column(field)
    present: ColumnElement[bool] = column.is_not(None)
    absent: ColumnElement[bool] = column.is_(None)
    if op == "$exists":
        return present if operand else absent
    if op == "$regex":
        return and_(present, _regexp(column, operand, to.dialect))
    if op == "$ne":
        return not_(_column_cond(field, "$eq", operand, to))
    if op == "$nin":
        return not_(_column_cond(field, "$in", operand, to))
    if op == "$in":
        values = [x for x in operand if x is not None]
        parts = [absent] if len(values) < len(operand) else []
        if values:
            parts.append(and_(present, column.in_(values)))
        return or_(false(), *parts)
    if operand is None:
        return absent  # only $eq takes null here
    return and_(present, _COMPARE[op](column, operand))


# --- orders ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """A parsed order: the field, the direction, and its canonical text (what cursors are bound to)."""

    field: ValueField | ColumnField
    descending: bool
    text: str


_ORDER_COLUMNS = {
    "created_at": "created_at",
    "createdAt": "created_at",
    "heartbeat_at": "heartbeat_at",
    "heartbeatAt": "heartbeat_at",
    "name": "name",
    "display_name": "display_name",
    "displayName": "display_name",
}
#: The order when none is given: newest first, as this server always answered (W&B's client sends +created_at).
DEFAULT_ORDER = "-created_at"


def parse_order(order: str | None) -> Order:
    """Parse an order: "+key" or "key" ascending, "-key" descending.

    Args:
        order: created_at, heartbeat_at, name, display_name (or their camelCase), config.<key>[.value] or
            summary_metrics.<key>, with an optional sign; None or "" for the default (newest first).

    Returns:
        The order.

    Raises:
        RunFilterError: any other key.
    """
    text = order or DEFAULT_ORDER
    descending = text.startswith("-")
    key = text[1:] if text[:1] in "+-" else text
    if key in _ORDER_COLUMNS:
        field: ValueField | ColumnField = _COLUMNS[_ORDER_COLUMNS[key]]
        canonical = _ORDER_COLUMNS[key]
    else:
        if not key.startswith(("config.", "summary_metrics.")):
            raise RunFilterError(
                "order",
                f"cannot order by {key!r}; use created_at, heartbeat_at, name, display_name, "
                "config.<key>.value or summary_metrics.<key>, after + or -",
            )
        parsed = parse_field(key, "order")
        assert isinstance(parsed, ValueField)
        field, canonical = parsed, parsed.key
    return Order(field, descending, ("-" if descending else "+") + canonical)


def _sort_columns(order: Order, v: Any) -> list[Any]:
    if isinstance(order.field, ValueField):
        return [v.rank, v.num, v.txt, v.run_id]
    column = getattr(Run, order.field.name)
    return [column] if order.field.name == "name" else [column, Run.id]


def requires_value(node: Node | None, field: Field) -> bool:
    """Whether every run `node` selects has a non-null value of `field` (then runs without one need no query)."""
    if node is None:
        return False
    if isinstance(node, Logic):
        return node.op == "$and" and any(requires_value(item, field) for item in node.items)
    if node.field != field:
        return False
    if node.op in ("$gt", "$gte", "$lt", "$lte", "$eq"):
        return node.operand is not None
    if node.op == "$in":
        return None not in node.operand
    if node.op == "$ne":
        return node.operand is None
    return node.op == "$regex"


# --- pages -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """A checked filter and order: what `runs_page` and `count_runs` take."""

    node: Node | None
    order: Order
    dialect: str

    @property
    def where(self) -> ColumnElement[bool]:
        """The filter as SQL, for pages (see `compile_filter`)."""
        return compile_filter(self.node, self.dialect)


def selection(filters: str | None, order: str | None, dialect: str) -> Selection:
    """Parse a filter document and an order for the database `dialect`.

    Raises:
        RunFilterError: either is invalid (the error names `filters...` or `order`).
    """
    return Selection(parse_filters(filters), parse_order(order), dialect)


def count_runs(session: Session, project_id: int, sel: Selection) -> int:
    """The number of runs of a project the selection's filter selects.

    Counted as set algebra over index ranges (`run_ids`), which both databases answer by reading each
    condition's range of the run_values index once, instead of probing every run of the project.

    Args:
        session: An open session.
        project_id: The project's row id.
        sel: The selection (its order does not matter).

    Returns:
        The count.
    """
    if sel.node is None:
        stmt = select(func.count()).select_from(Run).where(Run.project_id == project_id)
    else:
        stmt = select(func.count()).select_from(run_ids(sel.node, sel.dialect, project_id).subquery())
    return session.scalar(stmt) or 0


def run_ids(node: Node, dialect: str, project_id: int) -> Select[Any]:
    """The row ids of the project's runs `node` selects, once each, as INTERSECT/UNION/EXCEPT of index ranges.

    Args:
        node: A parsed filter.
        dialect: The database's dialect name.
        project_id: The project's row id.

    Returns:
        A one-column SELECT (`run_id`).
    """
    to = _Target(dialect)
    every = select(Run.id.label("run_id")).where(Run.project_id == project_id)
    none = every.where(false())

    def leaf_set(key: str, tests: list[Callable[[Any], Any]]) -> Select[Any]:
        v = aliased(RunValue)
        ids = select(v.run_id.label("run_id")).where(v.project_id == project_id, v.key == key, *(t(v) for t in tests))
        return ids.distinct() if key == TAGS_KEY else ids  # a run has several tags, other keys once

    def flat(ids: Any) -> Select[Any]:
        # SQLite takes no parenthesised compound SELECT inside another: nest it as a subquery.
        if isinstance(ids, Select):
            return ids
        sub = ids.subquery()
        return select(sub.c.run_id)

    def build(item: Node) -> Select[Any]:
        if isinstance(item, Cond):
            found = _leaf(item, dialect)
            if found is None:
                return every.where(_column_cond(item.field, item.op, item.operand, to))  # type: ignore[arg-type]
            key, leaf = found
            if isinstance(leaf, bool):
                return every if leaf else none
            positive, tests = leaf
            return leaf_set(key, tests) if positive else flat(except_(every, leaf_set(key, tests)))
        if item.op == "$and":
            keep: list[Select[Any]] = []
            drop: list[Select[Any]] = []
            for part in item.items:
                found = _leaf(part, dialect) if isinstance(part, Cond) else None
                if found is not None and isinstance(found[1], tuple) and not found[1][0]:
                    drop.append(leaf_set(found[0], found[1][1]))  # runs without such a value: subtract
                else:
                    keep.append(build(part))
            result = flat(intersect(*keep)) if len(keep) > 1 else keep[0] if keep else every
            return flat(except_(result, *drop)) if drop else result
        parts = [build(part) for part in item.items]
        either = flat(union(*parts)) if len(parts) > 1 else parts[0]
        return either if item.op == "$or" else flat(except_(every, either))

    return build(node)


def runs_page(
    session: Session, project_id: int, sel: Selection, after: list[Any] | None, limit: int
) -> list[tuple[Run, list[Any]]]:
    """Up to `limit` runs of the selection after the position `after`, each with its position.

    Runs without a value of the order's key (or with null) come first in ascending order and last in
    descending order, among themselves by row id; ties of equal values are broken by row id too, so a
    position is unique and paging never repeats or skips a run. Each phase is one indexed keyset query.

    Args:
        session: An open session.
        project_id: The project's row id.
        sel: The selection.
        after: The position of the previous page's last run (`decode_position`), or None.
        limit: At most this many.

    Returns:
        (run, position) pairs; a position is ["p" or "m", *sort values, row id], JSON-serialisable.
    """
    order = sel.order
    field = order.field
    nullable = isinstance(field, ValueField) or field.nullable
    phases = ["p"]
    if nullable and not requires_value(sel.node, field):
        phases = ["p", "m"] if order.descending else ["m", "p"]
    if after is not None:
        phases = phases[phases.index(after[0]) :]
    where = sel.where
    if sel.dialect == "postgresql":
        # Inside a function call PostgreSQL keeps the EXISTS tests as per-row subplans instead of pulling them up
        # into semi-joins: a page walks the order's index and stops early either way, but planning every join
        # order of a filter's conditions took several times longer than running the query. (The clause is never
        # NULL, so coalesce changes nothing else.)
        where = func.coalesce(where, false())
    found: list[tuple[Run, list[Any]]] = []
    for phase in phases:
        if len(found) >= limit:
            break
        resume = after if after is not None and after[0] == phase else None
        stmt = _phase_query(project_id, order, phase, resume, where).limit(limit - len(found))
        # The project (with its entity) and the user are the same for most runs of a page: loaded once through
        # the identity map instead of joined into the query (three fewer relations for the planner).
        stmt = stmt.options(lazyload(Run.project), lazyload(Run.user))
        for row in session.execute(stmt):
            run = row[0]
            found.append((run, [phase, *(_jsonable(x) for x in row[1:])]))
    return found


def _phase_query(
    project_id: int, order: Order, phase: str, resume: list[Any] | None, where: ColumnElement[bool]
) -> Select[Unpack[tuple[Any, ...]]]:
    stmt: Select[Unpack[tuple[Any, ...]]]
    field = order.field
    desc = order.descending
    if phase == "m":
        # Runs without a value: by row id.
        if isinstance(field, ValueField):
            k = aliased(RunValue)
            missing = ~select(literal(1)).where(k.run_id == Run.id, k.key == field.key, k.rank != RANK_NULL).exists()
        else:
            missing = getattr(Run, field.name).is_(None)
        stmt = select(Run, Run.id).where(Run.project_id == project_id, missing, where)
        keys: list[Any] = [Run.id]
    elif isinstance(field, ValueField):
        o = aliased(RunValue, name="ord")
        keys = _sort_columns(order, o)
        stmt = (
            select(Run, *keys)
            .join(o, o.run_id == Run.id)
            .where(o.project_id == project_id, o.key == field.key, o.rank != RANK_NULL, where)
        )
    else:
        column = getattr(Run, field.name)
        keys = _sort_columns(order, None)
        stmt = select(Run, *keys).where(Run.project_id == project_id, where)
        if field.nullable:
            stmt = stmt.where(column.is_not(None))
        if len(keys) == 1:
            stmt = stmt.add_columns(Run.id)
    if resume is not None:
        values = resume[1 : 1 + len(keys)]
        position: KeyedColumnElement[Any] | Any = tuple_(*keys) if len(keys) > 1 else keys[0]
        bound: Any = tuple_(*(literal(v) for v in values)) if len(keys) > 1 else values[0]
        stmt = stmt.where(position < bound if desc else position > bound)
    return stmt.order_by(*(k.desc() if desc else k.asc() for k in keys))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def position_text(order: Order, position: list[Any]) -> str:
    """A run's position under `order` as text for a cursor; the order's own text is inside, so a cursor made
    for one order is refused by another."""
    return json.dumps([order.text, *position], separators=(",", ":"))


def parse_position(order: Order, text: str) -> list[Any]:
    """The position inside `position_text(order, ...)`'s text.

    Raises:
        RunFilterError: not such a text, or one made for another order.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, list) or len(data) < 3 or not isinstance(data[0], str):
            raise ValueError
    except ValueError:
        raise RunFilterError("after", "not a cursor of this runs connection") from None
    if data[0] != order.text:
        raise RunFilterError("after", f"the cursor belongs to order {data[0]!r}, not {order.text!r}")
    position = data[1:]
    if not _position_ok(order, position):
        raise RunFilterError("after", "not a cursor of this runs connection")
    if isinstance(order.field, ColumnField) and order.field.kind == "time" and position[0] == "p":
        position[1] = datetime.fromisoformat(position[1])
    return position


def _position_ok(order: Order, position: list[Any]) -> bool:
    phase, *rest = position
    if not rest or type(rest[-1]) is not int:
        return False
    field = order.field
    if phase == "m":
        return len(rest) == 1 and (isinstance(field, ValueField) or field.nullable)
    if phase != "p":
        return False
    if isinstance(field, ValueField):
        rank, num, txt, _ = rest if len(rest) == 4 else (None, None, None, None)
        return (
            type(rank) is int and isinstance(num, (int, float)) and not isinstance(num, bool) and isinstance(txt, str)
        )
    if len(rest) != 2 or not isinstance(rest[0], str):
        return False
    if field.kind == "time":
        try:
            datetime.fromisoformat(rest[0])
        except ValueError:
            return False
    return True
