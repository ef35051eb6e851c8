"""`File` and `Files`: the files of a run, as in `wandb.apis.public.files`."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, overload
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from wandb_files import documents, transfer
from wandb_files.errors import (
    BadRequestError,
    DeleteError,
    LocalFilesDifferError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from wandb_files.formatting import human_size, safe_name
from wandb_files.paginator import Paginator, batches

if TYPE_CHECKING:
    from wandb_files.graphql import GraphQLClient

_S3_VIRTUAL_HOST = re.compile(r"^(?P<bucket>[^.]+(?:\.[^.]+)*?)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com$")
_S3_PATH_HOST = re.compile(r"^s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com$")


class RunRef(Protocol):
    """What files need of their run: where it is, and its project's id (which deletes name). A `Run` is one."""

    @property
    def entity(self) -> str: ...

    @property
    def project(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def project_id(self) -> int | None: ...

    @property
    def path(self) -> list[str]: ...


class HasClient(Protocol):
    """Anything with a GraphQL client to download with, such as an `Api`."""

    @property
    def client(self) -> GraphQLClient: ...


class FileAttrs(BaseModel):
    """A file's metadata as the server sends it; unknown fields and nulls are tolerated.

    Both the GraphQL names (`sizeBytes`, `directUrl`, `updatedAt`) and the snake_case names of W&B's examples
    (`direct_url`, `updated_at`) are accepted.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    id: str | None = None
    url: str | None = None
    direct_url: str | None = Field(None, validation_alias=AliasChoices("directUrl", "direct_url"))
    size: int | None = Field(None, validation_alias=AliasChoices("sizeBytes", "size_bytes", "size"))
    md5: str | None = None
    mimetype: str | None = None
    updated_at: str | None = Field(None, validation_alias=AliasChoices("updatedAt", "updated_at"))

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


def s3_uri(url: str | None) -> str:
    """`s3://bucket/key` for an S3 URL (virtual-host or path style, or any presigned S3-compatible URL), else ''."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path).lstrip("/")
    virtual = _S3_VIRTUAL_HOST.match(host)
    if virtual and path:
        return f"s3://{virtual.group('bucket')}/{path}"
    presigned = any(k.lower() in ("x-amz-signature", "x-amz-credential") for k in parse_qs(parts.query))
    if (_S3_PATH_HOST.match(host) or presigned) and "/" in path:
        bucket, key = path.split("/", 1)
        return f"s3://{bucket}/{key}"
    return ""


class File:
    """A file saved to a run.

    Args:
        client: The GraphQL client (`Api.client`).
        attrs: The file's attributes: `name` and any of `id`, `url`, `directUrl`/`direct_url`, `sizeBytes`,
            `md5`, `mimetype`, `updatedAt`/`updated_at`.
        run: The run the file belongs to (needed by `delete()` and bulk downloads).

    Raises:
        ValueError: `attrs` has no usable `name` or a field of the wrong type.
    """

    def __init__(self, client: GraphQLClient, attrs: Mapping[str, Any], run: RunRef | None = None) -> None:
        try:
            self._attrs = FileAttrs.model_validate(dict(attrs))
        except ValidationError as exc:
            raise ValueError(f"invalid file attributes: {exc.errors(include_url=False)}") from None
        self.client = client
        self.run = run

    @property
    def id(self) -> str | None:
        """The file's node id on the server."""
        return self._attrs.id

    @property
    def name(self) -> str:
        """The file's path inside its run, e.g. ``media/images/pred_3_ab12.png``."""
        return self._attrs.name

    @property
    def url(self) -> str | None:
        """The download URL (needs the API key)."""
        return self._attrs.url

    @property
    def direct_url(self) -> str | None:
        """The storage URL: short-lived and signed, needs no key."""
        return self._attrs.direct_url

    @property
    def size(self) -> int:
        """The size in bytes (0 when the server did not say)."""
        return self._attrs.size or 0

    @property
    def md5(self) -> str | None:
        """The base64 md5 of the bytes, as W&B stores it."""
        return self._attrs.md5

    @property
    def mimetype(self) -> str | None:
        """The MIME type, e.g. ``image/png``."""
        return self._attrs.mimetype

    @property
    def updated_at(self) -> str | None:
        """When the file was last written, as the server's ISO-8601 string."""
        return self._attrs.updated_at

    @property
    def path_uri(self) -> str:
        """`s3://bucket/key` when the bytes live in an S3 bucket, else the empty string."""
        return s3_uri(self.direct_url)

    def __repr__(self) -> str:
        return f"<File {safe_name(self.name)} ({self.mimetype or 'unknown type'}, {human_size(self.size)})>"

    def _repr_html_(self) -> str:
        """A one-row table for Jupyter."""
        return _html_table([self])

    def to_dict(self) -> dict[str, Any]:
        """The file's metadata: id, name, size, mimetype, md5, updated_at and url (never the signed direct_url)."""
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "mimetype": self.mimetype,
            "md5": self.md5,
            "updated_at": self.updated_at,
            "url": self.url,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and (self.id, self.name) == (other.id, other.name) and self.id is not None

    def __hash__(self) -> int:
        return hash((self.id, self.name))

    def download(
        self,
        root: str | os.PathLike[str] = ".",
        replace: bool = False,
        exist_ok: bool = False,
        api: HasClient | None = None,
    ) -> TextIO:
        """Download the file to `root`/`name` and return it opened for reading, as W&B does.

        The bytes go to a temp file beside the target and are checked against the server's size and md5
        before they replace anything; an interrupted attempt is resumed and failures are retried.

        Args:
            root: The folder to save into (created if missing). Defaults to ".".
            replace: Overwrite a local file of the same name.
            exist_ok: If the local file exists, return it without downloading (unless `replace`).
            api: An `Api` (anything with a `client`) to download with; defaults to the file's own client.

        Returns:
            The downloaded file, opened in text mode (as `wandb` returns it); close it when done.

        A symbolic link at the target is a file that exists: `replace` replaces the link itself with the
        downloaded file and never writes to what it points to.

        Raises:
            ValueError: the file exists and neither `replace` nor `exist_ok` is set; or `root` (or a folder on
                the way to the target) is a file or a symbolic link; or the name would land outside `root`.
            IntegrityError: the bytes did not match the server's size or md5, after retries.
            APIError, TransportError: the server refused or could not be reached.
        """
        client = api.client if api is not None else self.client
        job = self.download_job(root)
        if os.path.lexists(job.target) and not replace:
            if exist_ok:
                return open(job.target)
            link = " (a symbolic link)" if job.target.is_symlink() else ""
            raise ValueError(
                f"File {str(job.target)!r}{link} already exists; pass replace=True to overwrite it "
                "or exist_ok=True to keep it as is."
            )
        transfer.download_one(client, job)
        return open(job.target)

    def download_job(
        self, root: str | os.PathLike[str] | transfer.Destination, label: str | None = None
    ) -> transfer.DownloadJob:
        """What downloading this file to `root`/`name` takes (for the bulk engine).

        Args:
            root: The folder, or a `transfer.Destination` over it (which checks each folder once for many files).
            label: How messages name the file; its name when omitted.

        Raises:
            ValueError: the name would land outside `root`, or the file has no url.
        """
        destination = root if isinstance(root, transfer.Destination) else transfer.Destination(root)
        target = destination.target(self.name)
        if not self.url:
            raise ValueError(f"file {self.name!r} has no download url")
        return transfer.DownloadJob(self.url, target, label or self.name, self._attrs.size, self.md5)

    def delete(self) -> None:
        """Delete the file (and its bytes) on the server.

        Raises:
            ValueError: the file has no id (it was built from attributes without one).
            NotFoundError: it was already deleted.
            PermissionDeniedError: the key may not delete it.
        """
        if not self.id:
            raise ValueError(f"file {self.name!r} has no id, so it cannot be deleted")
        _delete(self.client, [self])


def delete_files(client: GraphQLClient, files: Iterable[File]) -> list[File]:
    """Delete files on the server in batches of `BATCH_SIZE` ids, each batch in one `deleteFiles` call.

    The server deletes a batch all or nothing; a batch refused because one of its files is already gone is
    sent again file by file, so that every other file is still deleted and each failure is told apart.

    Args:
        client: The GraphQL client.
        files: The files (they need ids; read lazily, so a huge listing is never held whole).

    Returns:
        The deleted files, in order.

    Raises:
        DeleteError: some files were not deleted (each with its reason); the others were.
    """
    deleted: list[File] = []
    failures: list[tuple[str, BaseException]] = []
    for batch in batches(files):
        usable = []
        for file in batch:
            if file.id:
                usable.append(file)
            else:
                failures.append((file.name, ValueError(f"file {safe_name(file.name)!r} has no id")))
        for group in _by_project(usable):
            try:
                _delete(client, group)
                deleted += group
            except (NotFoundError, PermissionDeniedError, BadRequestError) as exc:
                if len(group) == 1:
                    failures.append((group[0].name, exc))
                    continue
                for file in group:  # find which files the refusal was about
                    try:
                        _delete(client, [file])
                        deleted.append(file)
                    except (NotFoundError, PermissionDeniedError, BadRequestError) as single:
                        failures.append((file.name, single))
            except (ServerError, TransportError) as exc:  # not retried: the outcome is unknown
                failures += [(file.name, exc) for file in group]
    if failures:
        raise DeleteError(failures, deleted)
    return deleted


def _by_project(files: list[File]) -> list[list[File]]:
    groups: dict[int | None, list[File]] = {}
    for file in files:
        groups.setdefault(file.run.project_id if file.run is not None else None, []).append(file)
    return list(groups.values())


def _delete(client: GraphQLClient, files: list[File]) -> None:
    project_id = files[0].run.project_id if files[0].run is not None else None
    client.execute(documents.DELETE_FILES, {"files": [f.id for f in files], "projectId": project_id})


def download_jobs(
    files: Iterable[File], root: str | os.PathLike[str], *, by_run: bool = False
) -> tuple[list[transfer.DownloadJob], list[tuple[str, BaseException]]]:
    """The download jobs for `files` under `root` (under `root`/<run id> with `by_run`), and the refused files.

    A file whose name would land outside `root` is refused, not fatal, so that the others still download.

    Raises:
        ValueError: `root` is a file; or `by_run` and a file has no run.
    """
    destination = transfer.Destination(root)
    by_run_id: dict[str, transfer.Destination] = {}
    jobs: list[transfer.DownloadJob] = []
    refused: list[tuple[str, BaseException]] = []
    for file in files:
        label = file.name
        try:
            base = destination
            if by_run:
                if file.run is None:
                    raise ValueError(f"file {file.name!r} has no run, so it has no <run_id> folder to go to")
                label = f"{file.run.id}/{file.name}"
                base = by_run_id.get(file.run.id) or by_run_id.setdefault(
                    file.run.id, transfer.Destination(destination.target(file.run.id, folder=True))
                )
            jobs.append(file.download_job(base, label))
        except ValueError as exc:  # a name (or run id) that would escape root
            if by_run and file.run is None:
                raise
            refused.append((label, exc))
    return jobs, refused


def _jobs_of(
    files: Iterable[File], destination: transfer.Destination, refused: list[tuple[str, BaseException]]
) -> Iterator[transfer.DownloadJob]:
    """The download jobs of `files` under `destination`, as they are read; names it cannot write go to `refused`."""
    for file in files:
        try:
            yield file.download_job(destination)
        except ValueError as exc:  # a name that would escape the destination
            refused.append((file.name, exc))


def _empty_folder(root: Path) -> bool:
    """Whether `root` is missing or an empty folder: no local file can differ from what a download brings."""
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False


def check_names(names: Iterable[str] | None) -> list[str] | None:
    """Validate a `names` filter, reading it exactly once (a generator is fine).

    Returns:
        The names, in order and without repeats; None when `names` is None (no filter).

    Raises:
        TypeError: `names` is a single string, not iterable, or holds something other than strings.
    """
    if names is None:
        return None
    if isinstance(names, (str, bytes)):
        raise TypeError("names must be a list of file names, not a single string; use names=[name]")
    try:
        result = list(names)
    except TypeError:
        raise TypeError(f"names must be a list of file names, not {type(names).__name__}") from None
    for name in result:
        if not isinstance(name, str):
            raise TypeError(f"names must hold strings, got {type(name).__name__}: {name!r}")
    return list(dict.fromkeys(result))


class Files(Paginator[File]):
    """The files of a run, fetched page by page as they are used.

    Args:
        client: The GraphQL client (`Api.client`).
        run: The run whose files these are.
        names: Only these file names (None or [] for all).
        per_page: How many files one request fetches (1 to 10,000).
        upload: Ask for upload URLs instead of download URLs in `File.url`.
        pattern: Only names matching this SQL LIKE pattern (``%`` any run, ``_`` one character),
            e.g. ``media/%.png``. Cannot be combined with `names`.

    Raises:
        TypeError: `names` is not a list of strings, `pattern` not a string, or `per_page` not an int.
        ValueError: `names` and `pattern` are both given, or `per_page` is out of range.

    `len(files)` is exact for the filtered collection (W&B's client returns the whole run's count). An empty
    `names` selects no file (W&B's client would list the whole run): a filter computed to be empty never
    turns into "every file", say in a delete loop.
    """

    QUERY = documents.RUN_FILES
    CURSOR_VARIABLE = "fileCursor"
    LIMIT_VARIABLE = "fileLimit"

    def __init__(
        self,
        client: GraphQLClient,
        run: RunRef,
        names: Iterable[str] | None = None,
        per_page: int = 50,
        upload: bool = False,
        pattern: str | None = None,
    ) -> None:
        selected = check_names(names)
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a string, not {type(pattern).__name__}")
        if selected is not None and pattern:
            raise ValueError("pass names or pattern, not both")
        self.names = selected or []
        self.run = run
        self.pattern = pattern or None
        self.upload = bool(upload)
        super().__init__(
            client,
            {
                "project": run.project,
                "entity": run.entity,
                "name": run.id,
                "fileNames": self.names,
                "upload": self.upload,
                "pattern": self.pattern,
            },
            per_page,
        )
        if selected is not None and not selected:
            self._mark_empty()

    @overload
    def download(
        self,
        root: str | os.PathLike[str] = ".",
        replace: bool = False,
        exist_ok: bool = False,
        max_workers: int | None = None,
        progress: bool | None = None,
        *,
        max_bandwidth: float | str | None = None,
        dry_run: Literal[False] = False,
    ) -> list[Path]: ...

    @overload
    def download(
        self,
        root: str | os.PathLike[str] = ".",
        replace: bool = False,
        exist_ok: bool = False,
        max_workers: int | None = None,
        progress: bool | None = None,
        *,
        max_bandwidth: float | str | None = None,
        dry_run: Literal[True],
    ) -> list[transfer.DryRunFile]: ...

    def download(
        self,
        root: str | os.PathLike[str] = ".",
        replace: bool = False,
        exist_ok: bool = False,
        max_workers: int | None = None,
        progress: bool | None = None,
        *,
        max_bandwidth: float | str | None = None,
        dry_run: bool = False,
    ) -> list[Path] | list[transfer.DryRunFile]:
        """Download every file of the collection to `root`, in parallel, each verified and renamed atomically.

        A local file that already holds the same bytes (size and md5) is never downloaded again. Into a folder
        that is new or empty, or with `replace` or `exist_ok`, files start downloading as soon as the first
        page of the listing arrives and later pages are fetched meanwhile (the listing is never held whole);
        into a folder that holds files, the whole listing is checked first, so that a differing local file
        stops the call before anything is fetched.

        Args:
            root: The folder to save into; names keep their folders (``media/a.png`` → ``root/media/a.png``).
            replace: Overwrite local files that differ.
            exist_ok: Keep local files that exist, whatever they hold.
            max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
            progress: A progress bar for bytes and files; None shows it on terminals only
                (`WANDB_FILES_DISABLE_PROGRESS=1` turns it off).
            max_bandwidth: Bytes per second across all transfers (a number, or ``"5MB"``, ``"4MiB"``); default
                `WANDB_FILES_MAX_BANDWIDTH`, else no limit.
            dry_run: Write nothing; return what the call would download, skip or refuse.

        Returns:
            The local paths, in the collection's order (skipped files included); with `dry_run`, one
            `DryRunFile` a file (its action, path, size and the reason for a skip or a refusal).

        Raises:
            LocalFilesDifferError: local files differ and neither `replace` nor `exist_ok` is set (nothing is
                downloaded; a `ValueError`).
            ValueError: `root` is a file, or `max_bandwidth` is not a positive bandwidth.
            DownloadError: some files failed (or had names that would land outside `root`); all others were
                downloaded, and their paths are in `error.results`.
            Interrupted: Ctrl-C; finished files stay, temp files are kept for the next call.
        """
        bandwidth = transfer.check_max_bandwidth(max_bandwidth)
        destination = transfer.Destination(root)
        refused: list[tuple[str, BaseException]] = []
        if dry_run:
            return transfer.plan_downloads(
                _jobs_of(self, destination, refused), refused, replace=replace, exist_ok=exist_ok
            )
        engine = transfer.choose_engine(self.client)
        if replace or exist_ok or _empty_folder(destination.root):
            targets: list[Path] = []

            def todo() -> Iterator[transfer.DownloadJob]:
                for job in _jobs_of(self, destination, refused):
                    targets.append(job.target)
                    if replace or not os.path.lexists(job.target):
                        yield job
                    elif not exist_ok and not transfer.local_copy_matches(job.target, job.size, job.md5):
                        refused.append((job.name, LocalFilesDifferError([job.target])))  # written meanwhile

            transfer.download_many(
                self.client, todo(), engine=engine, max_workers=max_workers, progress=progress, refused=refused,
                max_bandwidth=bandwidth,
            )  # fmt: skip
            return targets
        jobs = list(_jobs_of(self, destination, refused))
        listed, conflicts = [], []
        for job in jobs:
            if not os.path.lexists(job.target):
                listed.append(job)
            elif not transfer.local_copy_matches(job.target, job.size, job.md5):
                conflicts.append(job.target)
        if conflicts:
            raise LocalFilesDifferError(conflicts)
        transfer.download_many(
            self.client, listed, engine=engine, max_workers=max_workers, progress=progress, refused=refused,
            max_bandwidth=bandwidth,
        )  # fmt: skip
        return [job.target for job in jobs]

    def delete(self) -> list[File]:
        """Delete every file of the collection on the server, in batches of 500 (one request each).

        The listing is read page by page as the batches go, so a huge run is never held whole.

        Returns:
            The deleted files.

        Raises:
            DeleteError: some files were not deleted (each with its reason, `error.results` the deleted ones).
        """
        return delete_files(self.client, iter(self))

    def _connection(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        files: Mapping[str, Any] = _run_of(data, self.run)["files"]
        return files

    def _total(self, data: Mapping[str, Any]) -> int | None:
        if self.names or self.pattern:
            return None  # fileCount counts the whole run
        count = _run_of(data, self.run).get("fileCount")
        return int(count) if count is not None else None

    def _convert_node(self, node: Mapping[str, Any]) -> File:
        return File(self.client, node, self.run)

    def __repr__(self) -> str:
        filters = f" names={self.names!r}" if self.names else f" pattern={self.pattern!r}" if self.pattern else ""
        return f"<Files {'/'.join(self.run.path)}{filters} ({self._known_count()} files)>"

    def _repr_html_(self) -> str:
        """The first page as a table, for Jupyter (fetches that page if nothing was fetched yet)."""
        if self._last_page is None:
            self._load_page()
        shown = self.objects[:_HTML_ROWS]
        rest = self._known_count()
        caption = f"{html.escape(repr(self))}"
        more = "" if not self.more and len(self.objects) <= _HTML_ROWS else f"<p>showing {len(shown)} of {rest}</p>"
        return f"<p>{caption}</p>{_html_table(shown)}{more}"

    def to_pandas(self) -> Any:
        """Every file's metadata as a pandas DataFrame (one row a file; fetches all pages).

        Raises:
            ImportError: pandas is not installed (``pip install 'wandb-files[pandas]'``).
        """
        try:
            import pandas
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'wandb-files[pandas]'") from None
        columns = ["id", "name", "size", "mimetype", "md5", "updated_at", "url"]
        return pandas.DataFrame([f.to_dict() for f in self], columns=columns)


def _run_of(data: Mapping[str, Any], run: RunRef) -> Mapping[str, Any]:
    return documents.run_in(data, run.entity, run.project, run.id)


_HTML_ROWS = 20


def _html_table(files: list[File]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("name", "size", "mimetype", "updated", "md5"))
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (safe_name(f.name), human_size(f.size), f.mimetype or "", f.updated_at or "", f.md5 or "")
        )
        + "</tr>"
        for f in files
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
