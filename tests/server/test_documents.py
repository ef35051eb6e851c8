"""The GraphQL document cache and the query depth limit."""

from __future__ import annotations

import pytest
from graphql import GraphQLError, specified_rules

from tests.support import RUN_FILES, Client
from wandb_files.server.graphql.documents import MAX_QUERY_DEPTH, DocumentCache, QueryDepthRule
from wandb_files.server.graphql.schema import build_schema

SCHEMA = build_schema()
RULES = (*specified_rules, QueryDepthRule)


def nested_query(depth: int) -> str:
    """A valid query `depth` fields deep: project { run { project { run { ... { id } } } } }."""
    fields = ['project(name: "p")']
    while len(fields) < depth - 1:
        fields.append('run(name: "r")' if fields[-1].startswith("project") else "project")
    return "query Deep { " + " { ".join(fields) + " { id" + " }" * len(fields) + " }"


def errors_of(query: str) -> list[GraphQLError]:
    cache = DocumentCache()
    return cache.validate(SCHEMA, cache.parse(None, {"query": query}), rules=RULES)


def test_depth_limit_counts_fields() -> None:
    assert errors_of("{ viewer { id } }") == []
    assert errors_of(nested_query(MAX_QUERY_DEPTH)) == []
    errors = errors_of(nested_query(MAX_QUERY_DEPTH + 1))
    assert len(errors) == 1
    assert f"nested {MAX_QUERY_DEPTH + 1} fields deep" in errors[0].message
    assert "'Deep'" in errors[0].message


def test_depth_limit_follows_fragments() -> None:
    # Each fragment adds two levels; the operation itself is shallow.
    fragments = "".join(
        f'fragment F{i} on Project {{ run(name: "r") {{ project {{ ...F{i + 1} }} }} }}\n' for i in range(8)
    )
    query = '{ project(name: "p") { ...F0 } }\n' + fragments + "fragment F8 on Project { id }"
    errors = errors_of(query)
    assert [e.message for e in errors] == ["the operation is nested 18 fields deep; the limit is 15"]


def test_depth_limit_survives_fragment_cycles_and_reuse() -> None:
    cyclic = '{ project(name: "p") { ...A } } fragment A on Project { run(name: "r") { project { ...A } } }'
    assert any("cycle" in e.message or "Cannot spread" in e.message for e in errors_of(cyclic))
    # A fragment spread many times over is measured once (no exponential blow-up).
    many = "".join(f"fragment G{i} on Project {{ ...G{i + 1} ...G{i + 1} id }}\n" for i in range(40))
    assert errors_of('{ project(name: "p") { ...G0 } }\n' + many + "fragment G40 on Project { id }") == []


def test_deep_query_is_rejected_over_http(admin: Client) -> None:
    response = admin.post(nested_query(MAX_QUERY_DEPTH + 5))
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "fields deep; the limit is 15" in error["message"]
    # W&B's own RunFiles document (with its fragment) is well within the limit.
    assert admin.post(RUN_FILES, {"entity": "admin", "project": "nope", "name": "nope"}).status_code == 200


def test_cache_parses_and_validates_each_text_once() -> None:
    cache = DocumentCache()
    data = {"query": "{ viewer { id } }"}
    document = cache.parse(None, data)
    assert cache.parse(None, dict(data)) is document
    assert (cache.hits, cache.misses) == (1, 1)
    errors = cache.validate(SCHEMA, document, rules=RULES)
    assert cache.validate(SCHEMA, document, rules=RULES) is errors
    bad = cache.parse(None, {"query": "{ viewer { nope } }"})
    first = cache.validate(SCHEMA, bad, rules=RULES)
    assert first and cache.validate(SCHEMA, bad, rules=RULES) is first


def test_cache_is_bounded_lru() -> None:
    cache = DocumentCache(max_entries=3)
    queries = [f"{{ viewer {{ id{' name' * i} }} }}" for i in range(5)]
    for q in queries[:3]:
        cache.parse(None, {"query": q})
    cache.parse(None, {"query": queries[0]})  # most recently used now
    for q in queries[3:]:
        cache.parse(None, {"query": q})
    assert len(cache) == 3
    hits = cache.hits
    cache.parse(None, {"query": queries[0]})
    assert cache.hits == hits + 1  # survived as recently used
    cache.parse(None, {"query": queries[1]})
    assert cache.hits == hits + 1  # evicted


def test_syntax_errors_are_raised_every_time_and_not_cached() -> None:
    cache = DocumentCache()
    for _ in range(2):
        with pytest.raises(GraphQLError, match="Syntax Error"):
            cache.parse(None, {"query": "{ viewer { id }"})
    assert len(cache) == 0


def test_documents_with_too_many_tokens_are_refused() -> None:
    huge = "{ viewer { " + "id " * 30_000 + "} }"
    with pytest.raises(GraphQLError, match="tokens"):
        DocumentCache().parse(None, {"query": huge})


def test_is_query_picks_the_named_operation() -> None:
    cache = DocumentCache()
    both = "query A { viewer { id } } mutation B { deleteFiles(input: {files: []}) { success } }"
    assert cache.is_query("{ viewer { id } }", None)
    assert cache.is_query("query Q { viewer { id } }", "")
    assert cache.is_query(both, "A")
    assert not cache.is_query(both, "B")
    assert not cache.is_query(both, None)  # two operations and none named: graphql-core refuses it
    assert not cache.is_query(both, "C")
    assert not cache.is_query("mutation { deleteFiles(input: {files: []}) { success } }", None)
    assert not cache.is_query("{ viewer {", None)
    assert not cache.is_query(None, None)
