"""`wandb_files.query`: neptune-query's `fetch_series` / `fetch_runs_table` / `download_files` on W&B runs."""

from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import wandb_files
import wandb_files.query as wq
from tests.support import LiveServer, md5_b64
from wandb_files.bulk import attribute_and_step
from wandb_files.patterns import like_to_regex
from wandb_files.query import _Matcher, regex_heads

LOGGED = {
    "media/images/predictions_1_a1a1a1.png": b"p1",
    "media/images/predictions_2_a2a2a2.png": b"p2",
    "media/images/predictions_2_b2b2b2.png": b"p2 again",  # a logged list: two images at one step
    "media/images/predictions_3_a3a3a3.png": b"p3",
    "media/images/predictions_4_a4a4a4.png": b"p4",
    "media/images/val/examples_2_c2c2c2.png": b"v2",
    "media/images/predictions_extra_1_e1e1e1.png": b"not predictions",
    "sample.csv": b"a,b\n",
    "labels.json": b"{}",
    "config.yaml": b"lr: 1\n",
}


@pytest.fixture(scope="module")
def project(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, wandb_files.Api]:
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    source = tmp_path_factory.mktemp("query")
    for name, data in LOGGED.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    for run_id in ("kittiwake-i2ufv", "kittiwake-h7jk2", "other-x1"):
        run = api.create_run(run_id=run_id, project="project-x")
        run.upload_files(sorted(p for p in source.rglob("*") if p.is_file()), root=source, progress=False)
    return "admin/project-x", api


def test_fetch_series_as_in_the_seed(project: tuple, tmp_path: Path) -> None:
    path, api = project
    files = wq.fetch_series(
        project=path,
        runs=["kittiwake-i2ufv", "kittiwake-h7jk2"],
        attributes=r"^predictions$",
        step_range=(1.0, 3.0),
        api=api,
    )
    assert list(files.index.names) == ["run", "step"] and files.columns.name == "attribute"
    assert list(files.columns) == ["predictions"]
    assert list(files.index) == [(r, s) for r in ("kittiwake-i2ufv", "kittiwake-h7jk2") for s in (1.0, 2.0, 3.0)]
    assert isinstance(files.loc[("kittiwake-i2ufv", 1.0), "predictions"], wandb_files.File)
    both = files.loc[("kittiwake-h7jk2", 2.0), "predictions"]
    assert [f.name for f in both] == ["media/images/predictions_2_a2a2a2.png", "media/images/predictions_2_b2b2b2.png"]

    paths = wq.download_files(files=files, destination=tmp_path)
    assert list(paths.index) == list(files.index) and list(paths.columns) == ["predictions"]
    first = paths.loc[("kittiwake-i2ufv", 3.0), "predictions"]
    assert first == str((tmp_path / "kittiwake-i2ufv" / "media/images/predictions_3_a3a3a3.png").resolve())
    assert [Path(p).read_bytes() for p in paths.loc[("kittiwake-i2ufv", 2.0), "predictions"]] == [b"p2", b"p2 again"]


def test_runs_and_attributes_by_regex_and_open_step_ranges(project: tuple) -> None:
    path, api = project
    files = wq.fetch_series(path, runs="^kittiwake", attributes=r"examples", step_range=(2, None), api=api)
    # The project's order: W&B's default for api.runs, oldest first.
    assert list(files.index) == [("kittiwake-i2ufv", 2.0), ("kittiwake-h7jk2", 2.0)]
    assert list(files.columns) == ["val/examples"]
    everything = wq.fetch_series(path, api=api)
    assert set(everything.columns) == {"predictions", "val/examples", "predictions_extra"}
    assert {r for r, _ in everything.index} == {"kittiwake-i2ufv", "kittiwake-h7jk2", "other-x1"}
    listed = wq.fetch_series(path, runs=["other-x1"], attributes=["predictions", "val/examples"], api=api)
    assert sorted({s for _, s in listed.index}) == [1.0, 2.0, 3.0, 4.0]
    assert set(listed.columns) == {"predictions", "val/examples"}  # predictions_extra is another attribute


