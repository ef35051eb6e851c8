"""Planned execution of lists: graphql-core's executor, with lists of objects completed column by column.

graphql-core completes a list of objects item by item and field by field: for every field of every item it
builds a resolve info and a path, calls the resolver, and completes the value through several layers. For a
page of 1,000 files of ten fields each that is most of a listing's time. `PlannedExecutor` is graphql-core's
own `Executor` with one change: when it completes a list of objects, it first makes a plan of the list's
selection (from graphql-core's own field collection, so @skip/@include, fragments, aliases and merging are
exactly graphql-core's), and when every field of the plan is a leaf or an object of such fields, resolved by
the default resolver or by a resolver declared `plannable`, it resolves each field once for all items (a
column) and zips the columns into the result dicts.

Anything a plan does not cover is executed exactly as before: a list whose selection holds a field of
another kind (a list, an abstract type, a resolver not declared plannable, arguments that do not coerce),
and any list where resolving or completing a value fails or gives null for a non-null field. A failure drops
the whole list's planned result and runs graphql-core's completion of that list instead, so errors, paths
and null propagation are graphql-core's own. Plannable resolvers therefore must be pure (no writes: they may
run twice) and may use only `info.context` (they are given the list field's info).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, TypeAlias, TypeVar, overload

from graphql import (
    Executor,
    FieldNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    Undefined,
    VariableNode,
    Visitor,
    default_field_resolver,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
    visit,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.values import get_argument_values

__all__ = ["PlannedExecutor", "plannable"]

Resolver = Callable[..., Any]
# A batch resolver: (sources, info, **args) -> one value per source.
BatchResolver = Callable[..., list[Any]]
# Whether a plannable resolver may be planned with these (coerced) arguments.
ArgsCheck = Callable[[dict[str, Any]], bool]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_Info: TypeAlias = "GraphQLResolveInfo[Any]"
_F = TypeVar("_F", bound=Resolver)


@dataclass(frozen=True)
class _Plannable:
    when: ArgsCheck | None
    batch: BatchResolver | None


_PLANNABLE: dict[Resolver, _Plannable] = {}


@overload
def plannable(resolver: _F) -> _F: ...


@overload
def plannable(*, when: ArgsCheck | None = None, batch: BatchResolver | None = None) -> Callable[[_F], _F]: ...


def plannable(
    resolver: Resolver | None = None, *, when: ArgsCheck | None = None, batch: BatchResolver | None = None
) -> Any:
    """Declare a field resolver safe to run column-wise in a planned list (a decorator, with or without options).

    The resolver must be pure (no writes, no state: a failing list is resolved again) and use only
    `info.context` of its info (it gets the list field's info).

    Args:
        resolver: The resolver (when used as ``@plannable``).
        when: Given the field's coerced arguments, whether this call is plannable (e.g. not when it writes).
        batch: ``batch(sources, info, **args)`` giving the values of all sources at once, in order.

    Returns:
        The resolver itself (or a decorator returning it).
    """

    def register(fn: _F) -> _F:
        _PLANNABLE[fn] = _Plannable(when, batch)
        return fn

    return register(resolver) if resolver is not None else register


class _Fallback(Exception):
    """A planned list cannot give graphql-core's answer; complete it the ordinary way."""


logger = logging.getLogger("wandb_files.server.planned")


class PlanCounts:
    """How lists of objects were completed in this process: by a plan, or the ordinary way and why (a test
    reads these to tell that planning still happens; the log says the same at debug level)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, outcome: str) -> None:
        """Count one list completed with `outcome` ("planned", or the reason it was not)."""
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + 1

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by outcome."""
        with self._lock:
            return dict(self._counts)


#: The counts of every PlannedExecutor of this process.
PLAN_COUNTS = PlanCounts()


def _fell_back(object_type: GraphQLObjectType, why: str) -> None:
    PLAN_COUNTS.add(why)
    logger.debug("a list of %s completed the ordinary way: %s", object_type.name, why)


# A column: (sources, info) -> the completed value of one field for every source.
_Column = Callable[[Sequence[Any], _Info], list[Any]]


def _is_missing(value: Any) -> bool:
    return value is None or value is Undefined


@dataclass(frozen=True)
class _Plan:
    """The fields of an object type's selection, as response keys and columns."""

    keys: tuple[str, ...]
    columns: tuple[_Column, ...]
    rows: Callable[[list[list[Any]]], list[dict[str, Any]]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _rows_builder(len(self.keys))(*self.keys))

    def project(self, sources: Sequence[Any], info: _Info) -> list[dict[str, Any]]:
        if not self.columns:
            return [{} for _ in sources]
        return self.rows([column(sources, info) for column in self.columns])


@functools.lru_cache(maxsize=64)
def _rows_builder(width: int) -> Callable[..., Callable[[list[list[Any]]], list[dict[str, Any]]]]:
    """A maker of `rows(columns)`: the dicts {key_i: columns[i][j]} for each j, for `width` keys.

    Made from source text, as graphql-jit compiles a query: a dict display builds a row faster than
    dict(zip(keys, values)). The text holds only numbered names; the keys (the document's response keys) are
    the maker's arguments, never part of the source.
    """
    keys = ", ".join(f"k{i}" for i in range(width))
    values = ", ".join(f"v{i}" for i in range(width))
    pairs = ", ".join(f"k{i}: v{i}" for i in range(width))
    source = (
        f"def make({keys}):\n"
        f"    def rows(columns):\n"
        # zip without strict: every column has one value a source, and strict=True costs as much as the rest.
        f"        return [{{{pairs}}} for {values}, in zip(*columns)]\n"
        f"    return rows\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<planned rows of {width}>", "exec"), namespace)
    maker: Callable[..., Callable[[list[list[Any]]], list[dict[str, Any]]]] = namespace["make"]
    return maker


