"""`wandb_files.query.Filter`: neptune-query's run filter, compiled to W&B's filter document and evaluated by the
server; `fetch_series` / `fetch_runs_table` with ``runs=Filter`` and config/summary columns."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wandb_files
import wandb_files.query as wq
from tests.support import UPSERT, Client, LiveServer
from wandb_files.errors import BadRequestError
from wandb_files.query import Filter

# --- compiling: a table of cases (no server) ----------------------------------------------------------------

EQ_RESNET = {"config.model": {"$eq": "resnet"}}
ACC_OVER = {"summary_metrics.acc": {"$gt": 0.5}}


@pytest.mark.parametrize(
    ("built", "document"),
    [
        (Filter.eq("config/model", "resnet"), EQ_RESNET),
        (Filter.ne("config/lr", 0.01), {"config.lr": {"$ne": 0.01}}),
        (Filter.gt("summary/acc", 0.5), ACC_OVER),
        (Filter.ge("summary/acc", 1), {"summary_metrics.acc": {"$gte": 1}}),
        (Filter.lt("config/optimizer.lr", 0.1), {"config.optimizer.lr": {"$lt": 0.1}}),
        (Filter.le("summary/val/acc", 0.9), {"summary_metrics.val/acc": {"$lte": 0.9}}),  # W&B's key `val/acc`
        (Filter.eq("config/flag", True), {"config.flag": {"$eq": True}}),
        (Filter.eq("sys/name", "nice"), {"display_name": {"$eq": "nice"}}),
        (Filter.eq("sys/id", "r1"), {"name": {"$eq": "r1"}}),
        (Filter.eq("sys/custom_run_id", "r1"), {"name": {"$eq": "r1"}}),
        (Filter.ne("sys/state", "crashed"), {"state": {"$ne": "crashed"}}),
        (Filter.eq("sys/group", "g"), {"group": {"$eq": "g"}}),
        (Filter.eq("sys/job_type", "train"), {"jobType": {"$eq": "train"}}),
        (Filter.eq("sys/owner", "admin"), {"username": {"$eq": "admin"}}),
        (
            Filter.gt("sys/creation_time", datetime(2026, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))),
            {"createdAt": {"$gt": "2026-05-01T12:00:00.000000Z"}},
        ),
        (Filter.lt("sys/ping_time", datetime(2026, 5, 1)), {"heartbeatAt": {"$lt": "2026-05-01T00:00:00.000000Z"}}),
        (Filter.ge("sys/creation_time", "2026-05-01T12:00:00Z"), {"createdAt": {"$gte": "2026-05-01T12:00:00Z"}}),
        (Filter.exists("config/lr"), {"config.lr": {"$exists": True}}),
        (Filter.matches("sys/name", "^res"), {"display_name": {"$regex": "^res"}}),
        (
            Filter.matches("config/model", r"^res | vit & !tiny"),
            {
                "$or": [
                    {"config.model": {"$regex": "^res"}},
                    {"$and": [{"config.model": {"$regex": "vit"}}, {"$nor": [{"config.model": {"$regex": "tiny"}}]}]},
                ]
            },
        ),
        (Filter.name("^vit"), {"display_name": {"$regex": "^vit"}}),
        (Filter.name(["a", "b"]), {"display_name": {"$in": ["a", "b"]}}),
        (Filter.contains_all("sys/tags", "t"), {"tags": "t"}),
        (Filter.contains_all("sys/tags", ["t", "u"]), {"$and": [{"tags": "t"}, {"tags": "u"}]}),
        (Filter.contains_none("sys/tags", ["t", "u"]), {"tags": {"$nin": ["t", "u"]}}),
        (Filter.contains_all("config/model", "a.b(c)"), {"config.model": {"$regex": r"a\.b\(c\)"}}),
        (
            Filter.contains_none("sys/name", ["x", "y"]),
            {"$nor": [{"display_name": {"$regex": "x"}}, {"display_name": {"$regex": "y"}}]},
        ),
        (Filter.eq("config/model", "resnet") & Filter.gt("summary/acc", 0.5), {"$and": [EQ_RESNET, ACC_OVER]}),
        (Filter.eq("config/model", "resnet") | Filter.gt("summary/acc", 0.5), {"$or": [EQ_RESNET, ACC_OVER]}),
        (~Filter.eq("config/model", "resnet"), {"$nor": [EQ_RESNET]}),
        (~~Filter.eq("config/model", "resnet"), EQ_RESNET),
        (~Filter.contains_none("sys/name", "x"), {"display_name": {"$regex": "x"}}),
        # One $and (or $or) of three, not nested ones: flatter documents stay under the server's depth limit.
        (
            Filter.eq("config/model", "resnet") & Filter.gt("summary/acc", 0.5) & Filter.exists("config/lr"),
            {"$and": [EQ_RESNET, ACC_OVER, {"config.lr": {"$exists": True}}]},
        ),
        (
            (Filter.eq("config/model", "resnet") | Filter.gt("summary/acc", 0.5)) & ~Filter.exists("config/lr"),
            {"$and": [{"$or": [EQ_RESNET, ACC_OVER]}, {"$nor": [{"config.lr": {"$exists": True}}]}]},
        ),
        (Filter({"config.lr": 0.01}) & Filter.gt("summary/acc", 0.5), {"$and": [{"config.lr": 0.01}, ACC_OVER]}),
    ],
)
def test_filters_compile_to_wandb_documents(built: Filter, document: dict[str, Any]) -> None:
    assert built.to_wandb() == document
    assert built == Filter(document) and repr(built).startswith("Filter({")


def test_a_compiled_document_is_a_copy() -> None:
    built = Filter.eq("config/model", "resnet") & Filter.gt("summary/acc", 0.5)
    built.to_wandb()["$and"].clear()
    assert len(built.to_wandb()["$and"]) == 2


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Filter.eq("lr", 0.1), ValueError, "attribute 'lr' has no W&B equivalent.*config/<key>"),
        (lambda: Filter.gt("metrics/acc", 0.1), ValueError, "'metrics/acc'"),
        (lambda: Filter.exists("config/"), ValueError, "'config/'"),
        (lambda: Filter.exists("sys/whatever"), ValueError, "'sys/whatever'"),
        (lambda: Filter.eq(3, 1), TypeError, "attribute is a name"),
        (lambda: Filter.eq("sys/tags", "t"), ValueError, "sys/tags is a set of tags.*contains_all"),
        (lambda: Filter.gt("sys/tags", "t"), ValueError, "sys/tags"),
        (lambda: Filter.eq("sys/state", 3), TypeError, "sys/state holds text"),
        (lambda: Filter.gt("sys/creation_time", 5), TypeError, "sys/creation_time takes a datetime"),
        (lambda: Filter.eq("config/x", None), TypeError, "number, string, bool or datetime"),
        (lambda: Filter.eq("config/x", [1]), TypeError, "number, string, bool or datetime"),
        (lambda: Filter.gt("summary/acc", math.nan), ValueError, "not a JSON number"),
        (lambda: Filter.matches("config/model", "(unclosed"), ValueError, "is not a regular expression"),
        (lambda: Filter.matches("config/model", 5), TypeError, "pattern must be a string"),
        (lambda: Filter.matches("sys/creation_time", "^2026"), ValueError, "is a time"),
        (lambda: Filter.contains_all("sys/tags", []), ValueError, "empty"),
        (lambda: Filter.contains_none("sys/tags", [1]), TypeError, "list of strings"),
        (lambda: Filter.name(5), TypeError, "Filter.name"),
        (lambda: Filter.eq("config/x", 1) & {"config.y": 1}, TypeError, "&"),
        (lambda: Filter({"config.lr": {"$gtt": 1}}), ValueError, r'filters\["config.lr"\]\["\$gtt"\]'),
    ],
)
def test_bad_filters_are_clear_errors_when_built(build: Callable[[], object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build()


# --- evaluated by the server, against a reference evaluator of the Filter in Python ------------------------

#: run id -> (display name, config, summary, tags, state, group); oldest first.
RUNS: dict[str, tuple[str | None, dict[str, Any], dict[str, Any], list[str], str, str | None]] = {
    "r0": ("res-a", {"model": "resnet", "lr": 0.01}, {"acc": 0.7}, ["t", "gpu"], "finished", "g1"),
    "r1": ("res-b", {"model": "resnet", "lr": 0.1}, {"acc": 0.9}, [], "finished", None),
    "r2": (
        "vit-tiny",
        {"model": "vit", "lr": 0.01, "optimizer": {"name": "adam", "lr": 0.001}},
        {"acc": 0.95, "val/acc": 0.9},
        ["t"],
        "finished",
        "g2",
    ),
    "r3": (None, {"model": "resnet", "lr": 0.01}, {"acc": 0.8}, [], "crashed", None),
    "r4": ("vit-b", {"model": "vit.b", "lr": "high"}, {}, ["gpu"], "running", "g1"),
    "r5": ("plain", {}, {"acc": 0.5}, [], "running", None),
}
MEDIA = {"media/images/predictions_1_a1a1a1.png": b"p1", "media/images/predictions_2_a2a2a2.png": b"p2"}
PLAIN = {"sample.csv": b"a,b\n"}


@pytest.fixture(scope="module")
def chosen(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, wandb_files.Api]:
    """A project whose runs have config, summary, tags, states, groups and display names, and a few files."""
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    raw = Client(live_server.base_url, live_server.api_key)  # the SDK has no state setter: W&B's runs set it
    source = tmp_path_factory.mktemp("chosen")
    for name, data in {**MEDIA, **PLAIN}.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    for run_id, (display, config, summary, tags, state, group) in RUNS.items():
        run = api.create_run(
            run_id=run_id,
            project="chosen",
            display_name=display,
            config=config,
            summary=summary,
            tags=tags,
            group=group,
        )
        raw.gql(UPSERT, {"project": "chosen", "name": run_id, "state": state})
        run.upload_files(sorted(p for p in source.rglob("*") if p.is_file()), root=source, progress=False)
    return "admin/chosen", api


_MISSING = object()


def _value(run_id: str, attribute: str) -> Any:
    """What the run holds under `attribute`, or _MISSING."""
    display, config, summary, tags, state, group = RUNS[run_id]
    system = {"sys/id": run_id, "sys/name": display, "sys/state": state, "sys/group": group, "sys/tags": tags}
    if attribute in system:
        found = system[attribute]
        return _MISSING if found is None else found
    values: Any = config if attribute.startswith("config/") else summary
    key = attribute.split("/", 1)[1]
    if key in values:
        return values[key]
    for part in key.split("."):  # the keys used here hold no literal dots
        if not isinstance(values, dict) or part not in values:
            return _MISSING
        values = values[part]
    return values


def _bracket(value: Any) -> str:
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _compares(op: str, attribute: str, operand: Any) -> Callable[[str], bool]:
    """MongoDB's comparison: present, of the operand's type, and in that relation; `ne` is not `eq`."""
    if op == "ne":
        equal = _compares("eq", attribute, operand)
        return lambda run_id: not equal(run_id)

    def holds(run_id: str) -> bool:
        value = _value(run_id, attribute)
        return value is not _MISSING and _bracket(value) == _bracket(operand) and _COMPARE[op](value, operand)

    return holds


def _texts_of(run_id: str, attribute: str) -> list[str]:
    """The strings a regular expression or a substring is tried on: a text value, or each tag."""
    value = _value(run_id, attribute)
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, str) else []


def _found(pattern: str, attribute: str) -> Callable[[str], bool]:
    return lambda run_id: any(re.search(pattern, text) for text in _texts_of(run_id, attribute))


def _matches(attribute: str, pattern: str) -> Callable[[str], bool]:
    """neptune's extended regex: alternatives of conjunctions, `!` negating a term."""
    alternatives = [
        [(term.startswith("!"), _found(term.lstrip("!").strip(), attribute)) for term in part.split(" & ")]
        for part in pattern.split(" | ")
    ]
    return lambda run_id: any(all(found(run_id) != negated for negated, found in terms) for terms in alternatives)


