"""Planned execution gives graphql-core's answers: the SDK's documents, hand-written ones, and generated ones.

Each document runs through the server's GraphQL path twice, with graphql-core's plain Executor and with
PlannedExecutor, over a database seeded with two users, runs with and without their optional fields, and
files with hostile names; `data` and `errors` must be identical (tests.support.executors.same_answer), and so
must the JSON bytes of the answer. The real wandb client's documents are compared in tests/compat.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import graphql
import hypothesis_graphql
import orjson
import pytest
from graphql import print_ast
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.executors import HOSTILE_NAMES, Seeded, same_answer, seeded_state
from wandb_files import documents
from wandb_files.server.graphql.planned import PLAN_COUNTS, PlannedExecutor, _Plan
from wandb_files.server.graphql.schema import SCHEMA_PATH


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    database_url = None
    if request.param == "postgresql":
        from tests.support.services import postgres_cluster

        database_url = postgres_cluster().create_database()
    state = seeded_state(tmp_path_factory.mktemp(f"planned-{request.param}") / "data", database_url)
    yield state
    state.state.engine.dispose()


def body(document: Any, variables: dict[str, Any] | None = None, operation: str | None = None) -> dict[str, Any]:
    text = document if isinstance(document, str) else print_ast(document.document)
    return {"query": text, "variables": variables, "operationName": operation}


def files_of(answer: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
    status, result = answer
    assert status == 200, result
    return [e["node"] for e in result["data"]["project"]["run"]["files"]["edges"]]


def check_json(answer: tuple[int, dict[str, Any]]) -> None:
    """orjson's bytes are Starlette's json.dumps bytes for this answer."""
    _, result = answer
    assert orjson.dumps(result) == json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()


class ProbeExecutor(PlannedExecutor):
    """PlannedExecutor that records the lists it planned (to show the planned path is the one compared)."""

    planned: ClassVar[list[str]] = []

    def _plan(self, object_type: Any, field_details_list: Any) -> _Plan | None:
        plan = super()._plan(object_type, field_details_list)
        if plan is not None:
            ProbeExecutor.planned.append(object_type.name)
        return plan


def test_the_listing_is_planned_and_answers_alike(seeded: Seeded) -> None:
    entity, project, run = seeded.runs[0]
    variables = {"entity": entity, "project": project, "name": run, "fileLimit": 1000}
    request = body(documents.RUN_FILES, variables)
    ProbeExecutor.planned.clear()
    status, _ = seeded.state.execute_graphql(seeded.admin_key, request, "http://x", executor_class=ProbeExecutor)
    assert status == 200
    assert sorted(ProbeExecutor.planned) == ["File", "FileEdge"]
    # The plan is kept for the next request of this document with these variables: no planning again.
    ProbeExecutor.planned.clear()
    seeded.state.execute_graphql(seeded.admin_key, request, "http://x", executor_class=ProbeExecutor)
    assert ProbeExecutor.planned == []
    answer = same_answer(seeded, request)
    check_json(answer)
    nodes = files_of(answer)
    assert [n["name"] for n in nodes] == sorted(HOSTILE_NAMES)
    assert nodes[0]["url"].startswith("http://127.0.0.1:9/files/admin/proj-0/run0/")
    assert any(n["sizeBytes"] > 2**31 for n in nodes)  # Int64 beyond GraphQL's Int


def test_a_list_completed_the_ordinary_way_is_counted_and_logged(
    seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    entity, project, run = seeded.runs[0]
    request = body(documents.RUN_FILES, {"entity": entity, "project": project, "name": run, "upload": True})
    before = PLAN_COUNTS.snapshot()
    with caplog.at_level(logging.DEBUG, logger="wandb_files.server.planned"):
        status, _ = seeded.state.execute_graphql(seeded.admin_key, request, "http://x")
    assert status == 200
    after = PLAN_COUNTS.snapshot()
    assert after.get("selection not plannable", 0) > before.get("selection not plannable", 0)
    assert any("completed the ordinary way" in r.getMessage() for r in caplog.records)


SDK_CASES: list[tuple[str, dict[str, Any]]] = [
    ("VIEWER", {}),
    ("SERVER_FEATURES", {}),
    ("RUN", {"entity": "admin", "project": "proj-0", "name": "run0"}),
    ("RUN", {"entity": "admin", "project": "proj-0", "name": "run1"}),
    ("RUN", {"entity": "admin", "project": "proj-0", "name": "missing"}),
    ("RUN", {"entity": "bob", "project": "proj-0", "name": "run0"}),  # another user's: not found
    ("RUNS", {"entity": "admin", "project": "proj-0"}),
    ("RUNS", {"entity": "admin", "project": "proj-1", "perPage": 2, "order": "+createdAt"}),
    ("RUNS", {"entity": "admin", "project": "proj-0", "filters": '{"state": "x"}'}),  # refused filter
    ("PROJECTS", {"entity": "admin"}),
    ("PROJECTS", {"entity": "admin", "perPage": 1}),
    ("PROJECTS", {"entity": "bob"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileLimit": 3}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileLimit": 0}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileLimit": 20_000}),  # too many
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileCursor": "bm90IGEgY3Vyc29y"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "upload": True}),  # not planned
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileNames": HOSTILE_NAMES[:4]}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileNames": ["nope"]}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "pattern": "media/%"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "pattern": "bad\\"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-1", "name": "run2", "fileLimit": 4}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "missing"}),
    ("RUN_FILES", {"entity": "bob", "project": "proj-0", "name": "run0"}),
    ("RUN_FILES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileLimit": "ten"}),  # bad variable
    ("RUN_FILE_STATES", {"entity": "admin", "project": "proj-0", "name": "run0", "fileLimit": 1000}),
    ("RUN_FILE_STATES", {"entity": "admin", "project": "proj-1", "name": "run2", "fileLimit": 4}),
    ("RUN_FILE_STATES", {"entity": "admin", "project": "proj-0", "name": "run0", "pattern": "media/%"}),
    ("RUN_FILE_STATES", {"entity": "admin", "project": "proj-0", "name": "missing"}),
]


@pytest.mark.parametrize(("name", "variables"), SDK_CASES)
def test_sdk_documents_answer_alike(seeded: Seeded, name: str, variables: dict[str, Any]) -> None:
    check_json(same_answer(seeded, body(getattr(documents, name), variables)))


def test_every_page_of_a_listing_answers_alike(seeded: Seeded) -> None:
    entity, project, run = seeded.runs[0]
    cursor, seen = None, []
    while True:
        variables = {"entity": entity, "project": project, "name": run, "fileLimit": 4, "fileCursor": cursor}
        _, result = same_answer(seeded, body(documents.RUN_FILES, variables))
        files = result["data"]["project"]["run"]["files"]
        seen += [e["node"]["name"] for e in files["edges"]]
        if not files["pageInfo"]["hasNextPage"]:
            break
        cursor = files["pageInfo"]["endCursor"]
    assert seen == sorted(HOSTILE_NAMES)


FRAGMENTS = """
query Files($e: String, $p: String!, $r: String!, $withUrl: Boolean!, $noMd5: Boolean!, $up: Boolean) {
  project(name: $p, entityName: $e) {
    run(name: $r) {
      f1: files(first: 6) { edges { ...Edge } }
      f2: files(first: 6, after: null) {
        edges {
          __typename
          node { __typename ... on File { size: sizeBytes, ...Names } ...Names url(upload: $up) @include(if: $withUrl) }
          c: cursor
          cursor
        }
        pageInfo { __typename hasNextPage endCursor startCursor hasPreviousPage }
        __typename
      }
      f3: files(first: 6) { edges { node { md5 @skip(if: $noMd5) md5 @skip(if: $noMd5) id @skip(if: true) } } }
      f4: files(first: 6) { edges { ... @include(if: $withUrl) { node { directUrl updatedAt } } } }
      f5: files(first: 6) { edges { node { name } } edges { node { mimetype name } cursor } }
    }
  }
}
fragment Edge on FileEdge { cursor node { id name url directUrl sizeBytes mimetype updatedAt md5 } }
fragment Names on File { name n2: name mimetype }
"""

HANDWRITTEN: list[tuple[str, dict[str, Any]]] = [
    (FRAGMENTS, {"p": "proj-0", "r": "run0", "withUrl": True, "noMd5": False}),
    (FRAGMENTS, {"p": "proj-0", "r": "run0", "withUrl": False, "noMd5": True, "up": False}),
    (FRAGMENTS, {"p": "proj-0", "r": "run0", "withUrl": True, "noMd5": False, "up": True}),
    (FRAGMENTS, {"e": "bob", "p": "proj-0", "r": "run0", "withUrl": True, "noMd5": False}),
    (FRAGMENTS, {"p": "proj-0", "r": "run0", "withUrl": "yes", "noMd5": False}),  # variable of the wrong type
    (FRAGMENTS, {"p": "proj-1", "r": "run1", "withUrl": True, "noMd5": False}),
    (
        """{ project(name: "proj-0") { runs { edges { node { name tags user { name } files(first: 3) {
              edges { node { name sizeBytes } } } } } } } }""",
        {},
    ),
    (
        """{ models { edges { node { name entityName createdAt isBenchmark user { username }
              runCount run(name: "run0") { fileCount displayName } } cursor } pageInfo { endCursor } } }""",
        {},
    ),
    ("""{ viewer { teams { edges { node { id name } cursor } } apiKeys { edges { node { id } } } } }""", {}),
    ("""{ project(name: "proj-0") { runs(order: "sideways") { edges { node { name } } } } }""", {}),
    ("""{ project(name: "proj-0") { run(name: "run0") { files(first: -1) { edges { cursor } } } } }""", {}),
    ("""{ project(name: "proj-0") { run(name: "run0") { files(names: [], first: 2) { edges { cursor } } } } }""", {}),
    ("""{ serverInfo { features { name isEnabled } } viewer { __typename id } __typename }""", {}),
    (graphql.get_introspection_query(descriptions=True), {}),  # lists of introspection objects
    ("""{ __type(name: "File") { name fields { name type { name kind ofType { name } } args { name } } } }""", {}),
]


@pytest.mark.parametrize(("document", "variables"), HANDWRITTEN)
def test_aliases_fragments_directives_and_errors_answer_alike(
    seeded: Seeded, document: str, variables: dict[str, Any]
) -> None:
    check_json(same_answer(seeded, body(document, variables)))


def test_another_users_view_answers_alike(seeded: Seeded) -> None:
    for entity, project, run in seeded.runs:
        variables = {"entity": entity, "project": project, "name": run}
        same_answer(seeded, body(documents.RUN_FILES, variables), api_key=seeded.bob_key)


def test_a_failing_resolver_gives_graphql_cores_errors(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver raising inside a planned list: the list is completed the ordinary way, errors and all."""
    from wandb_files.server.graphql.resolvers import files as file_resolvers

    real = file_resolvers.encode_node_id

    def failing(kind: str, pk: int) -> str:
        if pk % 2 == 0:
            raise ValueError("boom")
        return real(kind, pk)

    def failing_batch(kind: str, pks: list[int]) -> list[str]:
        return [failing(kind, pk) for pk in pks]

    monkeypatch.setattr(file_resolvers, "encode_node_id", failing)
    monkeypatch.setattr(file_resolvers, "node_ids_of", failing_batch)  # the planned lists' batch form
    _, result = same_answer(seeded, body(FRAGMENTS, {"p": "proj-0", "r": "run0", "withUrl": True, "noMd5": False}))
    assert result["errors"] and all(e["extensions"]["code"] == "INTERNAL" for e in result["errors"])