def _default_column(name: str) -> Callable[[Sequence[Any], _Info], list[Any]]:
    def fetch(sources: Sequence[Any], info: _Info) -> list[Any]:
        if set(map(type, sources)) == {dict}:
            values = list(map(dict.get, sources, repeat(name)))
        else:
            values = [s.get(name) if isinstance(s, Mapping) else getattr(s, name, None) for s in sources]
        if any(map(callable, values)):
            raise _Fallback  # the default resolver would call it
        return values

    return fetch


def _resolver_column(
    resolve: Resolver, batch: BatchResolver | None, args: dict[str, Any]
) -> Callable[[Sequence[Any], _Info], list[Any]]:
    if batch is not None:

        def fetch_batch(sources: Sequence[Any], info: _Info) -> list[Any]:
            return batch(sources, info, **args)

        return fetch_batch
    if args:

        def fetch_with_args(sources: Sequence[Any], info: _Info) -> list[Any]:
            return [resolve(s, info, **args) for s in sources]

        return fetch_with_args

    def fetch(sources: Sequence[Any], info: _Info) -> list[Any]:
        return list(map(resolve, sources, repeat(info)))

    return fetch


def _leaf_completer(leaf_type: GraphQLLeafType, nullable: bool) -> Callable[[list[Any]], list[Any]]:
    """Complete resolved values of a leaf type as graphql-core's complete_value does (fast for plain values)."""
    complete_leaf = Executor.complete_leaf_value
    plain: Any = None  # the Python type whose values are their own output
    if leaf_type is GraphQLString or leaf_type is GraphQLID:
        plain = str  # coerce_output_value of a str is the str itself
    elif leaf_type is GraphQLBoolean:
        plain = bool
    elif leaf_type is GraphQLInt:
        plain = int

    def complete_one(value: Any) -> Any:
        if _is_missing(value):
            if not nullable:
                raise _Fallback
            return None
        if isinstance(value, Exception):
            raise _Fallback
        if plain is not None and type(value) is plain and (plain is not int or _INT_MIN <= value <= _INT_MAX):
            return value
        return complete_leaf(leaf_type, value)

    if plain is str or plain is bool:

        def complete_plain(values: list[Any]) -> list[Any]:
            if set(map(type, values)) <= {plain}:
                return values
            return [complete_one(v) for v in values]

        return complete_plain

    coerce = leaf_type.coerce_output_value
    none_or_undefined = {type(None), type(Undefined)}

    def complete(values: list[Any]) -> list[Any]:
        kinds = set(map(type, values))
        if plain is None and not kinds & none_or_undefined and not any(issubclass(k, Exception) for k in kinds):
            # complete_leaf_value is coerce_output_value, refusing a null result
            completed = list(map(coerce, values))
            if not set(map(type, completed)) & none_or_undefined:
                return completed
        return [complete_one(v) for v in values]

    return complete