def _contains(attribute: str, values: list[str], every: bool) -> Callable[[str], bool]:
    def holds(run_id: str) -> bool:
        texts = _texts_of(run_id, attribute)
        tags = attribute == "sys/tags"
        hits = [(v in texts) if tags else any(v in t for t in texts) for v in values]
        return all(hits) if every else not any(hits)

    return holds


VALUES: dict[str, list[Any]] = {
    "config/lr": [0.01, 0.05, 0.1, "high"],
    "config/model": ["resnet", "vit", "vit.b", "a"],
    "config/optimizer.lr": [0.001, 0.01],
    "summary/acc": [0.5, 0.7, 0.8, 0.9, 0.95],
    "summary/val/acc": [0.9],
    "sys/name": ["res-a", "vit-b", "plain", "z"],
    "sys/state": ["finished", "crashed", "running"],
    "sys/group": ["g1", "g2"],
    "sys/id": ["r0", "r3", "r5"],
}
PATTERNS = ["^res", "vit", "b$", r"^res | ^vit & !tiny", "!res", r"\.", "^(g|t)"]
TEXT_ATTRIBUTES = ["config/model", "sys/name", "sys/group", "sys/tags"]
Pair = tuple[Filter, Callable[[str], bool]]


@st.composite
def _comparison(draw: st.DrawFn) -> Pair:
    attribute = draw(st.sampled_from(sorted(VALUES)))
    op = draw(st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]))
    operand = draw(st.sampled_from(VALUES[attribute]))
    return getattr(Filter, op)(attribute, operand), _compares(op, attribute, operand)