def test_fetch_runs_table_as_in_the_seed(project: tuple, tmp_path: Path) -> None:
    path, api = project
    table = wq.fetch_runs_table(
        project=path, runs=["kittiwake-i2ufv", "kittiwake-h7jk2"], attributes=r"sample | labels", api=api
    )
    assert table.index.name == "run" and list(table.index) == ["kittiwake-i2ufv", "kittiwake-h7jk2"]
    assert sorted(table.columns) == ["labels.json", "sample.csv"]
    assert table.loc["kittiwake-h7jk2", "sample.csv"].md5 == md5_b64(b"a,b\n")
    paths = wq.download_files(files=table, destination=tmp_path)
    assert list(paths.index.names) == ["run", "step"]
    assert all(math.isnan(step) for _, step in paths.index)
    assert Path(paths.loc[("kittiwake-i2ufv", math.nan), "labels.json"]).read_bytes() == b"{}"
    named = wq.fetch_runs_table(path, runs="x1$", attributes=["config.yaml", "missing.txt"], api=api)
    assert list(named.index) == ["other-x1"] and list(named.columns) == ["config.yaml"]
    plain = wq.fetch_runs_table(path, runs=["other-x1"], api=api)
    assert sorted(plain.columns) == ["config.yaml", "labels.json", "sample.csv"]  # never the media series


def test_a_run_that_does_not_exist_and_bad_arguments_are_clear_errors(project: tuple) -> None:
    path, api = project
    with pytest.raises(wandb_files.NotFoundError, match="no-such-run"):
        wq.fetch_series(path, runs=["no-such-run"], api=api)
    with pytest.raises(TypeError, match="step_range"):
        wq.fetch_series(path, step_range=[1, 2], api=api)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_range .* is empty"):
        wq.fetch_series(path, step_range=(3, 1), api=api)
    with pytest.raises(ValueError, match="attributes .* is not a regular expression"):
        wq.fetch_series(path, attributes="(unclosed", api=api)
    with pytest.raises(TypeError, match="runs must be"):
        wq.fetch_runs_table(path, runs=5, api=api)  # type: ignore[arg-type]
    assert isinstance(wq.fetch_series(path, runs=[], api=api), pd.DataFrame)


@pytest.mark.parametrize(
    ("spec", "media", "plain"),
    [
        (r"^predictions", ["media/%/predictions%"], ["predictions%"]),
        (r"^val/ex.*", ["media/%/val/ex%"], ["val/ex%"]),
        (r"^data_1?", ["media/%/data\\_%"], ["data\\_%"]),  # the quantifier applies to the `1`
        (r"predictions", ["media/%"], [None]),  # not anchored: every media file is a candidate
        (r"^a | ^b", ["media/%/a%", "media/%/b%"], ["a%", "b%"]),  # each alternative gives a listing
        (r"^a|^b_c", ["media/%/a%", "media/%/b\\_c%"], ["a%", "b\\_c%"]),
        (r"^a | b", ["media/%"], [None]),
        (["sample.csv", "x_y"], ["media/%/sample.csv\\_%", "media/%/x\\_y\\_%"], [None]),
        (None, ["media/%"], [None]),
    ],
)
def test_filters_go_to_the_server_as_like_patterns_where_they_can(
    spec: object, media: list[str], plain: list[str | None]
) -> None:
    matcher = _Matcher("attributes", spec)  # type: ignore[arg-type]
    assert matcher.media_patterns() == media
    if not isinstance(spec, list):
        assert matcher.patterns() == plain


def test_the_extended_regex_syntax_of_neptune_query() -> None:
    matcher = _Matcher("attributes", r"sample | labels & \.json$ | !csv & config")
    assert [matcher.matches(n) for n in ("sample.csv", "labels.json", "labels.txt", "config.yaml", "x.csv")] == [
        True,
        True,
        False,
        True,
        False,
    ]