class PlannedExecutor(Executor[Any]):
    """graphql-core's Executor, completing lists of objects with a plan where one covers their selection."""

    # Shorter lists are completed the ordinary way: planning would cost more than it saves.
    min_planned_items = 2

    def complete_list_value(
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: list[FieldDetails],
        info: _Info,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's complete_list_value, planned for lists of objects (see the module's docstring)."""
        if type(result) is list and len(result) >= self.min_planned_items:
            item_type = return_type.of_type
            item_nullable = not is_non_null_type(item_type)
            object_type = get_nullable_type(item_type)
            if is_object_type(object_type) and not any(
                d.name.value == "stream" for fd in field_details_list for d in fd.node.directives or ()
            ):
                plan = self._shared_plan(object_type, field_details_list)
                if plan is None:
                    _fell_back(object_type, "selection not plannable")
                else:
                    try:
                        completed = _project_objects(plan, result, item_nullable, info)
                    except _Fallback:
                        _fell_back(object_type, "a value the plan cannot complete")
                    except Exception:  # noqa: BLE001 - graphql-core's own completion reports it, with its path
                        _fell_back(object_type, "an error, reported by the ordinary completion")
                    else:
                        PLAN_COUNTS.add("planned")
                        return completed
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)

    def _shared_plan(self, object_type: GraphQLObjectType, field_details_list: list[FieldDetails]) -> _Plan | None:
        """`_plan`, remembered across requests for the same document nodes and the variables they use."""
        key = self._plan_key(object_type, field_details_list)
        if key is None:
            return self._plan(object_type, field_details_list)
        with _SHARED_LOCK:
            entry = _SHARED_PLANS.get(key)
            if entry is not None:
                _SHARED_PLANS.move_to_end(key)
                return entry[1]
        plan = self._plan(object_type, field_details_list)
        with _SHARED_LOCK:
            # The nodes are kept with the plan, so that their ids in the key stay theirs while it is cached.
            _SHARED_PLANS[key] = (tuple(fd.node for fd in field_details_list), plan)
            while len(_SHARED_PLANS) > SHARED_PLANS:
                _SHARED_PLANS.popitem(last=False)
        return plan

    def _plan_key(self, object_type: GraphQLObjectType, field_details_list: list[FieldDetails]) -> Any:
        """What a plan depends on: the schema and resolvers, the field nodes (of a cached document) and the
        values of the variables used under them; None when it cannot be told (then nothing is shared)."""
        if any(fd.fragment_variable_values is not None or fd.defer_usage is not None for fd in field_details_list):
            return None
        nodes = tuple(fd.node for fd in field_details_list)
        names = _variables_under(nodes, self.fragments)
        coerced = self.variable_values.coerced
        key = (
            self.schema,
            object_type,
            tuple(map(id, nodes)),
            self.field_resolver,
            self.middleware_manager is None,
            tuple((name, coerced.get(name, Undefined)) for name in names),
        )
        try:
            hash(key)
        except TypeError:  # a list or input object variable
            return None
        return key

    def _plan(self, object_type: GraphQLObjectType, field_details_list: list[FieldDetails]) -> _Plan | None:
        """The plan of `object_type`'s selection in these fields, or None where it is not plannable."""
        cache: dict[tuple[GraphQLObjectType, int], tuple[list[FieldDetails], _Plan | None]]
        cache = self.__dict__.setdefault("_planned", {})
        key = (object_type, id(field_details_list))
        cached = cache.get(key)
        if cached is not None:
            return cached[1]
        try:
            plan: _Plan | None = self._make_plan(object_type, field_details_list)
        except _Fallback:
            plan = None
        except Exception:  # noqa: BLE001 - e.g. arguments that do not coerce: graphql-core reports them
            plan = None
        cache[key] = (field_details_list, plan)  # the list is kept alive so that its id stays unique
        return plan

    def _make_plan(self, object_type: GraphQLObjectType, field_details_list: list[FieldDetails]) -> _Plan:
        if object_type.is_type_of is not None or self.middleware_manager is not None:
            raise _Fallback
        grouped, defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            raise _Fallback
        keys: list[str] = []
        columns: list[_Column] = []
        for response_key, details in grouped.items():
            first = details[0]
            node = first.node
            name = node.name.value
            if any(fd.defer_usage is not None for fd in details):
                raise _Fallback
            if name == "__typename":
                keys.append(response_key)
                columns.append(_constant_column(object_type.name))
                continue
            field_def = self.schema.get_field(object_type, name)
            if field_def is None:
                continue  # graphql-core leaves the key out (validation has refused such documents anyway)
            args = (
                get_argument_values(
                    field_def, node, self.variable_values, first.fragment_variable_values, self.hide_suggestions
                )
                if field_def.args or node.arguments
                else {}
            )
            if field_def.resolve is None and self.field_resolver is default_field_resolver:
                if args:
                    raise _Fallback  # a callable attribute would be given them
                fetch = _default_column(name)
            else:
                resolve = field_def.resolve or self.field_resolver
                declared = _PLANNABLE.get(resolve)
                if declared is None or (declared.when is not None and not declared.when(args)):
                    raise _Fallback
                fetch = _resolver_column(resolve, declared.batch, args)
            nullable = not is_non_null_type(field_def.type)
            field_type = get_nullable_type(field_def.type)
            if is_leaf_type(field_type):
                columns.append(_leaf_column(fetch, _leaf_completer(field_type, nullable)))
            elif is_object_type(field_type):
                sub_plan = self._plan(field_type, details)
                if sub_plan is None:
                    raise _Fallback
                columns.append(_object_column(fetch, sub_plan, nullable))
            else:
                raise _Fallback  # lists and abstract types: the ordinary way
            keys.append(response_key)
        return _Plan(tuple(keys), tuple(columns))