# --- generated queries ---------------------------------------------------------------------------------

_SCHEMA_TEXT = SCHEMA_PATH.read_text(encoding="utf-8")
_CUSTOM_SCALARS = {
    "JSONString": st.sampled_from(["{}", "", '{"a": 1}', "[1]", "not json"]).map(
        lambda text: graphql.StringValueNode(value=text)
    ),
    "JSON": st.just(graphql.NullValueNode()),
    "DateTime": st.just(graphql.StringValueNode(value="2026-11-23T08:05:41Z")),
    "Int64": st.integers(-5, 2**40).map(lambda n: graphql.IntValueNode(value=str(n))),
}
# Where an argument names something, mostly a name that exists (else nearly every query answers null early).
_NAMES = {
    ("project", "name"): ["proj-0", "proj-1", "missing"],
    ("run", "name"): ["run0", "run1", "run2", "missing"],
    ("project", "entityName"): ["admin", "admin", "bob", "nobody"],
    ("models", "entityName"): ["admin", "bob"],
    # None: no such argument (filters that each keep few files, so mostly left out).
    ("files", "names"): [None, None, None, *HOSTILE_NAMES[:5], "f001.txt", "f003.txt", "nope"],
    ("files", "pattern"): [None, None, None, None, "%", "media/%", "f00_.txt", "%.png", ""],
    ("files", "after"): [None, None, None, "ZmlsZTpm", "bm9wZQ=="],  # "file:f" and a cursor of nothing
    ("files", "first"): [None, "0", "1", "3", "50", "50", "20000"],
    ("runs", "first"): ["1", "2", "50"],
}