# --- the LIKE patterns sent to the server never narrow what the regex selects ------------------------------------

_CHARS = "ab_%/.\\\nA"
_LITERALS = st.sampled_from([re.escape(ch) if ch != "\n" else r"\n" for ch in _CHARS])
_OTHER_ATOMS = st.sampled_from([".", "[ab]", "[^a]", "[a-c]", r"\w", "^", r"\A", "$", r"\b", r"(?<=a)"])
_QUANTIFIERS = st.sampled_from(["?", "*", "+", "{2}", "{0,2}", "{1,}", "*?", "+?", "?+", "*+"])
_GROUPS = st.sampled_from(["(", "(?:", "(?i:", "(?m:", "(?s:", "(?=", "(?!", "(?>"])


def _regexes() -> st.SearchStrategy[str]:
    """Regular expressions over a few characters, mostly anchored alternatives of literal-led sequences
    (``^ab(?:c|d)?|^e…``): the expressions the derivation reads, and the near misses it must not misread."""
    pieces: st.SearchStrategy[str] = st.deferred(
        lambda: st.one_of(
            _LITERALS,
            st.tuples(_LITERALS, _QUANTIFIERS).map("".join),
            st.tuples(_OTHER_ATOMS, st.one_of(st.just(""), _QUANTIFIERS)).map("".join),
            st.tuples(_GROUPS, alternatives, st.one_of(st.just(""), _QUANTIFIERS)).map(
                lambda t: f"{t[0]}{t[1]}){t[2]}"
            ),
        )
    )
    sequences = st.lists(st.one_of(_LITERALS, pieces), max_size=3).map("".join)
    alternatives = st.lists(sequences, min_size=1, max_size=2).map("|".join)
    branches = st.tuples(st.sampled_from(["^", "^", "^", r"\A", ""]), sequences).map("".join)
    top = st.lists(branches, min_size=1, max_size=3).map("|".join)
    return st.tuples(st.sampled_from(["", "", "", "", "(?i)", "(?m)", "(?s)", "(?x)"]), top).map("".join)


def _compiled(source: str) -> re.Pattern[str] | None:
    """The compiled expression, or None when it is not one or Python's engine may take exponential time on it."""
    try:
        regex = re.compile(source)
    except re.error:
        return None
    return None if _may_backtrack(regex) else regex


_sre = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT} | (
    {_sre.POSSESSIVE_REPEAT} if hasattr(_sre, "POSSESSIVE_REPEAT") else set()
)
#: Most repeats (of more than one) in one expression: adjacent ones cost a power of the text's length each.
_MAX_REPEATS = 4


def _may_backtrack(regex: re.Pattern[str]) -> bool:
    """Whether a repeat holds another repeat or an alternation (``(?:a*)*``, ``(?:ab|a)*``), or there are more
    than _MAX_REPEATS repeats. Python's engine can take exponential time on those, and hypothesis's `from_regex`
    searches padded texts with the expression itself: a generated `(?:a*)*b` hung a test run for good."""
    repeats = 0

    def walk(items: object, in_repeat: bool) -> bool:
        nonlocal repeats
        for op, av in items:  # type: ignore[attr-defined]
            if op in _REPEATS:
                many = av[1] > 1
                repeats += many
                if (in_repeat and many) or repeats > _MAX_REPEATS or walk(av[2], in_repeat or many):
                    return True
            elif op is _sre.BRANCH:
                if in_repeat or any(walk(branch, in_repeat) for branch in av[1]):
                    return True
            elif op is _sre.SUBPATTERN:
                if walk(av[-1], in_repeat):
                    return True
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
                if walk(av[1], in_repeat):
                    return True
            elif getattr(_sre, "ATOMIC_GROUP", None) is op and walk(av, in_repeat):
                return True
        return False

    return walk(_sre.parse(regex.pattern, regex.flags), False)


