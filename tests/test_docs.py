"""Every ```python block of the README and of docs/**/*.md runs against a live server, as a reader would run them: in
order, one namespace per document (a later block uses the `api` and `run` of an earlier one), in a working folder
of its own, with WANDB_BASE_URL and WANDB_API_KEY set. A block of ``>>>`` lines is a doctest: its output is
compared (``...`` matches anything).

Sybil finds the blocks. Before a block, ``<!-- skip: next "why" -->`` skips it (keep those rare, and say why);
``<!-- invisible-code-block: python -->`` runs code the page does not show. A new Markdown file under docs/ is
collected with no change here; what its examples name must exist in `_seed` (or in a block of its own).

Shell blocks (```sh) are not run (they start servers, install packages, name hosts of the reader's): every
`wandb-files ...` command in them is parsed by the command line itself instead, so a renamed option, a missing
argument or a bad value in the docs fails here.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sybil import Document, Example, Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

import wandb_files
from tests.support import ADMIN_KEY, UPSERT, Client, LiveServer, start_server, stop_server
from tests.support.wandb_env import point_wandb_at

ROOT = Path(__file__).parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SYBIL = Sybil(
    parsers=[SkipParser(), PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)]
)


class _Reader:
    """One document's examples, run in order once each: asking for the fifth runs the four before it first, so a
    single example can be run on its own (``-k 'README.md:271'``)."""

    def __init__(self, path: Path) -> None:
        self.document: Document = SYBIL.parse(path)
        self.examples: list[Example] = list(self.document.examples())
        self.done = 0

    def run_through(self, index: int) -> None:
        while self.done <= index:
            example = self.examples[self.done]
            self.done += 1
            example.evaluate()  # raises for a failed example, SkipTest for a skipped one


READERS = {path: _Reader(path) for path in DOCUMENTS}
CASES = [
    pytest.param(path, i, id=f"{path.relative_to(ROOT)}:{example.line}")
    for path, reader in READERS.items()
    for i, example in enumerate(reader.examples)
]


def _give_entities(server: LiveServer, *names: str) -> None:
    """More entities for the admin, as a W&B user has teams: the examples name `entity` and `team-alpha`."""
    from sqlalchemy import select

    from wandb_files.server.config import ServerConfig
    from wandb_files.server.db.database import create_db_engine, make_session_factory, write_transaction
    from wandb_files.server.db.models import Entity, User

    engine = create_db_engine(ServerConfig(data_dir=server.data_dir, database_url=server.database_url).database)
    try:
        with make_session_factory(engine)() as session, write_transaction(session):
            admin = session.scalars(select(User).where(User.name == "admin")).one()
            session.add_all(Entity(name=name, owner_id=admin.id) for name in names)
    finally:
        engine.dispose()


def _upload(api: wandb_files.Api, path: str, files: dict[str, bytes], source: Path, **metadata: Any) -> None:
    entity, project, run_id = path.split("/")
    run = api.create_run(run_id=run_id, project=project, entity=entity, **metadata)
    for name, data in files.items():
        (source / path / name).parent.mkdir(parents=True, exist_ok=True)
        (source / path / name).write_bytes(data)
    run.upload_files([source / path / name for name in files], root=source / path, progress=False)


def _seed(server: LiveServer, source: Path, work: Path) -> None:
    """The runs, files and local files the examples name."""
    import pandas

    _give_entities(server, "entity", "team-alpha", "team")
    api = wandb_files.Api(api_key=server.api_key, base_url=server.base_url)
    metrics = pandas.DataFrame({"step": [1, 2], "loss": [0.5, 0.25]})
    (source / "eval.parquet").parent.mkdir(parents=True, exist_ok=True)
    metrics.to_parquet(source / "eval.parquet")
    _upload(
        api,
        "entity/project/run_id",
        {
            "media/images/predictions_12_ab12cd.png": b"png 12",
            "media/images/pred_1_0a1b2c.png": b"png 1",
            "tables/metrics.csv": metrics.to_csv(index=False).encode(),
            "tables/eval.parquet": (source / "eval.parquet").read_bytes(),
            "model.ckpt": os.urandom(4096),
            "config.yaml": b"lr: 0.1\n",
            "checkpoints/epoch-1.ckpt": b"weights",
        },
        source,
    )
    _upload(
        api,
        "admin/demo/abc123",
        {"config.yaml": b"x" * 1300, "output.log": b"log\n", "wandb-summary.json": b"{" + b"1" * 258 + b"}"},
        source,
    )
    kittiwakes = {
        "kittiwake-i2ufv": {"config": {"model": "resnet", "lr": 0.01}, "summary": {"acc": 0.91}, "tags": ["best"]},
        "kittiwake-h7jk2": {"config": {"model": "vit", "lr": 0.1}, "summary": {"acc": 0.84}, "tags": ["baseline"]},
    }
    for run_id, metadata in kittiwakes.items():
        files = {f"media/images/predictions_{step}_{step}a{step}b{step}c.png": b"p" for step in (1, 2, 3, 4)}
        files.update({"sample.csv": b"a,b\n", "labels.json": b"{}", "config.yaml": b"lr: 1\n"})
        _upload(api, f"team-alpha/project-x/{run_id}", files, source, **metadata)
    # "Many runs": runs to choose by config, summary, tags, group and state (W&B's runs set their state).
    raw = Client(server.base_url, server.api_key)
    for run_id, model, lr, acc, tags, state in (
        ("r1", "resnet", 0.01, 0.71, ["baseline"], "finished"),
        ("r2", "resnet", 0.1, 0.93, ["best"], "finished"),
        ("r3", "vit", 0.01, 0.88, [], "finished"),
        ("r4", "resnet", 0.01, 0.5, [], "crashed"),
    ):
        files = {f"media/images/predictions_1_{run_id}aaaa.png": b"p", "output.log": b"log\n"}
        config, summary = {"model": model, "lr": lr}, {"acc": acc}
        _upload(api, f"team/proj/{run_id}", files, source, config=config, summary=summary, tags=tags, group="sweep-1")
        raw.gql(UPSERT, {"entity": "team", "project": "proj", "name": run_id, "state": state})
    # "Logging runs with the wandb SDK": a run whose history came through the file stream, as wandb-core sends it.
    raw.make_run("training", "run-1", entity="admin")
    history = [json.dumps({"_step": step, "loss": 0.5**step, "_runtime": step}) for step in range(1, 4)]
    answer = requests.post(
        f"{server.base_url}/files/admin/training/run-1/file_stream",
        json={"files": {"wandb-history.jsonl": {"offset": 0, "content": history}}},
        auth=("api", server.api_key),
        timeout=30,
    )
    answer.raise_for_status()
    api.close()
    for name, data in {
        "outputs/model.ckpt": b"m" * 1000,
        "a.ckpt": b"a",
        "logs/b.txt": b"b",
        "results/scores.json": b"{}",
    }.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """A server of its own (the examples' entities are the admin's), seeded, and the readers' working folder."""
    server = start_server(tmp_path_factory.mktemp("docs-server") / "data", ADMIN_KEY)
    work = tmp_path_factory.mktemp("docs-work")
    try:
        _seed(server, tmp_path_factory.mktemp("docs-seed"), work)
        yield server, work
    finally:
        stop_server(server)