@st.composite
def _text_test(draw: st.DrawFn) -> Pair:
    attribute = draw(st.sampled_from(TEXT_ATTRIBUTES))
    kind = draw(st.sampled_from(["matches", "contains_all", "contains_none"]))
    if kind == "matches":
        pattern = draw(st.sampled_from(PATTERNS))
        return Filter.matches(attribute, pattern), _matches(attribute, pattern)
    pool = ["t", "gpu", "x"] if attribute == "sys/tags" else [".", "es", "vit", "g", "-"]
    values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    built = (
        Filter.contains_all(attribute, values) if kind == "contains_all" else Filter.contains_none(attribute, values)
    )
    return built, _contains(attribute, values, every=kind == "contains_all")


@st.composite
def _exists(draw: st.DrawFn) -> Pair:
    attribute = draw(st.sampled_from([*sorted(VALUES), "sys/tags", "config/optimizer.name"]))
    return Filter.exists(attribute), lambda run_id: _value(run_id, attribute) is not _MISSING


def _combined(children: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    def both(op: str, left: Pair, right: Pair) -> Pair:
        if op == "and":
            return left[0] & right[0], lambda r: left[1](r) and right[1](r)
        return left[0] | right[0], lambda r: left[1](r) or right[1](r)

    def negated(inner: Pair) -> Pair:
        return ~inner[0], lambda r: not inner[1](r)

    return st.one_of(st.builds(both, st.sampled_from(["and", "or"]), children, children), st.builds(negated, children))


_pairs = st.recursive(st.one_of(_comparison(), _text_test(), _exists()), _combined, max_leaves=6)


def _selects_what_python_does(chosen: tuple[str, wandb_files.Api], pair: Pair) -> None:
    path, api = chosen
    built, holds = pair
    expected = [run_id for run_id in RUNS if holds(run_id)]
    selected = api.runs(path, filters=built.to_wandb(), order="+name")
    assert [run.id for run in selected] == expected, built
    assert len(selected) == len(expected), built


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=_pairs)
def test_a_filter_selects_on_the_server_what_it_means_in_python(
    chosen: tuple[str, wandb_files.Api], pair: Pair
) -> None:
    _selects_what_python_does(chosen, pair)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=_pairs)