# Plans shared across requests (see PlannedExecutor._shared_plan), least recently used first.
SHARED_PLANS = 256
_SHARED_PLANS: OrderedDict[Any, tuple[tuple[FieldNode, ...], _Plan | None]] = OrderedDict()
_SHARED_LOCK = threading.Lock()
# The variables used under field nodes (following fragment spreads), by the nodes' ids.
_VARIABLES: dict[tuple[int, ...], tuple[tuple[FieldNode, ...], tuple[str, ...]]] = {}


def _variables_under(nodes: tuple[FieldNode, ...], fragments: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the variables the selections under `nodes` use, in arguments and directives, sorted."""
    key = tuple(map(id, nodes))
    with _SHARED_LOCK:
        known = _VARIABLES.get(key)
    if known is not None and all(a is b for a, b in zip(known[0], nodes, strict=True)):
        return known[1]
    names: set[str] = set()
    seen: set[str] = set()

    class Collect(Visitor):
        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            names.add(node.name.value)

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
            name = node.name.value
            if name not in seen and name in fragments:
                seen.add(name)
                visit(fragments[name].definition, self)

    for node in nodes:
        visit(node, Collect())
    found = tuple(sorted(names))
    with _SHARED_LOCK:
        if len(_VARIABLES) >= 4 * SHARED_PLANS:
            _VARIABLES.clear()
        _VARIABLES[key] = (nodes, found)
    return found


def _constant_column(value: str) -> _Column:
    def column(sources: Sequence[Any], info: _Info) -> list[Any]:
        return [value] * len(sources)

    return column


def _leaf_column(fetch: _Column, complete: Callable[[list[Any]], list[Any]]) -> _Column:
    def column(sources: Sequence[Any], info: _Info) -> list[Any]:
        return complete(fetch(sources, info))

    return column


def _object_column(fetch: _Column, plan: _Plan, nullable: bool) -> _Column:
    def column(sources: Sequence[Any], info: _Info) -> list[Any]:
        return _project_objects(plan, fetch(sources, info), nullable, info)

    return column


def _project_objects(plan: _Plan, values: list[Any], nullable: bool, info: _Info) -> list[Any]:
    """Project objects through `plan`; None stays None where the type is nullable."""
    kinds = set(map(type, values))
    if any(issubclass(kind, Exception) for kind in kinds):
        raise _Fallback
    if type(None) in kinds or type(Undefined) in kinds:
        if not nullable:
            raise _Fallback
        present = [v for v in values if not _is_missing(v)]
        projected = iter(plan.project(present, info))
        return [None if _is_missing(v) else next(projected) for v in values]
    return plan.project(values, info)
