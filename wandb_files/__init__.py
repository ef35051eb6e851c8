"""wandb-files: the files of W&B runs — list, download, upload, delete — fast and safe.

    >>> import wandb_files
    >>> api = wandb_files.Api()
    >>> run = api.run("entity/project/run_id")
    >>> for f in run.files(pattern="%.json"):
    ...     f.download(root="out", exist_ok=True)
"""

from wandb_files._version import __version__
from wandb_files.api import Api
from wandb_files.bulk import download_files
from wandb_files.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    BulkTransferError,
    ConfigurationError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
    UploadError,
    WandbFilesError,
)
from wandb_files.files import File, Files
from wandb_files.runs import Run, Runs

__all__ = [
    "APIError",
    "Api",
    "AuthenticationError",
    "BadRequestError",
    "BulkTransferError",
    "ConfigurationError",
    "DownloadError",
    "File",
    "Files",
    "IntegrityError",
    "NotFoundError",
    "PermissionDeniedError",
    "Run",
    "Runs",
    "ServerError",
    "TransportError",
    "UploadError",
    "WandbFilesError",
    "__version__",
    "download_files",
]
