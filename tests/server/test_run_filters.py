"""Run selection: W&B filter documents and orders, answered by the database (SQLite and PostgreSQL) and
compared with a plain-Python reference evaluator of MongoDB's semantics; errors; keyset paging."""

from __future__ import annotations

import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Client

UPSERT_RUN = """
mutation Upsert($project: String, $name: String, $config: JSONString, $summary: JSONString, $state: String,
                $tags: [String!], $displayName: String, $group: String, $jobType: String) {
  upsertBucket(input: {modelName: $project, name: $name, config: $config, summaryMetrics: $summary, state: $state,
                       tags: $tags, displayName: $displayName, groupName: $group, jobType: $jobType}) {
    bucket { name }
  }
}
"""

RUNS = """
query Runs($project: String!, $cursor: String, $perPage: Int, $order: String, $filters: JSONString) {
  project(name: $project, entityName: "admin") {
    runCount(filters: $filters)
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges { node { name } cursor } pageInfo { endCursor hasNextPage } } } }
"""

MISSING: Any = object()
NAN = float("nan")


# --- the reference evaluator (MongoDB's semantics, in plain Python) ---------------------------------------------


@dataclass
class RefRun:
    """What a run holds, as the reference sees it; `order` is its creation order (the row id's order)."""

    order: int
    name: str
    state: str
    display_name: str | None
    group: str | None
    job_type: str | None
    tags: list[str]
    config: dict[str, Any] = field(default_factory=dict)  # plain values, not W&B's wire form
    summary: dict[str, Any] = field(default_factory=dict)


def _walk(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def lookup(run: RefRun, key: str) -> Any:
    columns = {
        "name": run.name,
        "state": run.state,
        "display_name": run.display_name,
        "displayName": run.display_name,
        "group": run.group,
        "jobType": run.job_type,
        "username": "admin",
    }
    if key in columns:
        value = columns[key]
        return MISSING if value is None else value
    root, _, rest = key.partition(".")
    parts = rest.split(".")
    if root == "config":
        if len(parts) > 1 and parts[1] == "value":
            del parts[1]
        return _walk(run.config, parts)
    assert root == "summary_metrics"
    return _walk(run.summary, parts)


def bracket(value: Any) -> int:
    if value is None or value is MISSING:
        return 0
    if isinstance(value, bool):
        return 6
    if isinstance(value, float) and math.isnan(value):
        return 1
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, str):
        return 3
    return 4 if isinstance(value, dict) else 5


def _eq(value: Any, operand: Any) -> bool:
    if operand is None:
        return value is None or value is MISSING
    if bracket(value) != bracket(operand):
        return False
    return bracket(value) == 1 or value == operand