def _steer(document: graphql.DocumentNode, data: st.DataObject) -> graphql.DocumentNode:
    """The generated document with most naming arguments replaced by names of the seeded data."""

    class Steer(graphql.Visitor):
        def enter_argument(
            self, node: graphql.ArgumentNode, _key: Any, _parent: Any, _path: Any, ancestors: Any
        ) -> Any:
            field = next(a for a in reversed(ancestors) if isinstance(a, graphql.FieldNode))
            choices = _NAMES.get((field.name.value, node.name.value))
            if choices is None or data.draw(st.integers(0, 9)) == 0:
                return None
            picked = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3))
            if picked[0] is None:
                return graphql.REMOVE
            if node.name.value == "first":
                value: graphql.ValueNode = graphql.IntValueNode(value=picked[0])
            elif node.name.value == "names":
                value = graphql.ListValueNode(values=tuple(graphql.StringValueNode(value=v) for v in picked if v))
            else:
                value = graphql.StringValueNode(value=picked[0])
            return graphql.ArgumentNode(name=node.name, value=value)

    steered: graphql.DocumentNode = graphql.visit(document, Steer())
    return steered


# Starting at Query, few documents ever reach a run's files: these start at the files connection, then are put
# inside project { run { … } } (a schema whose Query is Run.files generates them).
_FILES_ONLY_SCHEMA = re.sub(
    r"type Query \{.*?\n\}",
    "type Query {\n  files(names: [String], after: String, first: Int, pattern: String): FileConnection!\n}",
    _SCHEMA_TEXT,
    count=1,
    flags=re.DOTALL,
)


