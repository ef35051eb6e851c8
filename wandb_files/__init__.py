"""wandb-files: the files of W&B runs — list, download, upload, delete — fast and safe.

>>> import wandb_files
>>> api = wandb_files.Api()
>>> run = api.run("entity/project/run_id")
>>> for f in run.files(pattern="%.json"):
...     f.download(root="out", exist_ok=True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wandb_files._version import __version__
from wandb_files.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BulkTransferError,
    ConfigurationError,
    DeleteError,
    DestinationBusyError,
    DownloadError,
    IntegrityError,
    Interrupted,
    LocalFileChangedError,
    LocalFilesDifferError,
    ManifestError,
    MirrorConflictError,
    NotFoundError,
    NotGraphQLError,
    PermissionDeniedError,
    ServerError,
    TransportError,
    UploadError,
    WandbFilesError,
)

# The SDK's classes are imported on first use: `wandb-files --help` and `import wandb_files.errors` then do not
# pay for gql, requests and pydantic.
_LAZY = {
    "Api": "wandb_files.api",
    "download_files": "wandb_files.bulk",
    "DryRunFile": "wandb_files.transfer.plan",
    "File": "wandb_files.files",
    "Files": "wandb_files.files",
    "Run": "wandb_files.runs",
    "Runs": "wandb_files.runs",
    "sync": "wandb_files.mirror",
}

if TYPE_CHECKING:
    from wandb_files.api import Api
    from wandb_files.bulk import download_files
    from wandb_files.files import File, Files
    from wandb_files.mirror import sync
    from wandb_files.runs import Run, Runs
    from wandb_files.transfer.plan import DryRunFile


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wandb_files' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "APIError",
    "Api",
    "AuthenticationError",
    "BadRequestError",
    "BulkTransferError",
    "ConfigurationError",
    "DeleteError",
    "DestinationBusyError",
    "DownloadError",
    "DryRunFile",
    "File",
    "Files",
    "IntegrityError",
    "Interrupted",
    "LocalFileChangedError",
    "LocalFilesDifferError",
    "ManifestError",
    "MirrorConflictError",
    "NotFoundError",
    "NotGraphQLError",
    "PermissionDeniedError",
    "Run",
    "Runs",
    "ServerError",
    "TransportError",
    "UploadError",
    "WandbFilesError",
    "__version__",
    "download_files",
    "sync",
]
