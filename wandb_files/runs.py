"""`Run` and `Runs`: a run and the runs of a project."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from wandb_files import queries, transfer
from wandb_files.errors import BadRequestError, DeleteError, IntegrityError, NotFoundError, ServerError, UploadError
from wandb_files.files import File, Files, check_names, delete_files
from wandb_files.paginator import Paginator, batches, check_per_page

if TYPE_CHECKING:
    from pathlib import Path

    from wandb_files.graphql import GraphQLClient


def _json_object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


class Run:
    """A run: its metadata and its files.

    Args:
        client: The GraphQL client (`Api.client`).
        entity: The entity (user or team) that owns the project.
        project: The project's name.
        run_id: The run's id (the last part of ``entity/project/run_id``).
        attrs: The run's attributes as the server sent them; fetched now when omitted.

    Raises:
        NotFoundError: `attrs` is omitted and the run does not exist.
    """

    def __init__(
        self,
        client: GraphQLClient,
        entity: str,
        project: str,
        run_id: str,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.entity = entity
        self.project = project
        self.id = run_id
        self._attrs: dict[str, Any] = dict(attrs) if attrs is not None else {}
        if attrs is None:
            self.load()

    def load(self) -> dict[str, Any]:
        """Fetch the run's attributes again and return them.

        Raises:
            NotFoundError: the project or the run does not exist.
        """
        data = self.client.execute(queries.RUN, {"entity": self.entity, "project": self.project, "name": self.id})
        self._attrs = dict(queries.run_in(data, self.entity, self.project, self.id))
        return self._attrs

    @property
    def name(self) -> str:
        """The run's display name (its id when it has none)."""
        return str(self._attrs.get("displayName") or self.id)

    @property
    def path(self) -> list[str]:
        """``[entity, project, run_id]``, as in W&B."""
        return [self.entity, self.project, self.id]

    @property
    def storage_id(self) -> str | None:
        """The run's opaque node id on the server."""
        return self._attrs.get("id")

    @property
    def project_id(self) -> int | None:
        """The integer id of the run's project."""
        value = self._attrs.get("projectId")
        return int(value) if value is not None else None

    @property
    def state(self) -> str | None:
        """``running``, ``finished``, ``crashed`` or ``failed``."""
        return self._attrs.get("state")

    @property
    def config(self) -> dict[str, Any]:
        """The run's config."""
        return _json_object(self._attrs.get("config"))

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary metrics."""
        return _json_object(self._attrs.get("summaryMetrics"))

    @property
    def created_at(self) -> str | None:
        """When the run was created (ISO-8601)."""
        return self._attrs.get("createdAt")

    def __repr__(self) -> str:
        return f"<Run {'/'.join(self.path)} ({self.state or 'unknown'})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and self.path == other.path and self.client is other.client

    def __hash__(self) -> int:
        return hash(tuple(self.path))

    def files(
        self,
        names: Iterable[str] | None = None,
        per_page: int = 50,
        upload: bool = False,
        pattern: str | None = None,
    ) -> Files:
        """The run's files, fetched lazily page by page.

        Args:
            names: Only these file names (None for all).
            per_page: How many files one request fetches (1 to 10,000).
            upload: Ask for upload URLs in `File.url` instead of download URLs.
            pattern: Only names matching this SQL LIKE pattern, e.g. ``%.json``; not with `names`.

        Returns:
            A lazy `Files` collection; nothing is fetched until it is used.

        Raises:
            TypeError, ValueError: bad `names`, `pattern` or `per_page`.
        """
        return Files(self.client, self, names=names, per_page=per_page, upload=upload, pattern=pattern)

    def file(self, name: str) -> File:
        """The file called `name`.

        Raises:
            TypeError: `name` is not a string.
            NotFoundError: the run has no such file.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {type(name).__name__}")
        found = self.files(names=[name], per_page=1)
        for file in found:
            if file.name == name:
                return file
        raise NotFoundError(f"Run {'/'.join(self.path)} has no file {name!r}")

    def upload_file(self, path: str | os.PathLike[str], root: str | os.PathLike[str] = ".") -> File:
        """Upload a local file to the run; its name in the run is `path` relative to `root`.

        Uploading a name that exists replaces that file.

        Args:
            path: The local file.
            root: The folder names are relative to. Defaults to ".".

        Returns:
            The uploaded file as the server now lists it (its md5 checked against the bytes sent).

        Raises:
            TypeError: `path` or `root` is not a path.
            ValueError: `path` is not a file, or is not inside `root`.
            IntegrityError: the server stored bytes with another md5 than the ones sent.
            APIError, TransportError: the server refused or could not be reached.
        """
        try:
            return self.upload_files([path], root, max_workers=1, progress=False)[0]
        except UploadError as exc:
            raise exc.failures[0][1] from None

    def upload_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        root: str | os.PathLike[str] = ".",
        *,
        max_workers: int | None = None,
        progress: bool | None = None,
        max_bandwidth: float | str | None = None,
    ) -> list[File]:
        """Upload many local files to the run in parallel; each name is its path relative to `root`.

        Every path is checked before anything is sent. URLs are signed in batches, the bytes go up in parallel,
        and each stored file's md5 is checked against the bytes sent. A name is the path as given relative to
        `root`: a symbolic link is stored under its own name (with its target's bytes), and a link pointing
        outside `root` is refused. A file that grows while it is sent (a live log) is uploaded as it was when
        its upload started. When the server signs uploads for their size and md5 (S3 with
        SIGNED_UPLOAD_CHECKSUMS), each file is read once before its URL is asked for and exactly those bytes
        are sent: a file that grew meanwhile still sends its signed prefix, one rewritten meanwhile is refused
        by the bucket.

        Args:
            paths: The local files.
            root: The folder names are relative to. Defaults to ".".
            max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
            progress: A progress bar for bytes and files; None shows it on terminals only.
            max_bandwidth: Bytes per second across all transfers (a number, or ``"5MB"``, ``"4MiB"``); default
                `WANDB_FILES_MAX_BANDWIDTH`, else no limit.

        Returns:
            The uploaded files as the server now lists them, in the order of `paths`.

        Raises:
            TypeError: `paths` is a single path, or holds something that is not a path.
            ValueError: a path is not a file, not inside `root` or a link to outside it, gives a name the server
                would refuse, or two paths give the same name; or `max_bandwidth` is not a positive bandwidth.
            UploadError: some files failed (the others were uploaded; `error.results` holds them as `File`).
        """
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("paths must be a list of paths; use upload_file() for one")
        bandwidth = transfer.check_max_bandwidth(max_bandwidth)
        planned, _ = transfer.plan_uploads(paths, root)
        local = [path for path, _ in planned]
        names = [name for _, name in planned]
        if not names:
            return []
        specs = self._file_specs(planned, max_workers) if self.client.feature_enabled("SIGNED_UPLOAD_CHECKSUMS") else {}
        urls, headers, file_headers = self._create_run_files(names, specs)
        jobs = [
            transfer.UploadJob(
                urls[name],
                path,
                name,
                specs[name][0] if name in specs else path.stat().st_size,
                {**headers, **file_headers.get(name, {})},  # per file: a signed Content-MD5 is this file's own
                resign=partial(self._resign, name, specs.get(name)),
                declared=name in specs,  # send exactly the bytes the URL was signed for
            )
            for path, name in zip(local, names, strict=True)
        ]
        failures: list[tuple[str, BaseException]] = []
        try:
            sent = dict(
                zip(
                    names,
                    transfer.upload_many(
                        self.client, jobs, max_workers=max_workers, progress=progress, max_bandwidth=bandwidth
                    ),
                    strict=True,
                )
            )
        except UploadError as exc:
            failures = exc.failures
            failed = {name for name, _ in failures}
            sent = dict(zip([n for n in names if n not in failed], exc.results, strict=True))
        if sent and self.client.feature_enabled("MARK_RUN_FILES_UPLOADED"):
            # Presigned uploads go straight to a bucket: the server commits them when told they arrived.
            for name, error in self._mark_uploaded(list(sent)):
                failures.append((name, error))
                del sent[name]
        stored = self._files_named(list(sent))
        uploaded = []
        for name in names:
            if name not in sent:
                continue
            file = stored.get(name)
            if file is None:
                failures.append(
                    (
                        name,
                        NotFoundError(
                            f"{name}: uploaded, but the server no longer lists it (deleted by someone else meanwhile?)"
                        ),
                    )
                )
            elif file.md5 and file.md5 != sent[name][1]:
                failures.append(
                    (name, IntegrityError(f"{name}: the server stored md5 {file.md5}, but {sent[name][1]} was sent"))
                )
            else:
                uploaded.append(file)
        if failures:
            raise UploadError(sorted(failures, key=lambda item: item[0]), uploaded)
        return uploaded

    def _file_specs(self, planned: list[tuple[Path, str]], max_workers: int | None) -> dict[str, tuple[int, str]]:
        """(size, base64 md5) of each file by name, read now: the server signs each URL for exactly these
        bytes (a file that changes before its PUT is refused by the bucket)."""

        def spec(item: tuple[Path, str]) -> tuple[str, tuple[int, str]]:
            path, name = item
            size = path.stat().st_size
            return name, (size, transfer.md5_base64(transfer.file_md5(path)))

        with ThreadPoolExecutor(min(transfer.check_max_workers(max_workers), len(planned))) as pool:
            return dict(pool.map(spec, planned))

    def _upload_urls(self, names: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """Signed upload URLs for `names`, asked for in batches, and the headers the PUTs need."""
        urls, headers, _ = self._create_run_files(names, {})
        return urls, headers

    def _create_run_files(
        self, names: list[str], specs: dict[str, tuple[int, str]]
    ) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, str]]]:
        """Upload URLs for `names` in batches: the URLs, the headers of every PUT, and each file's own headers.
        Names in `specs` (size, base64 md5) get URLs signed for those bytes."""
        urls: dict[str, str] = {}
        headers: dict[str, str] = {}
        file_headers: dict[str, dict[str, str]] = {}
        for batch in batches(names):
            variables: dict[str, Any] = {"entity": self.entity, "project": self.project, "run": self.id, "files": batch}
            document = queries.CREATE_RUN_FILES
            if specs:
                document = queries.CREATE_RUN_FILES_WITH_SPECS
                variables["fileSpecs"] = [
                    {"name": n, "sizeBytes": specs[n][0], "md5": specs[n][1]} for n in batch if n in specs
                ]
            data = self.client.execute(document, variables, retry_safe=True)["createRunFiles"]  # it only signs URLs
            headers.update(h.split(":", 1) for h in data.get("uploadHeaders") or [] if ":" in h)
            for item in data["files"]:
                urls[item["name"]] = urljoin(self.client.base_url + "/", item["uploadUrl"])
                own = dict(h.split(":", 1) for h in item.get("uploadHeaders") or [] if ":" in h)
                if own:
                    file_headers[item["name"]] = own
        missing = [name for name in names if name not in urls]
        if missing:
            raise ServerError(f"the server signed no upload URL for {', '.join(missing[:5])}")
        return urls, headers, file_headers

    def _mark_uploaded(self, names: list[str]) -> list[tuple[str, Exception]]:
        """Tell the server these uploads arrived; return the names it could not commit, with why."""
        failed: list[tuple[str, Exception]] = []
        for batch in batches(names):
            try:
                self._mark(batch)
            except (NotFoundError, BadRequestError):
                for name in batch:  # find which upload never arrived, or was refused (not the declared size)
                    try:
                        self._mark([name])
                    except (NotFoundError, BadRequestError) as exc:
                        failed.append((name, exc))
        return failed

    def _mark(self, names: list[str]) -> None:
        self.client.execute(
            queries.MARK_RUN_FILES_UPLOADED,
            {"entity": self.entity, "project": self.project, "run": self.id, "files": names},
            retry_safe=True,  # committing an upload twice is harmless
        )

    def _resign(self, name: str, spec: tuple[int, str] | None = None) -> str:
        # Signed for the same spec as before: the job's Content-MD5 header stays right.
        return self._create_run_files([name], {name: spec} if spec else {})[0][name]

    def _files_named(self, names: list[str]) -> dict[str, File]:
        found: dict[str, File] = {}
        for batch in batches(names):
            found.update((f.name, f) for f in self.files(names=batch, per_page=len(batch)))
        return found

    def delete_files(self, names: Iterable[str]) -> list[File]:
        """Delete the files called `names` from the run, in batches (one request per 500 files).

        Args:
            names: The file names (read once).

        Returns:
            The deleted files, in the run's order.

        Raises:
            TypeError: `names` is a single string or holds something other than strings.
            DeleteError: some files were not deleted: names the run does not have fail with `NotFoundError`;
                the others were deleted (`error.results`).
        """
        wanted = check_names(names) or []
        found: list[File] = []
        for batch in batches(wanted):
            found += self.files(names=batch, per_page=len(batch))
        present = {f.name for f in found}
        missing = [
            (name, NotFoundError(f"Run {'/'.join(self.path)} has no file {name!r}"))
            for name in wanted
            if name not in present
        ]
        try:
            deleted = delete_files(self.client, found)
        except DeleteError as exc:
            raise DeleteError(sorted([*exc.failures, *missing], key=lambda item: item[0]), exc.results) from None
        if missing:
            raise DeleteError(missing, deleted)
        return deleted


