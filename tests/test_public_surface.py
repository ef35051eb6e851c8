"""The public surface, pinned: what `import wandb_files` offers, that each name resolves, and that each is
documented (a docstring, and a mention in the README). Changing it is a decision, made here on purpose."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import wandb_files
import wandb_files.testing
import wandb_files.transfer

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")

PUBLIC = [
    "APIError",
    "Api",
    "AuthenticationError",
    "BadRequestError",
    "BulkTransferError",
    "ConfigurationError",
    "DeleteError",
    "DestinationBusyError",  # #21: a refusal of sync, with its own exit code
    "DownloadError",
    "DryRunFile",  # #14: the records of a dry run (dry_run=True), as huggingface_hub's DryRunFileInfo
    "File",
    "Files",
    "IntegrityError",
    "Interrupted",
    "LocalFileChangedError",
    "LocalFilesDifferError",
    "ManifestError",  # #21: sync's manifest in a state it will not touch
    "MirrorConflictError",  # #21: a second project would take over a mirror's run folder
    "NotFoundError",
    "NotGraphQLError",  # #21: a base URL that answers with a web page, not GraphQL
    "PermissionDeniedError",
    "Run",
    "Runs",
    "ServerError",
    "TransportError",
    "UploadError",
    "WandbFilesError",
    "__version__",
    "download_files",
    "sync",  # #21: the README's `wandb_files.sync(...)`
]


def test_the_public_names_are_pinned() -> None:
    assert sorted(wandb_files.__all__) == PUBLIC
    assert wandb_files.testing.__all__ == ["FAULTS", "BackgroundServer", "FaultProxy", "free_port"]
    assert set(wandb_files.__all__) <= set(dir(wandb_files))


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "__version__"])
def test_each_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(wandb_files, name)
    assert inspect.getdoc(value), f"{name} has no docstring"
    assert f"`{name}" in README or f"{name}(" in README, f"the README never mentions {name}"
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("wandb_files."), value.__module__


def test_public_methods_and_functions_have_docstrings() -> None:
    missing = []
    for name in PUBLIC:
        value = getattr(wandb_files, name)
        if not inspect.isclass(value) or issubclass(value, BaseException):
            continue
        for attribute, member in vars(value).items():
            if attribute.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if callable(target) and not inspect.getdoc(target):
                missing.append(f"{name}.{attribute}")
    for name in wandb_files.transfer.__all__:
        member = getattr(wandb_files.transfer, name)
        if callable(member) and not inspect.getdoc(member):
            missing.append(f"transfer.{name}")
    assert not missing, missing


def test_the_lazy_names_are_imported_only_when_used() -> None:
    code = "import sys, wandb_files; print('gql' in sys.modules, 'requests' in sys.modules); wandb_files.Api"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    for name in PUBLIC:
        importlib.reload(wandb_files)  # a fresh module: every name goes through the lazy path again
        assert getattr(wandb_files, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        wandb_files.Nope


def test_wandb_shaped_run_selection_and_metadata_are_pinned() -> None:
    # W&B's own signature (wandb.apis.public.Api.runs), so code written for wandb.Api() runs unchanged.
    runs = inspect.signature(wandb_files.Api.runs)
    assert list(runs.parameters)[1:] == ["path", "filters", "order", "per_page"]
    assert runs.parameters["order"].default == "+created_at" and runs.parameters["filters"].default is None
    create = inspect.signature(wandb_files.Api.create_run)
    assert {"config", "summary", "tags", "group", "job_type", "notes", "display_name"} <= set(create.parameters)
    attributes = ["config", "summary", "tags", "group", "job_type", "display_name", "name", "notes", "description"]
    attributes += ["state", "created_at", "heartbeat_at", "user", "storage_id"]
    for name in attributes:
        assert isinstance(getattr(wandb_files.Run, name), property), name
    assert callable(wandb_files.Run.update)


_EVERY_CLIENT_MODULE = """
import importlib, pkgutil, wandb_files
for info in pkgutil.walk_packages(wandb_files.__path__, "wandb_files."):
    if not info.name.startswith(("wandb_files.server", "wandb_files.testing", "wandb_files.__main__")):
        importlib.import_module(info.name)
"""


@pytest.mark.parametrize(
    "imports",
    [
        pytest.param("import wandb_files.cli.sync", id="after the CLI's sync command"),
        pytest.param(_EVERY_CLIENT_MODULE, id="after every module of the client"),
    ],
)
def test_wandb_files_sync_is_the_function_whatever_was_imported_before(imports: str) -> None:
    """The README's `wandb_files.sync(...)`: the function, also once the CLI or anything else was imported."""
    code = f"{imports}\nimport wandb_files\nassert wandb_files.sync.__qualname__ == 'sync', wandb_files.sync\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