@pytest.mark.parametrize(("path", "index"), CASES)
def test_markdown_examples_run(
    path: Path, index: int, docs_server: tuple[LiveServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, work = docs_server
    point_wandb_at(monkeypatch, server.base_url, server.api_key, work / ".wandb-client")  # our SDK's variables too
    monkeypatch.chdir(work)
    READERS[path].run_through(index)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_every_python_block_is_collected(path: Path) -> None:
    """A block Sybil would not see (a typo in its fence, say) would silently go untested."""
    text = path.read_text(encoding="utf-8")
    starts = sorted(example.region.start for example in READERS[path].examples)
    offset = text.find("```python\n")
    while offset != -1:
        end = text.find("\n```", offset + 1)
        assert any(offset <= start < end for start in starts), f"{path.name}: the block at offset {offset} is not run"
        offset = text.find("```python\n", end)
    if path.name == "README.md":
        assert text.count("```python\n") >= 3


def _shell_commands(path: Path) -> list[tuple[int, list[str]]]:
    """The `wandb-files` commands of a document's shell blocks, as (line, argv without the program name)."""
    commands = []
    text = path.read_text(encoding="utf-8")
    for block in re.finditer(r"^```(?:sh|bash|console)\n(.*?)^```", text, flags=re.M | re.S):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, line in enumerate(block.group(1).splitlines()):
            words = shlex.split(line, comments=True)
            if words[:1] == ["$"]:
                words = words[1:]
            if words[:1] == ["wandb-files"]:
                commands.append((first_line + offset, words[1:]))
    return commands


SHELL_CASES = [
    pytest.param(path, line, argv, id=f"{path.relative_to(ROOT)}:{line}")
    for path in DOCUMENTS
    for line, argv in _shell_commands(path)
]


def test_the_docs_show_commands() -> None:
    """The check below would pass vacuously if the block or command syntax it looks for changed."""
    assert len(SHELL_CASES) >= 20


def _parse(command: Any, name: str, words: list[str], parent: Any) -> None:
    """Parse `words` as `command` would, down through its subcommands, without invoking anything."""
    import click

    if isinstance(command, click.Group):
        names = set(command.list_commands(click.Context(command)))
        at = next((i for i, word in enumerate(words) if word in names), None)
        if at is None:
            raise click.UsageError(f"no command of {name!r} in {words}")
        ctx = command.make_context(name, words[: at + 1], parent=parent)  # the group's own options
        _parse(command.get_command(ctx, words[at]), words[at], words[at + 1 :], ctx)
    else:
        command.make_context(name, words, parent=parent).close()


@pytest.mark.parametrize(("path", "line", "argv"), SHELL_CASES)
def test_every_shown_command_parses(
    path: Path, line: int, argv: list[str], docs_server: tuple[LiveServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed as `wandb-files` would parse it (options, arguments, their types), without running it; in the
    readers' working folder, where the local paths the commands name (`outputs/`) exist."""
    import click

    from wandb_files.cli import main

    monkeypatch.chdir(docs_server[1])
    try:
        _parse(main, "wandb-files", argv, None)
    except click.exceptions.ClickException as exc:
        pytest.fail(f"{path.name}:{line}: wandb-files {shlex.join(argv)}: {exc.format_message()}")