def test_many_filters_select_on_the_server_what_they_mean_in_python(
    chosen: tuple[str, wandb_files.Api], pair: Pair
) -> None:
    _selects_what_python_does(chosen, pair)


def _every_leaf() -> list[tuple[str, Pair]]:
    leaves: list[tuple[str, Pair]] = []
    for attribute, values in VALUES.items():
        for op in ("eq", "ne", "gt", "ge", "lt", "le"):
            leaves += [
                (f"{op} {attribute} {v!r}", (getattr(Filter, op)(attribute, v), _compares(op, attribute, v)))
                for v in values
            ]
    for attribute in TEXT_ATTRIBUTES:
        leaves += [
            (f"matches {attribute} {p!r}", (Filter.matches(attribute, p), _matches(attribute, p))) for p in PATTERNS
        ]
        pool = [["t"], ["gpu"], ["t", "gpu"], ["x"]] if attribute == "sys/tags" else [["."], ["es"], ["vit", "-"]]
        for values in pool:
            leaves.append(
                (
                    f"contains_all {attribute} {values}",
                    (Filter.contains_all(attribute, values), _contains(attribute, values, every=True)),
                )
            )
            leaves.append(
                (
                    f"contains_none {attribute} {values}",
                    (Filter.contains_none(attribute, values), _contains(attribute, values, every=False)),
                )
            )
    for attribute in [*VALUES, "sys/tags", "config/optimizer.name"]:
        leaves.append(
            (f"exists {attribute}", (Filter.exists(attribute), lambda r, a=attribute: _value(r, a) is not _MISSING))
        )
    return leaves