def _in_a_run(document: graphql.DocumentNode, data: st.DataObject) -> graphql.DocumentNode:
    operation = document.definitions[0]
    assert isinstance(operation, graphql.OperationDefinitionNode)
    run = graphql.FieldNode(
        name=graphql.NameNode(value="run"),
        arguments=(
            graphql.ArgumentNode(
                name=graphql.NameNode(value="name"),
                value=graphql.StringValueNode(value=data.draw(st.sampled_from(["run0", "run1", "run2"]))),
            ),
        ),
        selection_set=operation.selection_set,
    )
    project = graphql.FieldNode(
        name=graphql.NameNode(value="project"),
        arguments=(
            graphql.ArgumentNode(
                name=graphql.NameNode(value="name"),
                value=graphql.StringValueNode(value=data.draw(st.sampled_from(["proj-0", "proj-1"]))),
            ),
        ),
        selection_set=graphql.SelectionSetNode(selections=(run,)),
    )
    return graphql.DocumentNode(
        definitions=(
            graphql.OperationDefinitionNode(
                operation=graphql.OperationType.QUERY, selection_set=graphql.SelectionSetNode(selections=(project,))
            ),
        )
    )


_QUERIES = st.one_of(
    hypothesis_graphql.queries(
        _SCHEMA_TEXT, fields=["project"], custom_scalars=_CUSTOM_SCALARS, print_ast=lambda node: node, allow_x00=False
    ),
    hypothesis_graphql.queries(
        _SCHEMA_TEXT, custom_scalars=_CUSTOM_SCALARS, print_ast=lambda node: node, allow_x00=False
    ),
)
_FILES_QUERIES = hypothesis_graphql.queries(
    _FILES_ONLY_SCHEMA, custom_scalars=_CUSTOM_SCALARS, print_ast=lambda node: node, allow_x00=False
)


_GENERATED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _planned_lists() -> int:
    return PLAN_COUNTS.snapshot().get("planned", 0)


def test_generated_queries_answer_alike(seeded: Seeded) -> None:

    @_GENERATED
    @given(document=_QUERIES, data=st.data())
    def example(document: graphql.DocumentNode, data: st.DataObject) -> None:
        text = print_ast(_steer(document, data))
        status, result = same_answer(seeded, {"query": text, "variables": None, "operationName": None})
        check_json((status, result))
        assert status in (200, 400), result

    example()
    # Which of these general queries plan a list depends on the hypothesis version's derandomized draws (none of
    # the 150 at the floor versions): that planning happens at all is asserted by the file listings below.


def test_generated_file_listings_answer_alike(seeded: Seeded) -> None:
    planned: list[int] = []

    @_GENERATED
    @given(document=_FILES_QUERIES, data=st.data())
    def example(document: graphql.DocumentNode, data: st.DataObject) -> None:
        text = print_ast(_steer(_in_a_run(document, data), data))
        before = _planned_lists()
        status, result = same_answer(seeded, {"query": text, "variables": None, "operationName": None})
        planned.append(_planned_lists() - before)
        check_json((status, result))
        assert status in (200, 400), result

    example()
    assert sum(map(bool, planned)) >= 3, planned  # derandomized: 9 of the 150 when written
