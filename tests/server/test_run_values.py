"""The run_values rows behind run filters: the migration that fills them for existing runs, the $regex subset's
translation for each database, and how values are stored."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support import ADMIN_KEY, Client, LiveServer, database_at_revision
from wandb_files.server.db.runregex import RegexNotSupported, sqlite_regexp, translate
from wandb_files.server.db.runvalues import (
    MAX_TEXT,
    RANK_ARRAY,
    RANK_BOOL,
    RANK_NAN,
    RANK_NUMBER,
    RANK_OBJECT,
    RANK_STRING,
    value_rows,
)

RUNS = """
query($filters: JSONString, $order: String) { project(name: "old", entityName: "admin") {
  runCount(filters: $filters) runs(filters: $filters, order: $order) { edges { node { name } } } } }
"""


def test_migration_fills_run_values_and_normalises_config(tmp_path: Path) -> None:
    """Runs written before run_values existed (config in plain form too) are selectable after the upgrade."""
    data_dir = tmp_path / "data"
    db = database_at_revision(data_dir, "0003")
    rows = [
        ("a", {"lr": {"value": 0.01, "desc": None}}, {"acc": 0.9}, ["t"]),
        ("b", {"lr": 0.01, "opt": {"name": "adam"}}, {"acc": 0.7}, []),  # plain form, as older clients sent
        ("c", {"lr": {"value": 0.1}}, {"acc": 0.95}, ["x"]),
    ]
    for i, (name, config, summary, tags) in enumerate(rows, start=1):
        db.execute(
            "INSERT INTO runs (id, project_id, name, state, config, summary, tags, created_at, updated_at, user_id)"
            " VALUES (?, 1, ?, 'finished', ?, ?, ?, '2026-01-01 00:00:0' || ?, '2026-01-01 00:00:00', 1)",
            (i, name, json.dumps(config), json.dumps(summary), json.dumps(tags), str(i)),
        )
    db.commit()
    db.close()

    server = LiveServer(data_dir, api_key=ADMIN_KEY).start()
    try:
        client = Client(server.base_url, ADMIN_KEY)

        def names(filters: dict[str, object], order: str | None = None) -> list[str]:
            data = client.gql(RUNS, {"filters": json.dumps(filters), "order": order})["project"]
            found = [e["node"]["name"] for e in data["runs"]["edges"]]
            assert data["runCount"] == len(found)
            return found

        assert names({"config.lr": 0.01}, "-summary_metrics.acc") == ["a", "b"]
        assert names({"config.lr.value": 0.01, "tags": {"$nin": ["t"]}}) == ["b"]
        assert names({"config.opt.name": "adam"}) == ["b"]
        assert names({}, "+summary_metrics.acc") == ["b", "a", "c"]
    finally:
        server.stop()
    db = sqlite3.connect(data_dir / "wandb-files.db")
    config_b = json.loads(db.execute("SELECT config FROM runs WHERE name = 'b'").fetchone()[0])
    assert config_b == {"lr": {"value": 0.01}, "opt": {"value": {"name": "adam"}}}
    config_a = json.loads(db.execute("SELECT config FROM runs WHERE name = 'a'").fetchone()[0])
    assert config_a == {"lr": {"value": 0.01, "desc": None}}  # already in wire form: untouched
    db.close()


def test_values_are_stored_with_their_type_rank() -> None:
    config = json.dumps({"lr": {"value": 0.01}, "opt": {"value": {"name": "adam", "betas": [0.9, 0.99]}}})
    summary = json.dumps({"acc": float("nan"), "ok": True, "big": 10**400, "text": "x" * 1000, "n": None})
    rows = {(r.key, r.txt[:5]): (r.rank, r.num) for r in value_rows(config, summary, json.dumps(["a", "a", "b"]))}
    assert rows[("config.lr", "")] == (RANK_NUMBER, 0.01)
    assert rows[("config.opt", "")][0] == RANK_OBJECT
    assert rows[("config.opt.name", "adam")][0] == RANK_STRING
    assert rows[("config.opt.betas", "")][0] == RANK_ARRAY
    assert rows[("summary.acc", "")][0] == RANK_NAN
    assert rows[("summary.ok", "")] == (RANK_BOOL, 1.0)
    assert rows[("summary.big", "")] == (RANK_NUMBER, math.inf)
    assert [r.txt for r in value_rows(None, None, json.dumps(["a", "a", "b"]))] == ["a", "b"]
    (text,) = [r for r in value_rows(None, summary, None) if r.key == "summary.text"]
    assert len(text.txt) == MAX_TEXT


@pytest.mark.parametrize(
    ("pattern", "re2_pattern", "postgres"),
    [
        ("^res(net)?$", "(?s)^res(net)?\\z", "^res(net)?$"),
        ("\\bnet\\B", "(?s)\\bnet\\B", "\\ynet\\Y"),
        ("\\d+\\s\\w", "(?s)[0-9]+[\\t\\n\\f\\r ][0-9A-Za-z_]", "[0-9]+[\\t\\n\\f\\r ][0-9A-Za-z_]"),
        ("[\\d_]\\D", "(?s)[0-9_][^0-9]", "[0-9_][^0-9]"),
        ("\\x41B", "(?s)\\x41B", "\\u0041B"),
        ("(?i)a.c", "(?si)a.c", "(?i)a.c"),
        ("[]a&]", "(?s)[\\]a\\&]", "[\\]a\\&]"),
        ("a{2,}?", "(?s)a{2,}?", "a{2,}?"),
    ],
)
def test_regex_translation(pattern: str, re2_pattern: str, postgres: str) -> None:
    assert translate(pattern) == (re2_pattern, postgres)


def test_regex_translation_keeps_re2_meanings() -> None:
    ours, _ = translate("^\\d$")
    assert sqlite_regexp(ours, "7") and not sqlite_regexp(ours, "7\n") and not sqlite_regexp(ours, "٣")
    ours, _ = translate("a.b")
    assert sqlite_regexp(ours, "a\nb")  # . matches a newline on both databases (RE2's default does not: documented)
    ours, _ = translate("\\bnet$")
    assert sqlite_regexp(ours, "a net") and sqlite_regexp(ours, "énet")  # RE2's \b, as W&B's: é is no word character


def test_a_pattern_a_backtracking_engine_takes_exponential_time_on_answers_at_once() -> None:
    """`(a+)+$` against 40 a's and a "!": Python's `re` would take days, holding the GIL."""
    ours, _ = translate("(a+)+$")
    started = time.perf_counter()
    assert sqlite_regexp(ours, "a" * 40 + "!") == 0
    assert sqlite_regexp(ours, "a" * 100_000) == 1
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(a)\\1", "backreferences"),
        ("a(?=b)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?P<n>a)", "named groups"),
        ("a(?i)b", "inline flags"),
        ("[[:digit:]]", "POSIX classes"),
        ("a++", "possessive"),
        ("*a", "nothing to repeat"),
        ("a{300}", "repetition bounds"),
        ("a}", "literal '}'"),
        ("[a", "unterminated"),
        ("\\p{L}", "escape \\p"),
        ("[\\W]", "not supported inside"),
        ("\\x0", "two hex digits"),
        ("\\x00", "NUL"),
        ("x" * 1001, "at most 1000"),
    ],
)
def test_regex_outside_the_subset_is_refused(pattern: str, words: str) -> None:
    with pytest.raises(RegexNotSupported, match=re.escape(words)):
        translate(pattern)