def test_every_kind_of_condition_selects_on_the_server_what_it_means_in_python(
    chosen: tuple[str, wandb_files.Api],
) -> None:
    """Each method on each attribute and value of the pools, alone: the generated trees above combine them."""
    path, api = chosen
    wrong = []
    for label, (built, holds) in _every_leaf():
        expected = [run_id for run_id in RUNS if holds(run_id)]
        got = [run.id for run in api.runs(path, filters=built.to_wandb(), order="+name", per_page=50)]
        if got != expected:
            wrong.append(f"{label}: server {got}, Python {expected}")
    assert not wrong, "\n".join(wrong)


def test_the_reference_cases_select_some_runs_and_not_all(chosen: tuple[str, wandb_files.Api]) -> None:
    """Hand-picked cases, each checked against what it plainly means (and so checking the reference)."""
    path, api = chosen
    cases = {
        Filter.eq("config/model", "resnet") & Filter.eq("sys/state", "finished"): ["r0", "r1"],
        Filter.gt("config/lr", 0.05): ["r1"],  # not "high": a number compares with numbers only
        Filter.ne("config/lr", 0.01): ["r1", "r4", "r5"],  # r5 has no lr, and matches
        Filter.contains_all("sys/tags", ["t", "gpu"]): ["r0"],
        Filter.contains_none("sys/tags", "t"): ["r1", "r3", "r4", "r5"],
        Filter.matches("sys/name", r"^res | ^vit & !tiny"): ["r0", "r1", "r4"],
        Filter.contains_all("config/model", "."): ["r4"],  # a literal dot, not any character
        ~Filter.exists("sys/name"): ["r3"],
        Filter.eq("config/optimizer.name", "adam") | Filter.ge("summary/val/acc", 0.9): ["r2"],
        Filter.name(["plain", "vit-b"]): ["r4", "r5"],
    }
    for built, expected in cases.items():
        assert [run.id for run in api.runs(path, filters=built.to_wandb(), order="+name")] == expected, built


# --- fetch_series / fetch_runs_table with runs=Filter ------------------------------------------------------


def test_fetch_series_takes_a_filter(chosen: tuple[str, wandb_files.Api], tmp_path: Path) -> None:
    path, api = chosen
    resnet_finished = Filter.eq("config/model", "resnet") & Filter.eq("sys/state", "finished")
    files = wq.fetch_series(path, runs=resnet_finished, attributes=r"^predictions$", step_range=(2, None), api=api)
    assert list(files.index) == [("r0", 2.0), ("r1", 2.0)]  # oldest first
    paths = wq.download_files(files=files, destination=tmp_path / "out")
    assert Path(paths.loc[("r1", 2.0), "predictions"]).read_bytes() == b"p2"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r0", "r1"]
    nothing = wq.fetch_series(path, runs=Filter.gt("summary/acc", 2.0), api=api)
    assert nothing.empty