def _compare(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return _eq(value, operand)
    if operand is None or bracket(operand) == 1:
        return op in ("$gte", "$lte") and _eq(value, operand)
    if bracket(value) != bracket(operand):
        return False
    return {"$gt": value > operand, "$gte": value >= operand, "$lt": value < operand, "$lte": value <= operand}[op]


def matches_cond(run: RefRun, key: str, op: str, operand: Any) -> bool:
    if key == "tags":
        if op == "$exists":
            return bool(operand)
        if op == "$regex":
            return any(re.search(operand, t, re.S) for t in run.tags)
        if op in ("$eq", "$ne"):
            return (operand in run.tags) == (op == "$eq")
        return any(t in operand for t in run.tags) == (op == "$in")
    value = lookup(run, key)
    if op == "$exists":
        return (value is not MISSING) == operand
    if op == "$regex":
        return isinstance(value, str) and re.search(operand, value, re.S) is not None
    if op == "$ne":
        return not _eq(value, operand)
    if op == "$in":
        return any(_eq(value, x) for x in operand)
    if op == "$nin":
        return not any(_eq(value, x) for x in operand)
    return _compare(value, op, operand)


def matches(run: RefRun, doc: dict[str, Any]) -> bool:
    for key, value in doc.items():
        if key == "$and":
            ok = all(matches(run, d) for d in value)
        elif key == "$or":
            ok = any(matches(run, d) for d in value)
        elif key == "$nor":
            ok = not any(matches(run, d) for d in value)
        elif isinstance(value, dict):
            ok = all(matches_cond(run, key, op, operand) for op, operand in value.items())
        else:
            ok = matches_cond(run, key, "$eq", value)
        if not ok:
            return False
    return True


def sort_runs(runs: list[RefRun], order: str | None) -> list[RefRun]:
    order = order or "-created_at"
    descending = order.startswith("-")
    key = order.lstrip("+-")
    if key in ("created_at", "createdAt", "heartbeat_at", "heartbeatAt"):
        ranked = sorted(runs, key=lambda r: r.order)
    elif key == "name":
        ranked = sorted(runs, key=lambda r: r.name)
    else:

        def sort_key(run: RefRun) -> tuple[Any, ...]:
            value = lookup(run, key)
            b = bracket(value)
            if b == 0:
                return (0, 0, "", run.order)
            if b in (2, 6):
                return (b, float(value), "", run.order)
            return (b, 0, value if b == 3 else "", run.order)

        ranked = sorted(runs, key=sort_key)
    return ranked[::-1] if descending else ranked


def select_runs(runs: list[RefRun], doc: dict[str, Any], order: str | None) -> list[str]:
    return [r.name for r in sort_runs([r for r in runs if matches(r, doc)], order)]


# --- the runs under test ------------------------------------------------------------------------------------------

LR = [0.1, 0.01, 0.001, 1, True, "0.01", None, MISSING, [1, 2], {"x": 1}]
MODEL = ["resnet", "vit", "Resnet", "res net", "resnet50", 3, MISSING]
OPT = [{"name": "adam", "beta": 0.9}, {"name": "sgd", "beta": 0.99}, {"name": "adam"}, "adam", MISSING]
ACC = [0.1, 0.5, 0.5, 0.7, 0.9, 1, "high", None, MISSING, NAN, True, False]
DISPLAY = [None, "alpha", "beta", "Alpha", "b", "alpha"]
TAGS = ["a", "b", "t", "T"]


def random_run(rng: random.Random, i: int) -> RefRun:
    config = {"lr": rng.choice(LR), "model": rng.choice(MODEL), "opt": rng.choice(OPT)}
    summary = {"acc": rng.choice(ACC), "eval": rng.choice([{"acc": rng.choice(ACC)}, MISSING, 0.3])}
    if rng.random() < 0.7:
        summary["loss"] = rng.choice([0.25, 1.5, -2, 0])
    return RefRun(
        order=i,
        name=f"r{i:03d}-{rng.choice('xyz')}",
        state=rng.choice(["running", "finished", "crashed"]),
        display_name=rng.choice(DISPLAY),
        group=rng.choice([None, "g1", "g2"]),
        job_type=rng.choice([None, "train", "eval"]),
        tags=rng.sample(TAGS, rng.randint(0, 3)),
        config={k: v for k, v in config.items() if v is not MISSING},
        summary={k: v for k, v in summary.items() if v is not MISSING},
    )


def create(admin: Client, project: str, run: RefRun) -> None:
    admin.gql(
        UPSERT_RUN,
        {
            "project": project,
            "name": run.name,
            # W&B's wire form: {"key": {"value": v}}.
            "config": json.dumps({k: {"value": v, "desc": None} for k, v in run.config.items()}),
            "summary": json.dumps(run.summary),
            "state": run.state,
            "tags": run.tags,
            "displayName": run.display_name,
            "group": run.group,
            "jobType": run.job_type,
        },
    )


@dataclass
class Pool:
    admin: Client
    project: str
    runs: list[RefRun]

    def page(self, doc: dict[str, Any] | None, order: str | None, per_page: int = 1000, cursor: str | None = None):  # type: ignore[no-untyped-def]
        variables = {"project": self.project, "filters": None if doc is None else json.dumps(doc)}
        variables |= {"order": order, "perPage": per_page, "cursor": cursor}
        return self.admin.gql(RUNS, variables)["project"]

    def error(
        self, doc: dict[str, Any] | str | None, order: str | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        filters = doc if isinstance(doc, str) or doc is None else json.dumps(doc)
        variables = {"project": self.project, "filters": filters, "order": order, "cursor": cursor}
        return self.admin.gql_error(RUNS, variables)

    def walk(self, doc: dict[str, Any] | None, order: str | None, per_page: int) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            data = self.page(doc, order, per_page, cursor)
            seen += [e["node"]["name"] for e in data["runs"]["edges"]]
            if not data["runs"]["pageInfo"]["hasNextPage"]:
                return seen
            cursor = data["runs"]["pageInfo"]["endCursor"]


@pytest.fixture(scope="module")
def pool(admin: Client) -> Pool:
    rng = random.Random(22)
    project = f"filters-{uuid.uuid4().hex[:8]}"
    runs = [random_run(rng, i) for i in range(48)]
    for run in runs:
        create(admin, project, run)
    return Pool(admin, project, runs)


@pytest.fixture(scope="module")
def admin(live_server) -> Client:  # type: ignore[no-untyped-def]
    return Client(live_server.base_url, live_server.api_key)


# --- generated filters ----------------------------------------------------------------------------------------

VALUE_KEYS = [
    "config.lr",
    "config.lr.value",
    "config.model",
    "config.opt.name",
    "config.opt.value.beta",
    "config.nothing",
    "summary_metrics.acc",
    "summary_metrics.eval.acc",
    "summary_metrics.eval",
    "summary_metrics.loss",
]
SCALARS = [None, 0, 0.01, 0.1, 0.5, 0.9, 1, -2, True, False, "resnet", "0.01", "adam", "high", "a", NAN]
PATTERNS = ["^res", "net$", "(?i)^RES", "s.n", "[ab]", "^\\d", "\\bnet", "res(net)?$", "e{2}", "^(adam|sgd)$"]
COLUMN_KEYS = {
    "state": ["running", "finished", "crashed", "done"],
    "display_name": ["alpha", "Alpha", "b", "beta", "zzz"],
    "displayName": ["alpha", "b"],
    "group": ["g1", "g2", "g3"],
    "jobType": ["train", "eval"],
    "name": ["r001-x", "r010-y", "r020", "r5"],
    "username": ["admin", "someone"],
}


def _cond(key: str) -> st.SearchStrategy[Any]:
    if key == "tags":
        tag = st.sampled_from(["a", "b", "t", "T", "zz"])
        return st.one_of(
            tag,
            st.builds(lambda op, x: {op: x}, st.sampled_from(["$eq", "$ne"]), tag),
            st.builds(lambda op, xs: {op: xs}, st.sampled_from(["$in", "$nin"]), st.lists(tag, max_size=3)),
            st.builds(lambda b: {"$exists": b}, st.booleans()),
            st.builds(lambda p: {"$regex": p}, st.sampled_from(["^t$", "(?i)^t", "[ab]"])),
        )
    if key in COLUMN_KEYS:
        scalar = st.sampled_from(COLUMN_KEYS[key])
        nullable = st.one_of(scalar, st.none())
        return st.one_of(
            nullable,
            st.builds(lambda op, x: {op: x}, st.sampled_from(["$eq", "$ne"]), nullable),
            st.builds(lambda op, x: {op: x}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), scalar),
            st.builds(lambda op, xs: {op: xs}, st.sampled_from(["$in", "$nin"]), st.lists(nullable, max_size=3)),
            st.builds(lambda b: {"$exists": b}, st.booleans()),
            st.builds(lambda p: {"$regex": p}, st.sampled_from(["^a", "(?i)^A", "a$", "^r0[01]", "n{2}"])),
        )
    scalar = st.sampled_from(SCALARS)
    one = st.builds(lambda op, x: {op: x}, st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), scalar)
    return st.one_of(
        scalar,
        one,
        st.builds(lambda a, b: a | b, one, one),  # two operators on one key: an implicit $and
        st.builds(lambda op, xs: {op: xs}, st.sampled_from(["$in", "$nin"]), st.lists(scalar, max_size=4)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
        st.builds(lambda p: {"$regex": p}, st.sampled_from(PATTERNS)),
    )


ALL_KEYS = [*VALUE_KEYS, *COLUMN_KEYS, "tags"]
_leaf = st.sampled_from(ALL_KEYS).flatmap(lambda k: _cond(k).map(lambda c: {k: c}))
_doc = st.recursive(
    st.lists(_leaf, min_size=1, max_size=3).map(lambda ds: {k: v for d in ds for k, v in d.items()}),
    lambda inner: st.builds(
        lambda op, ds: {op: ds}, st.sampled_from(["$and", "$or", "$nor"]), st.lists(inner, min_size=1, max_size=3)
    ),
    max_leaves=6,
)
ORDERS = [
    None,
    "+created_at",
    "-createdAt",
    "+heartbeat_at",
    "name",
    "-name",
    "+display_name",
    "-displayName",
    "+summary_metrics.acc",
    "-summary_metrics.acc",
    "config.lr.value",
    "-config.lr",
    "+config.model",
    "-summary_metrics.eval.acc",
    "+config.opt.beta",
]


def _answers_as_the_reference(pool: Pool, doc: dict[str, Any], order: str | None) -> None:
    expected = select_runs(pool.runs, doc, order)
    data = pool.page(doc, order)
    assert [e["node"]["name"] for e in data["runs"]["edges"]] == expected, json.dumps(doc)
    assert data["runCount"] == len(expected)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_doc, order=st.sampled_from(ORDERS))
