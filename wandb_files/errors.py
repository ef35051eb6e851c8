"""The exceptions of wandb_files: one hierarchy rooted in `WandbFilesError`.

Catch `WandbFilesError` to handle anything this package raises on purpose. Bad arguments are reported with
the built-in `ValueError`/`TypeError` (as W&B's own API does), before any request is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class WandbFilesError(Exception):
    """Base class of every error raised by wandb_files."""


class ConfigurationError(WandbFilesError):
    """The API key or base URL is missing or unusable."""


class MissingApiKeyError(ConfigurationError):
    """No API key was given or found (a `ConfigurationError`; the message lists where keys are looked for)."""


class NotGraphQLError(ConfigurationError):
    """The base URL answered with something that is not a GraphQL answer: a web page, plain text, a login page
    reached by a redirect, JSON of another shape. The base URL most likely names something other than the
    server's API (say its web page, ``http://host:port/web``); the message says which URL answered and what.

    Attributes:
        summary: What answered and how, without the advice (the CLI gives its own).
        status_code: The HTTP status of the answer.
        content_type: Its Content-Type header ("" when it had none).
        url: The address that answered (after redirects), without its query.
    """

    def __init__(self, summary: str, *, status_code: int, content_type: str, url: str) -> None:
        super().__init__(f"{summary}. Pass base_url= or set WANDB_BASE_URL.")
        self.summary = summary
        self.status_code = status_code
        self.content_type = content_type
        self.url = url


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
    """The server failed (HTTP 5xx) after all retries."""


class IntegrityError(WandbFilesError):
    """Bytes did not match the size or md5 the server recorded; nothing was written under the final name."""


class LocalFileChangedError(WandbFilesError):
    """A local file changed while it was being uploaded (it shrank, or was rewritten), so no consistent copy
    of it could be sent; nothing was stored. Upload it again once it is no longer being written."""


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
        #: What differs, without the advice (the CLI gives its own).
        self.summary = (
            f"{plural(len(self.paths), 'local file')} {'differs' if len(self.paths) == 1 else 'differ'} from "
            f"the run's: {shown}{more}"
        )
        super().__init__(f"{self.summary}; pass replace=True to overwrite them or exist_ok=True to keep them.")


class DestinationBusyError(WandbFilesError):
    """Another `sync` into the same destination is running; nothing was changed. Run again once it has finished.

    Attributes:
        destination: The mirror's folder.
    """

    def __init__(self, destination: Any) -> None:
        self.destination = destination
        super().__init__(f"another sync into {str(destination)!r} is running; run this one again when it has finished")


class MirrorConflictError(WandbFilesError, ValueError):
    """A `sync` would write a run's files into a folder that mirrors another run with the same id (of another
    project); nothing was changed. A `ValueError` too: the destination does not fit the source.

    Attributes:
        folder: The run folder already taken (``DEST/<run_id>``).
        owner: The run path it mirrors.
        run: The run path that was to be synced into it.
    """

    def __init__(self, folder: Any, owner: str, run: str) -> None:
        self.folder = folder
        self.owner = owner
        self.run = run
        super().__init__(
            f"{str(folder)!r} mirrors the run {owner}, not {run}: sync {run} into another folder "
            f"(or move {str(folder)!r} away first)"
        )


class ManifestError(WandbFilesError):
    """The mirror's manifest (``DEST/.wandb-files/manifest.db``) or its folder is in a state `sync` will not touch:
    a folder or a symbolic link in its place, or a file it cannot open or write (a full disk). Nothing the user
    owns was changed; the message names the path and what to do.

    Attributes:
        path: The manifest's path (or its folder's).
    """

    def __init__(self, path: Any, message: str) -> None:
        self.path = path
        super().__init__(message)


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


class DeleteError(BulkTransferError):
    """One or more files of a bulk delete failed; the others were deleted (`results` holds them)."""

    verb = "delete"


class Interrupted(KeyboardInterrupt):
    """A bulk transfer stopped on Ctrl-C (or SIGTERM in the CLI) before every file was done.

    A `KeyboardInterrupt`, so code that stops on Ctrl-C still does. Running transfers stopped at their next
    chunk, queued ones never started, and every download's temp file was kept: the same call resumes them.

    Attributes:
        results: what the transfers that had finished returned (local paths for downloads).
        failures: `(file name, exception)` for each file that had failed before the interruption.
        unfinished: how many files were neither finished nor failed.
    """

    def __init__(self, results: Sequence[Any], failures: Sequence[tuple[str, BaseException]], unfinished: int) -> None:
        self.results = list(results)
        self.failures = list(failures)
        self.unfinished = unfinished
        super().__init__(
            f"interrupted: {len(self.results)} finished, {len(self.failures)} failed, {unfinished} not done; "
            "temp files were kept, so running the same call again resumes"
        )


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``: a count with its noun."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def is_transient(exc: BaseException) -> bool:
    """Whether the same transfer may succeed if tried again later.

    Connection problems, server failures, rate limits, bytes that disagreed with the server's record and
    local files that were being written are; a refused name, a missing file or a refused key are not.
    """
    if isinstance(exc, (TransportError, ServerError, IntegrityError, LocalFileChangedError)):
        return True
    return isinstance(exc, APIError) and exc.status_code in (408, 429)
