"""The exceptions of wandb_files: one hierarchy rooted in `WandbFilesError`.

Catch `WandbFilesError` to handle anything this package raises on purpose. Bad arguments are reported with
the built-in `ValueError`/`TypeError` (as W&B's own API does), before any request is made.
"""

from __future__ import annotations

from typing import Any, Sequence


class WandbFilesError(Exception):
    """Base class of every error raised by wandb_files."""


class ConfigurationError(WandbFilesError):
    """The API key or base URL is missing or unusable."""


class TransportError(WandbFilesError):
    """The server could not be reached, or the connection broke, after all retries."""


class APIError(WandbFilesError):
    """The server answered with an error.

    Attributes:
        status_code: The HTTP status, when the error came with one.
        errors: The GraphQL `errors` entries, when the server sent any.
    """

    def __init__(self, message: str, *, status_code: int | None = None, errors: Sequence[Any] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.errors = list(errors or [])


class AuthenticationError(APIError):
    """The API key is missing or was not accepted (HTTP 401)."""


class PermissionDeniedError(APIError):
    """The key is valid but may not see or change this entity, project, run or file (HTTP 403)."""


class NotFoundError(APIError):
    """The entity, project, run or file does not exist (HTTP 404, or a null in the GraphQL answer)."""


class BadRequestError(APIError):
    """The server refused the request's input (HTTP 400, GraphQL code BAD_USER_INPUT)."""


class ServerError(APIError):
    """The server failed (HTTP 5xx, or an answer that is not GraphQL) after all retries."""


class IntegrityError(WandbFilesError):
    """Bytes did not match the size or md5 the server recorded; nothing was written under the final name."""


class LocalFilesDifferError(WandbFilesError, ValueError):
    """Local files would be overwritten by different bytes, and neither `replace` nor `exist_ok` was given.

    Nothing was downloaded. A `ValueError` too, as W&B raises for one file.

    Attributes:
        paths: The local files that differ from the run's.
    """

    def __init__(self, paths: Sequence[Any]) -> None:
        self.paths = list(paths)
        shown = ", ".join(str(p) for p in self.paths[:5])
        more = f" and {len(self.paths) - 5} more" if len(self.paths) > 5 else ""
        super().__init__(
            f"{len(self.paths)} local files differ from the run's: {shown}{more}; "
            "pass replace=True to overwrite them or exist_ok=True to keep them."
        )


class BulkTransferError(WandbFilesError):
    """One or more files of a bulk transfer failed; all the others were transferred.

    Attributes:
        failures: `(file name, exception)` for each file that failed.
        results: what the transfers that succeeded returned (local paths for downloads).
        dataframe: from `download_files`, the table of the files that were downloaded; else None.
    """

    verb = "transfer"

    def __init__(
        self,
        failures: Sequence[tuple[str, BaseException]],
        results: Sequence[Any],
        dataframe: Any = None,
    ) -> None:
        self.failures = list(failures)
        self.results = list(results)
        self.dataframe = dataframe
        lines = [f"  {name}: {exc}" for name, exc in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  … and {len(self.failures) - 20} more")
        super().__init__(
            f"{len(self.failures)} of {len(self.failures) + len(self.results)} files failed to {self.verb}:\n"
            + "\n".join(lines)
        )


class DownloadError(BulkTransferError):
    """One or more files of a bulk download failed; the others were downloaded (`results` holds their paths)."""

    verb = "download"


class UploadError(BulkTransferError):
    """One or more files of a bulk upload failed; the others were uploaded."""

    verb = "upload"