def test_generated_filters_answer_as_the_reference(pool: Pool, doc: dict[str, Any], order: str | None) -> None:
    _answers_as_the_reference(pool, doc, order)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_doc, order=st.sampled_from(ORDERS))
def test_many_generated_filters_answer_as_the_reference(pool: Pool, doc: dict[str, Any], order: str | None) -> None:
    _answers_as_the_reference(pool, doc, order)


def test_the_benchmark_selection_and_documented_examples(pool: Pool) -> None:
    cases: list[dict[str, Any]] = [
        {"config.lr": 0.01, "summary_metrics.acc": {"$gt": 0.5}, "tags": {"$nin": ["t"]}},
        {"summary_metrics.acc": {"$gt": 0.5}},  # numbers only: not "high", not true
        {"summary_metrics.acc": {"$gte": False}},  # booleans only
        {"summary_metrics.acc": None},  # null or missing
        {"summary_metrics.acc": {"$exists": False}},  # missing only
        {"summary_metrics.acc": {"$ne": 0.5}},  # missing matches too
        {"summary_metrics.acc": {"$in": [None, 1]}},
        {"summary_metrics.acc": NAN},
        {"config.lr": 1},  # not true
        {"config.lr": "0.01"},  # not 0.01
        {"config.opt.name": "adam"},  # nested through the wire form's "value"
        {"config.opt": "adam"},  # a plain string value, not the nested objects
        {"tags": "t"},
        {"tags": {"$in": ["a", "b"]}},
        {"$or": [{"state": "crashed"}, {"group": None}]},
        {"$nor": [{"display_name": {"$exists": True}}]},
        {"username": "admin", "name": {"$regex": "^r00"}},
    ]
    for doc in cases:
        expected = select_runs(pool.runs, doc, "-summary_metrics.acc")
        data = pool.page(doc, "-summary_metrics.acc")
        assert [e["node"]["name"] for e in data["runs"]["edges"]] == expected, doc
        assert data["runCount"] == len(expected), doc
    # The examples exercise what they claim: each selects some runs and not all.
    assert 0 < len(select_runs(pool.runs, cases[1], None)) < len(pool.runs)
    assert 0 < len(select_runs(pool.runs, cases[3], None)) < len(pool.runs)


