"""neptune-query's shape on W&B runs: `fetch_series`, `fetch_runs_table` and `download_files`.

Porting from neptune-query is a changed import::

    import wandb_files.query as wq

    files = wq.fetch_series(
        project="team-alpha/project-x",
        runs=["kittiwake-i2ufv", "kittiwake-h7jk2"],
        attributes=r"^predictions",
        step_range=(1.0, 3.0),
    )
    wq.download_files(files=files)

W&B logs media as ``media/<kind>/<key>_<step>_<hash>.<ext>``: such a file is attribute ``<key>`` at step
``<step>`` (see `wandb_files.bulk.attribute_and_step`). Any other file of a run is an attribute of its own,
named by its path, with no step: `fetch_runs_table` lists those.

Filters go to the server where they can: a list of attributes, or a regular expression whose every match starts
with one of a few literals (``^predictions``, ``^predictions|^val_pred``), becomes a ``pattern`` of the listing
(one listing a literal), so a run's other files are never listed. Where that is not provable, every file is
listed and the expression is matched here (see `regex_heads`).
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from wandb_files.bulk import attribute_and_step, download_files, require_pandas
from wandb_files.files import File
from wandb_files.runs import Run

if TYPE_CHECKING:
    import pandas as pd

    from wandb_files.api import Api

__all__ = ["download_files", "fetch_runs_table", "fetch_series"]

#: Files a listing request carries: the most the server gives (fewer requests for big runs).
_PAGE = 1000
#: Up to this many attributes listed by name get a listing each; more are matched in one listing of all media.
_MAX_PATTERNS = 4


def fetch_series(
    project: str,
    runs: str | Sequence[str] | None = None,
    attributes: str | Sequence[str] | None = None,
    step_range: tuple[float | None, float | None] = (None, None),
    *,
    api: Api | None = None,
) -> pd.DataFrame:
    """The media files W&B logged as series, as a table by (run, step), one column per attribute.

    Args:
        project: ``"entity/project"``, or a project name of the key's default entity.
        runs: Run ids, or a regular expression over run ids (searched, as neptune-query does); None for all.
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
    runs: str | Sequence[str] | None = None,
    attributes: str | Sequence[str] | None = None,
    *,
    api: Api | None = None,
) -> pd.DataFrame:
    """A run's files that are not media series, as a table: one row per run, one column per file name.

    Args:
        project: ``"entity/project"``, or a project name of the key's default entity.
        runs: Run ids, or a regular expression over run ids (searched); None for all.
        attributes: File names (``"config.yaml"``, ``"data/sample.csv"``), or a regular expression over them;
            None for every file that is not a W&B media file.
        api: The `Api` to use; a default `Api()` when omitted.

    Returns:
        A DataFrame indexed by ``run`` with one column per file name, cells `File` (NaN where a run lacks
        that file). `download_files` turns it into local paths by ``(run, step)`` with step NaN.

    Raises:
        ImportError: pandas is not installed.
        TypeError, ValueError: a bad argument (named in the message), before any request.
        NotFoundError: the project, or a run named in `runs`, does not exist.
    """
    pd = require_pandas()
    wanted = _Matcher("attributes", attributes)
    rows: list[dict[str, File]] = []
    run_ids: list[str] = []
    for run in _runs(project, runs, api):
        row: dict[str, File] = {}
        listing = run.files(names=wanted.names, per_page=_PAGE) if wanted.names else _listing(run, wanted.patterns())
        for file in listing:
            if math.isnan(attribute_and_step(file.name)[1]) and wanted.matches(file.name):
                row[file.name] = file
        run_ids.append(run.id)
        rows.append(row)
    return _frame(pd, rows, pd.Index(run_ids, name="run"))


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
            self.alternatives = [
                [_term(argument, spec, term) for term in alternative.split(" & ")] for alternative in spec.split(" | ")
            ]
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
        return [_like_escape(head) + "%" for head in heads] if heads else [None]

    def media_patterns(self) -> list[str | None]:
        """LIKE patterns over media file names (``media/<kind>/<key>_<step>_…``) that hold every match."""
        if self.names is not None and len(self.names) <= _MAX_PATTERNS:
            return [f"media/%/{_like_escape(name)}\\_%" for name in self.names]
        heads = self._prefixes()
        return [f"media/%/{_like_escape(head)}%" for head in heads] if heads else ["media/%"]


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


def _term(argument: str, spec: str, term: str) -> tuple[bool, re.Pattern[str]]:
    text = term.strip()
    negated = text.startswith("!")
    try:
        return negated, re.compile(text[1:].strip() if negated else text)
    except re.error as exc:
        raise ValueError(f"{argument} {spec!r} is not a regular expression: {exc}") from None


def _like_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "%_\\" else ch for ch in text)


def _runs(project: str, runs: str | Sequence[str] | None, api: Api | None) -> Iterator[Run]:
    """The runs asked for: by id (no listing of the project), or the project's runs filtered by a regex."""
    if api is None:
        from wandb_files.api import Api

        api = Api()
    if not isinstance(project, str):
        raise TypeError(f"project must be a string like 'entity/project', not {type(project).__name__}")
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