class Runs(Paginator[Run]):
    """The runs of a project, newest first, fetched lazily page by page.

    Args:
        client: The GraphQL client (`Api.client`).
        entity: The entity that owns the project.
        project: The project's name.
        per_page: How many runs one request fetches (1 to 10,000).
        order: ``"-createdAt"`` (newest first, the default) or ``"+createdAt"``.
    """

    QUERY = queries.RUNS
    CURSOR_VARIABLE = "cursor"
    LIMIT_VARIABLE = "perPage"

    def __init__(
        self, client: GraphQLClient, entity: str, project: str, per_page: int = 50, order: str | None = None
    ) -> None:
        self.entity = entity
        self.project = project
        super().__init__(client, {"entity": entity, "project": project, "order": order}, per_page)

    def files(
        self, names: Iterable[str] | None = None, pattern: str | None = None, per_page: int = 50
    ) -> Iterator[File]:
        """The files of every run, run after run, fetched lazily (e.g. for `download_files`).

        Args:
            names: Only these file names in each run.
            pattern: Only names matching this SQL LIKE pattern, e.g. ``media/images/%``.
            per_page: How many files one request fetches.

        Returns:
            An iterator of `File`, each knowing its run.

        Raises:
            TypeError, ValueError: bad `names`, `pattern` or `per_page` (checked before any request).
        """
        selected = check_names(names)  # read once: a generator must filter every run, not just the first
        check_per_page(per_page)
        if selected is not None and pattern:
            raise ValueError("pass names or pattern, not both")
        return (file for run in self for file in run.files(names=selected, per_page=per_page, pattern=pattern))

    def _connection(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        return queries.project_in(data, self.entity, self.project)["runs"]  # type: ignore[no-any-return]

    def _total(self, data: Mapping[str, Any]) -> int | None:
        count = queries.project_in(data, self.entity, self.project).get("runCount")
        return int(count) if count is not None else None

    def _convert_node(self, node: Mapping[str, Any]) -> Run:
        return Run(self.client, self.entity, self.project, node["name"], attrs=node)

    def __repr__(self) -> str:
        return f"<Runs {self.entity}/{self.project} ({self._known_count()} runs)>"