def test_time_filters(pool: Pool) -> None:
    everyone = {e["node"]["name"] for e in pool.page({}, None)["runs"]["edges"]}
    after_2000 = pool.page({"createdAt": {"$gt": "2000-01-01T00:00:00Z"}}, None)
    assert {e["node"]["name"] for e in after_2000["runs"]["edges"]} == everyone
    assert pool.page({"created_at": {"$lt": "2000-01-01T00:00:00"}}, None)["runCount"] == 0
    assert pool.page({"heartbeatAt": {"$exists": False}}, None)["runCount"] == 0


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("per_page", [1, 4])
def test_paging_never_repeats_or_skips(pool: Pool, order: str | None, per_page: int) -> None:
    doc = {"state": {"$ne": "crashed"}}
    expected = select_runs(pool.runs, doc, order)
    assert pool.walk(doc, order, per_page) == expected


def test_run_created_mid_walk_does_not_break_it(pool: Pool) -> None:
    order = "-summary_metrics.acc"
    expected = select_runs(pool.runs, {}, order)
    first = pool.page(None, order, per_page=5)
    seen = [e["node"]["name"] for e in first["runs"]["edges"]]
    cursor = first["runs"]["pageInfo"]["endCursor"]
    # Runs that sort before the cursor, inside and after the rest of the walk, and one without the order's key.
    extra = []
    for i, acc in enumerate([True, 0.6, -5.0, MISSING]):
        run = RefRun(1000 + i, f"mid-{i}-{uuid.uuid4().hex[:6]}", "running", None, None, None, [])
        if acc is not MISSING:
            run.summary["acc"] = acc
        create(pool.admin, pool.project, run)
        extra.append(run)
    try:
        while cursor is not None:
            data = pool.page(None, order, per_page=5, cursor=cursor)
            seen += [e["node"]["name"] for e in data["runs"]["edges"]]
            cursor = data["runs"]["pageInfo"]["endCursor"] if data["runs"]["pageInfo"]["hasNextPage"] else None
        assert len(seen) == len(set(seen))
        assert [n for n in seen if not n.startswith("mid-")] == expected
        # The new runs that sort after the first page's last run are seen, in order; the one before it is not.
        everything = select_runs(pool.runs + extra, {}, order)
        after_first_page = everything[everything.index(seen[4]) + 1 :]
        new = [n for n in seen if n.startswith("mid-")]
        assert new == [n for n in after_first_page if n.startswith("mid-")]
        assert new == [extra[1].name, extra[2].name, extra[3].name]
    finally:
        pool.runs.extend(extra)  # later tests of the module see them as they are


