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

Filters go to the server where they can: a list of attributes, or a regular expression that starts with a
literal (``^predictions``), becomes a ``pattern`` of the listing, so a run's other files are never listed.
"""

from __future__ import annotations

import math
import re
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
_REGEX_META = set(".^$*+?{}[]\\|()")


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

    def _prefix(self) -> str | None:
        """The literal text every match starts with, when the expression is one anchored term (``^pred``)."""
        if self.alternatives is None or len(self.alternatives) != 1:
            return None
        anchored = [
            regex.pattern for negated, regex in self.alternatives[0] if not negated and regex.pattern[:1] == "^"
        ]
        if not anchored:
            return None
        pattern = anchored[0]
        prefix = []
        for ch in pattern[1:]:
            if ch in _REGEX_META:
                break
            prefix.append(ch)
        # A quantifier right after the literal may apply to its last character (`^ab?`): drop that one.
        rest = pattern[1 + len(prefix) :]
        if rest[:1] in ("?", "*", "{") and prefix:
            prefix.pop()
        return "".join(prefix)

    def patterns(self) -> list[str | None]:
        """LIKE patterns over whole file names that hold every match (None: list everything)."""
        prefix = self._prefix()
        return [_like_escape(prefix) + "%"] if prefix else [None]

    def media_patterns(self) -> list[str | None]:
        """LIKE patterns over media file names (``media/<kind>/<key>_<step>_…``) that hold every match."""
        if self.names is not None and len(self.names) <= _MAX_PATTERNS:
            return [f"media/%/{_like_escape(name)}\\_%" for name in self.names]
        prefix = self._prefix()
        return [f"media/%/{_like_escape(prefix)}%" if prefix else "media/%"]


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