def _names(regex: re.Pattern[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.text(_CHARS, max_size=8), st.from_regex(regex, alphabet=_CHARS))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data(), source=_regexes())
def test_like_patterns_hold_every_name_the_regex_finds(data: st.DataObject, source: str) -> None:
    regex = _compiled(source)
    assume(regex is not None)
    assert regex is not None
    name = data.draw(_names(regex), label="name")
    heads = regex_heads(regex)
    matcher = _Matcher("attributes", source)
    media = f"media/images/{name}_7_abcdef.png"
    if regex.search(name) is None:
        return
    assert heads is None or any(name.startswith(head) for head in heads), (heads, name)
    assert any(p is None or like_to_regex(p).fullmatch(name) for p in matcher.patterns()), matcher.patterns()
    if attribute_and_step(media) == (name, 7.0):
        assert any(like_to_regex(p).fullmatch(media) for p in matcher.media_patterns() if p), matcher.media_patterns()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data(), terms=st.lists(st.tuples(st.booleans(), _regexes()), min_size=1, max_size=3))
def test_like_patterns_of_the_extended_syntax_hold_every_match(data: st.DataObject, terms: list) -> None:
    """Alternatives (` | `) of conjunctions (` & `) of terms, some negated (`!`): the same guarantee."""
    assume(all(_compiled(source) is not None and " " not in source for _, source in terms))
    split = data.draw(st.integers(1, len(terms)), label="conjunction size")
    spec = " | ".join(
        " & ".join(("!" if negated else "") + source for negated, source in terms[i : i + split])
        for i in range(0, len(terms), split)
    )
    matcher = _Matcher("attributes", spec)
    first = _compiled(terms[0][1])
    assert first is not None
    name = data.draw(st.one_of(st.text(_CHARS, max_size=8), st.from_regex(first, alphabet=_CHARS)), label="name")
    if matcher.matches(name):
        assert any(p is None or like_to_regex(p).fullmatch(name) for p in matcher.patterns()), (spec, name)


@pytest.mark.parametrize(
    ("source", "heads"),
    [
        (r"^predictions|^val_pred_img", ["predictions", "val_pred_img"]),
        (r"^sample|^labels", ["labels", "sample"]),
        (r"^(?:ab|cd)x", ["abx", "cdx"]),
        (r"^[ab]c", ["ac", "bc"]),
        (r"\Adata_1?", ["data_"]),
        (r"^(ab)+c", ["ab"]),
        (r"^ab|^a", ["a", "ab"]),
        (r"(?x) ^ a b", ["ab"]),  # verbose: the parser drops the spaces
        (r"^a|b", None),  # one branch may match anywhere
        (r"(?i)^ab", None),  # `^ab` also finds `AB`
        (r"^(?i:a)b", None),
        (r"(?m)^ab", None),  # `^` after any newline
        (r"^[a-z]x", None),
        (r"^|a", None),
    ],
)
def test_regex_heads_of_known_expressions(source: str, heads: list[str] | None) -> None:
    assert regex_heads(re.compile(source)) == heads


def test_an_anchored_alternation_lists_every_branch(project: tuple, tmp_path: Path) -> None:
    """`^predictions|^val_pred_img` took only its first branch to the server, and so listed only `predictions`."""
    _, api = project
    names = {
        "media/images/predictions_1_a1a1a1.png": b"p",
        "media/images/val_pred_img_1_b1b1b1.png": b"v",
        "media/images/other_1_c1c1c1.png": b"o",
        "sample.csv": b"s",
        "labels.json": b"l",
        "config.yaml": b"c",
    }
    for name, data in names.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    run = api.create_run(run_id="alternation", project="project-alternation")
    run.upload_files(sorted(tmp_path / name for name in names), root=tmp_path, progress=False)
    path = "admin/project-alternation"
    series = wq.fetch_series(path, attributes=r"^predictions|^val_pred_img", api=api)
    assert sorted(series.columns) == ["predictions", "val_pred_img"]
    table = wq.fetch_runs_table(path, attributes=r"^sample|^labels", api=api)
    assert sorted(table.columns) == ["labels.json", "sample.csv"]