def test_a_pattern_that_backtracks_exponentially_is_answered_at_once(pool: Pool) -> None:
    """`^(a+)+$` against 32 a's and a "!": a backtracking engine (Python's `re`, which SQLite used) tries every
    split of the a's, minutes while holding the GIL; RE2 and PostgreSQL's engine answer in linear time."""
    run = RefRun(2000, f"redos-{uuid.uuid4().hex[:6]}", "finished", "a" * 32 + "!", None, None, [])
    create(pool.admin, pool.project, run)
    pool.runs.append(run)
    started = time.perf_counter()
    assert pool.page({"display_name": {"$regex": "^(a+)+$"}}, None)["runCount"] == 0
    assert pool.page({"display_name": {"$regex": "^(a+)+!$"}}, None)["runCount"] == 1
    assert time.perf_counter() - started < 5.0


# --- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "path", "words"),
    [
        ("{not json", "filters", "not valid JSON"),
        ("[1, 2]", "filters", "expected a JSON object"),
        ({"state": {"$like": "x"}}, "filters.state.$like", "unknown operator"),
        ({"$and": {"state": "x"}}, "filters.$and", "non-empty list"),
        ({"$or": []}, "filters.$or", "non-empty list"),
        ({"$and": [{"state": "x"}, {"config.lr": {"$gt": [1]}}]}, "filters.$and[1].config.lr.$gt", "got a list"),
        ({"$not": {"state": "x"}}, "filters.$not", "unknown operator"),
        ({"colour": "red"}, "filters.colour", "unknown key"),
        ({"config": 1}, "filters.config", "needs a key after"),
        ({"config..lr": 1}, "filters.config..lr", "empty parts"),
        ({"config.lr": {"$exists": 1}}, "filters.config.lr.$exists", "true or false"),
        ({"config.lr": {"$in": 0.1}}, "filters.config.lr.$in", "takes a list"),
        ({"config.lr": {"$in": [0.1, {"a": 1}]}}, "filters.config.lr.$in[1]", "got an object"),
        ({"config.opt": {"name": "adam"}}, "filters.config.opt", "equality with an object"),
        ({"config.lr": {"$gt": 1, "x": 2}}, "filters.config.lr", "cannot mix"),
        ({"state": 3}, "filters.state", "takes a string"),
        ({"state": {"$gt": None}}, "filters.state.$gt", "null is not supported"),
        ({"tags": {"$gt": "a"}}, "filters.tags.$gt", "does not apply to tags"),
        ({"tags": 1}, "filters.tags", "tags are strings"),
        ({"createdAt": {"$gt": "yesterday"}}, "filters.createdAt.$gt", "ISO 8601"),
        ({"createdAt": {"$regex": "^2"}}, "filters.createdAt.$regex", "does not apply"),
        ({"name": {"$regex": "(a)\\1"}}, "filters.name.$regex", "backreferences"),
        ({"name": {"$regex": "a(?=b)"}}, "filters.name.$regex", "lookahead"),
        ({"name": {"$regex": "(?<!a)b"}}, "filters.name.$regex", "lookbehind"),
        ({"name": {"$regex": "(a"}}, "filters.name.$regex", "unbalanced"),
        ({"name": {"$regex": "a{2"}}, "filters.name.$regex", "literal '{'"),
        ({"name": {"$regex": "[[:alpha:]]"}}, "filters.name.$regex", "POSIX classes"),
        ({"name": {"$regex": "a*+"}}, "filters.name.$regex", "possessive"),
        ({"name": {"$regex": "x{1000}"}}, "filters.name.$regex", "repetition bounds"),
        ({"name": {"$regex": "[b-a]"}}, "filters.name.$regex", "invalid regular expression"),
        ({"name": {"$regex": 5}}, "filters.name.$regex", "takes a string"),
        ({"name": {"$regex": "a", "$options": "m"}}, "filters.name.$options", "only the option 'i'"),
        ({"name": {"$options": "i"}}, "filters.name.$options", "only goes with $regex"),
        ({"config." + "k" * 300: 1}, "filters.config.kkk", "at most 256 characters"),
    ],
)
def test_bad_filters_are_bad_user_input_naming_the_path(pool: Pool, filters: Any, path: str, words: str) -> None:
    error = pool.error(filters)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert path in error["message"] and words in error["message"], error["message"]
    # runCount alone refuses it too (the wandb client asks both in one query).
    count_only = (
        "query($project: String!, $filters: JSONString) { project(name: $project) { runCount(filters: $filters) } }"
    )
    text = filters if isinstance(filters, str) else json.dumps(filters)
    error = pool.admin.gql_error(count_only, {"project": pool.project, "filters": text})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and path in error["message"]