def test_fetch_runs_table_takes_a_filter_and_gives_metadata_columns(
    chosen: tuple[str, wandb_files.Api], tmp_path: Path
) -> None:
    path, api = chosen
    table = wq.fetch_runs_table(
        path,
        runs=Filter.gt("summary/acc", 0.75),
        attributes=["config/lr", "summary/acc", "config/optimizer.name", "sys/tags", "sys/name", "sample.csv"],
        api=api,
    )
    assert list(table.index) == ["r1", "r2", "r3"]
    # Listed attributes come in the list's order (those some run has); found by a regex, in name order.
    assert list(table.columns) == [
        "config/lr",
        "summary/acc",
        "config/optimizer.name",
        "sys/tags",
        "sys/name",
        "sample.csv",
    ]
    assert table["summary/acc"].tolist() == [0.9, 0.95, 0.8] and table["summary/acc"].dtype == float
    assert table["config/lr"].tolist() == [0.1, 0.01, 0.01]
    assert table.loc["r2", "config/optimizer.name"] == "adam" and pd.isna(table.loc["r1", "config/optimizer.name"])
    assert table.loc["r2", "sys/tags"] == ["t"] and table.loc["r1", "sys/tags"] == []
    assert table.loc["r2", "sys/name"] == "vit-tiny"
    assert isinstance(table.loc["r3", "sample.csv"], wandb_files.File)
    # download_files reads the file columns and leaves the metadata columns alone.
    paths = wq.download_files(files=table, destination=tmp_path)
    assert list(paths.columns) == ["sample.csv"] and len(paths) == 3
    assert Path(paths.loc[("r2", math.nan), "sample.csv"]).read_bytes() == b"a,b\n"
    with pytest.raises(TypeError, match="File objects"):  # a table without files is still a mistake
        wq.download_files(files=table[["config/lr", "sys/name"]], destination=tmp_path)

    by_regex = wq.fetch_runs_table(
        path, runs=["r2", "r5"], attributes=r"^summary/ | ^sys/(state|creation_time)$", api=api
    )
    assert list(by_regex.columns) == ["summary/acc", "summary/val/acc", "sys/creation_time", "sys/state"]
    assert by_regex.loc["r5", "sys/state"] == "running" and pd.isna(by_regex.loc["r5", "summary/val/acc"])
    created = by_regex.loc["r2", "sys/creation_time"]
    assert isinstance(created, pd.Timestamp) and created.tzinfo is not None
    assert abs(created - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(hours=1)
    files_only = wq.fetch_runs_table(path, runs=["r0"], api=api)
    assert list(files_only.columns) == ["sample.csv"]  # None: the files, as before


def test_time_filters_and_refused_filters(chosen: tuple[str, wandb_files.Api]) -> None:
    path, api = chosen
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert len(wq.fetch_runs_table(path, runs=Filter.gt("sys/creation_time", long_ago), api=api)) == len(RUNS)
    assert len(wq.fetch_runs_table(path, runs=Filter.lt("sys/creation_time", long_ago), api=api)) == 0
    lookahead = Filter.matches("sys/name", "^res(?=-)")  # Python's re takes it; the server's subset does not
    with pytest.raises(BadRequestError, match="regex"):
        wq.fetch_runs_table(path, runs=lookahead, api=api)
    with pytest.raises(ValueError, match="'sys/nope'"):
        wq.fetch_runs_table(path, attributes=["sys/nope"], api=api)


def test_a_file_named_as_a_metadata_attribute_is_refused_by_a_regex(
    live_server: LiveServer, tmp_path: Path, unique: str
) -> None:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = api.create_run(run_id="r", project=f"p{unique}", config={"lr": 0.1})
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "lr").write_bytes(b"file")
    run.upload_files([tmp_path / "config" / "lr"], root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="file named 'config/lr'"):
        wq.fetch_runs_table(f"p{unique}", attributes=r"^config/", api=api)
    named = wq.fetch_runs_table(f"p{unique}", attributes=["config/lr"], api=api)
    assert named.loc["r", "config/lr"] == 0.1  # a listed config/ name is the config value