def test_filter_limits_are_said(pool: Pool) -> None:
    deep: dict[str, Any] = {"state": "x"}
    for _ in range(20):
        deep = {"$and": [deep]}
    assert "at most 16 deep" in pool.error(deep)["message"]
    many = {"$or": [{"state": f"s{i}"} for i in range(1200)]}
    assert "at most 1000 conditions" in pool.error(many)["message"]
    assert "at most 65536 characters" in pool.error({"name": {"$in": ["x" * 70_000]}})["message"]


def test_bad_orders_and_cursors(pool: Pool) -> None:
    error = pool.error(None, order="-colour")
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "cannot order by 'colour'" in error["message"]
    cursor = pool.page(None, "-summary_metrics.acc", per_page=2)["runs"]["pageInfo"]["endCursor"]
    error = pool.error(None, order="+summary_metrics.acc", cursor=cursor)
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "belongs to order '-summary.acc'" in error["message"]
    # The same order spelled another way takes the cursor.
    assert pool.page(None, "-summary_metrics.acc", per_page=2, cursor=cursor)["runs"]["edges"]
    for bad in ("garbage", "cnVuczpbXQ==", "cnVuczpbIi1zdW1tYXJ5LmFjYyIsInAiLDEsMl0="):
        error = pool.error(None, order="-summary_metrics.acc", cursor=bad)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", bad


def test_empty_and_null_filters_select_everything(pool: Pool) -> None:
    for doc in ("{}", "null", "", None, '{"$and": [{}]}'):
        data = pool.admin.gql(RUNS, {"project": pool.project, "filters": doc, "perPage": 1000})["project"]
        assert data["runCount"] == len(pool.runs) == len(data["runs"]["edges"])
