"""`Run` and `Runs`: a run and the runs of a project."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin

from wandb_files import documents, transfer
from wandb_files.errors import BadRequestError, DeleteError, IntegrityError, NotFoundError, ServerError, UploadError
from wandb_files.files import File, Files, check_names, delete_files
from wandb_files.filters import filters_json
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


#: Config keys W&B keeps for itself: not in `Run.config`, but written back as they were.
INTERNAL_CONFIG_KEYS = frozenset(("_wandb", "wandb_version"))


def unwrap_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A config as W&B's public API shows it: each ``{"value": v, "desc": ...}`` entry as ``v``.

    Entries in any other form are shown as they are; W&B's own keys (`INTERNAL_CONFIG_KEYS`) are left out.

    Args:
        raw: The config as stored, e.g. ``{"lr": {"value": 0.1, "desc": null}}``.

    Returns:
        The plain config, e.g. ``{"lr": 0.1}``.
    """
    return {
        key: entry["value"] if isinstance(entry, dict) and "value" in entry else entry
        for key, entry in raw.items()
        if key not in INTERNAL_CONFIG_KEYS
    }


def wrap_config(config: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A plain config in W&B's wire form, ``{"key": {"value": v, "desc": ...}}``, as W&B's client sends it.

    Args:
        config: The plain config.
        raw: The stored config it was read from: its W&B-internal entries are kept, and so is the ``desc``
            of each key.

    Returns:
        The wire form.
    """
    raw = raw or {}
    wrapped = {key: entry for key, entry in raw.items() if key in INTERNAL_CONFIG_KEYS}
    for key, value in config.items():
        entry = raw.get(key)
        desc = entry.get("desc") if isinstance(entry, dict) else None
        wrapped[key] = {"value": value, "desc": desc}
    return wrapped


def json_text(value: Mapping[str, Any], what: str) -> str:
    """`value` as JSON text for a ``JSONString`` variable.

    Raises:
        TypeError: it holds something JSON cannot say (`what` names it in the message).
    """
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None


def _check_text(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be a string or None, not {type(value).__name__}")
    return value


def check_tags(tags: object) -> list[str]:
    """`tags` as a list, if it is an iterable of non-empty strings (not a single string).

    Raises:
        TypeError: it is not.
    """
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a list of strings, not {type(tags).__name__}")
    checked = list(tags)
    for tag in checked:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags must be non-empty strings, got {tag!r}")
    return checked


def check_mapping(value: object, what: str) -> dict[str, Any]:
    """`value` as a dict, if it is a mapping with string keys (`what` names it in the message).

    Raises:
        TypeError: it is not.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be strings, got {key!r}")
    return dict(value)


# The run attributes a caller edits locally before `Run.update()` sends them.
_EDITABLE_ATTRS = frozenset(
    ("tags", "group", "jobType", "displayName", "notes", "description", "config", "summaryMetrics")
)


class RunUser(NamedTuple):
    """The user who created a run (W&B's ``run.user``: ``.name``, ``.username``)."""

    name: str | None
    username: str | None


class RunSummary(MutableMapping[str, Any]):
    """A run's summary metrics: a dict whose `update()` writes the whole summary back, as W&B's does.

    ``summary["k"] = v`` and ``del summary["k"]`` change only this copy; ``summary.update({...})`` or
    ``summary.update()`` sends the whole summary, which replaces the stored one. Nested values are plain dicts.
    """

    def __init__(self, run: Run, data: Mapping[str, Any]) -> None:
        self._run = run
        self._data: dict[str, Any] = copy.deepcopy(dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"summary keys must be strings, not {type(key).__name__}")
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Set keys (as `dict.update`), then write the whole summary to the server.

        Args:
            other: Keys and values to set, as a dict or pairs.
            **kwargs: More keys and values.

        Raises:
            TypeError: a key is not a string, or a value is not JSON-serialisable.
            APIError: the server refused the write.
        """
        super().update(other, **kwargs)
        self._run._write({"summaryMetrics": json_text(self._data, "run.summary")})


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
        self._config: dict[str, Any] | None = None
        self._summary: RunSummary | None = None
        # What the server has, to tell what `update()` must send: the text and tag fields, and the config and
        # summary once they are first read (most listed runs never are).
        self._baseline: dict[str, Any] = {}
        self._baseline_config: dict[str, Any] | None = None
        self._baseline_summary: dict[str, Any] | None = None
        if attrs is None:
            self.load()
        else:
            self._baseline = copy.deepcopy(self._editable())

    def load(self) -> dict[str, Any]:
        """Fetch the run's attributes again and return them; local edits not yet written are dropped.

        Raises:
            NotFoundError: the project or the run does not exist.
        """
        data = self.client.execute(documents.RUN, {"entity": self.entity, "project": self.project, "name": self.id})
        self._attrs = dict(documents.run_in(data, self.entity, self.project, self.id))
        self._config = None
        self._summary = None
        self._baseline = copy.deepcopy(self._editable())
        return self._attrs

    @property
    def name(self) -> str:
        """The run's display name (its id when it has none); setting it sets `display_name`."""
        return str(self._attrs.get("displayName") or self.id)

    @name.setter
    def name(self, value: str) -> None:
        self.display_name = value

    @property
    def display_name(self) -> str | None:
        """The run's display name, as the server has it (W&B's ``run.name``); `update()` writes a change."""
        return self._attrs.get("displayName")

    @display_name.setter
    def display_name(self, value: str | None) -> None:
        self._attrs["displayName"] = _check_text(value, "display_name")

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
        """``running``, ``finished``, ``crashed``, ``failed``, ``killed``, ``preempting``, ``preempted`` or ``pending``."""
        return self._attrs.get("state")

    @property
    def config(self) -> dict[str, Any]:
        """The run's config with plain values, as `wandb.Api` shows it; edit it, then call `update()`.

        Stored as W&B does (``{"lr": {"value": 0.1, "desc": null}}``), shown as ``{"lr": 0.1}``; W&B's own
        keys (``_wandb``, ``wandb_version``) are left out, and kept when the config is written back.
        """
        if self._config is None:
            self._config = unwrap_config(self._raw_config())
            self._baseline_config = copy.deepcopy(self._config)
        return self._config

    @config.setter
    def config(self, value: Mapping[str, Any]) -> None:
        checked = check_mapping(value, "config")
        _ = self.config  # what the server has, to compare with
        self._config = checked

    @property
    def summary(self) -> RunSummary:
        """The run's summary metrics: a dict whose ``update(...)`` writes the whole summary back, as W&B's does."""
        if self._summary is None:
            self._summary = RunSummary(self, _json_object(self._attrs.get("summaryMetrics")))
            self._baseline_summary = copy.deepcopy(self._summary._data)
        return self._summary

    @property
    def tags(self) -> list[str]:
        """The run's tags; edit the list or set a new one, then call `update()`."""
        tags = self._attrs.get("tags")
        if not isinstance(tags, list):
            tags = self._attrs["tags"] = list(tags or [])
        return tags

    @tags.setter
    def tags(self, value: Iterable[str]) -> None:
        self._attrs["tags"] = check_tags(value)

    @property
    def group(self) -> str | None:
        """The run's group; `update()` writes a change."""
        return self._attrs.get("group")

    @group.setter
    def group(self, value: str | None) -> None:
        self._attrs["group"] = _check_text(value, "group")

    @property
    def job_type(self) -> str | None:
        """The run's job type; `update()` writes a change."""
        return self._attrs.get("jobType")

    @job_type.setter
    def job_type(self, value: str | None) -> None:
        self._attrs["jobType"] = _check_text(value, "job_type")

    @property
    def notes(self) -> str | None:
        """The run's notes; `update()` writes a change."""
        return self._attrs.get("notes")

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._attrs["notes"] = _check_text(value, "notes")

    @property
    def description(self) -> str | None:
        """The run's description; `update()` writes a change."""
        return self._attrs.get("description")

    @description.setter
    def description(self, value: str | None) -> None:
        self._attrs["description"] = _check_text(value, "description")

    @property
    def created_at(self) -> str | None:
        """When the run was created (ISO-8601)."""
        return self._attrs.get("createdAt")

    @property
    def heartbeat_at(self) -> str | None:
        """When the run's process last reported (ISO-8601)."""
        return self._attrs.get("heartbeatAt")

    @property
    def user(self) -> RunUser | None:
        """The user who created the run (``.name``, ``.username``)."""
        user = self._attrs.get("user")
        return RunUser(user.get("name"), user.get("username")) if isinstance(user, Mapping) else None

    def update(self) -> None:
        """Write back what was changed since the run was read: config, tags, group, job type, display name,
        notes, description and summary, in one request (W&B's ``upsertBucket`` with the run's ``id``).

        Only the changed fields are sent, so a concurrent change to another field is kept. Setting a text field
        to None clears it. Nothing is sent when nothing changed.

        Raises:
            TypeError: the config or summary holds a value that is not JSON-serialisable.
            NotFoundError: the run no longer exists, or is not the key's to change.
            APIError: the server refused a value.
        """
        variables: dict[str, Any] = {
            field: "" if value is None else value
            for field, value in self._editable().items()
            if value != self._baseline.get(field)
        }
        if self._config is not None and self._config != self._baseline_config:
            variables["config"] = json_text(wrap_config(self._config, self._raw_config()), "run.config")
        if self._summary is not None and self._summary._data != self._baseline_summary:
            variables["summaryMetrics"] = json_text(self._summary._data, "run.summary")
        if variables:
            self._write(variables)

    def _raw_config(self) -> dict[str, Any]:
        return _json_object(self._attrs.get("config"))

    def _editable(self) -> dict[str, Any]:
        """The text and tag fields `update()` writes, by their input name, as this copy has them now."""
        return {
            "tags": self.tags,
            "groupName": self.group,
            "jobType": self.job_type,
            "displayName": self.display_name,
            "notes": self.notes,
            "description": self.description,
        }

    def _write(self, variables: Mapping[str, Any]) -> None:
        """Send `variables` (upsertBucket input fields) for this run; what was sent becomes what the server has."""
        if self.storage_id is None:
            self.load()
        bucket = self.client.execute(
            documents.UPDATE_RUN,
            {**variables, "id": self.storage_id},
            retry_safe=True,  # setting the same values twice is harmless
        )["upsertBucket"]["bucket"]
        if bucket is None:
            raise NotFoundError(f"Run {'/'.join(self.path)} not found")
        # Edits not sent yet (a summary write leaves a changed group for update()) stay this copy's own.
        self._attrs.update((k, v) for k, v in bucket.items() if k not in _EDITABLE_ATTRS)
        current = self._editable()
        for field in variables:
            if field in current:
                self._baseline[field] = copy.deepcopy(current[field])
        if "config" in variables:
            self._attrs["config"] = bucket.get("config")
            self._baseline_config = copy.deepcopy(self._config)
        if "summaryMetrics" in variables and self._summary is not None:
            self._attrs["summaryMetrics"] = bucket.get("summaryMetrics")
            self._baseline_summary = copy.deepcopy(self._summary._data)

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
        return self._upload_planned(planned, max_workers=max_workers, progress=progress, max_bandwidth=bandwidth)

    def upload_named(
        self,
        files: Iterable[tuple[str | os.PathLike[str], str]],
        *,
        max_workers: int | None = None,
        progress: bool | None = None,
        max_bandwidth: float | str | None = None,
    ) -> list[File]:
        """Upload local files to the run, each under the name given with it, in parallel.

        As `upload_files`, but each name is given rather than taken from a path relative to a root: a file
        may be stored under any name. A symbolic link is uploaded with the bytes of the file it points to,
        wherever that is (the caller named it). Every pair is checked before anything is sent.

        Args:
            files: ``(local path, name in the run)`` pairs.
            max_workers: Parallel transfers (default `WANDB_FILES_MAX_WORKERS`, else 32).
            progress: A progress bar for bytes and files; None shows it on terminals only.
            max_bandwidth: Bytes per second across all transfers (a number, or ``"5MB"``, ``"4MiB"``); default
                `WANDB_FILES_MAX_BANDWIDTH`, else no limit.

        Returns:
            The uploaded files as the server now lists them, in the order of `files`.

        Raises:
            TypeError: `files` holds something that is not a (path, name) pair.
            ValueError: a path is not a file (or links to nothing), a name is one the server would refuse, or
                two pairs give the same name; or `max_bandwidth` is not a positive bandwidth.
            UploadError: some files failed (the others were uploaded; `error.results` holds them as `File`).
        """
        bandwidth = transfer.check_max_bandwidth(max_bandwidth)
        planned = transfer.plan_named_uploads(files)
        return self._upload_planned(planned, max_workers=max_workers, progress=progress, max_bandwidth=bandwidth)

    def _upload_planned(
        self,
        planned: list[tuple[Path, str]],
        *,
        max_workers: int | None,
        progress: bool | None,
        max_bandwidth: float | None,
    ) -> list[File]:
        """Upload checked `(path, name)` pairs: sign URLs in batches, send in parallel, check each stored md5.

        Raises:
            UploadError: some files failed (the others were uploaded; `error.results` holds them as `File`).
        """
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
                        self.client, jobs, max_workers=max_workers, progress=progress, max_bandwidth=max_bandwidth
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
            document = documents.CREATE_RUN_FILES
            if specs:
                document = documents.CREATE_RUN_FILES_WITH_SPECS
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
            documents.MARK_RUN_FILES_UPLOADED,
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


#: W&B's default order of `Api.runs`: oldest first.
DEFAULT_RUN_ORDER = "+created_at"


def check_order(order: object) -> str:
    """The `order` W&B's client sends: as given, ``"+created_at"`` when empty.

    Raises:
        TypeError: `order` is not a string.
    """
    if order is None or order == "":
        return DEFAULT_RUN_ORDER
    if not isinstance(order, str):
        raise TypeError(f"order must be a string such as '-summary_metrics.acc', not {type(order).__name__}")
    return order


class Runs(Paginator[Run]):
    """The runs of a project that match a filter, in an order, fetched lazily page by page.

    Args:
        client: The GraphQL client (`Api.client`).
        entity: The entity that owns the project.
        project: The project's name.
        filters: W&B's filter document (see `Api.runs`); None for all runs.
        order: ``"+created_at"`` (oldest first, the default), ``"-created_at"``, ``"-summary_metrics.acc"``,
            ``"+config.lr.value"``, …
        per_page: How many runs one request fetches (1 to 10,000).

    Raises:
        TypeError, ValueError: a malformed `filters`, an `order` that is not a string, or a bad `per_page`.

    `len()` is the server's count of the matching runs (one request, no listing).
    """

    QUERY = documents.RUNS
    CURSOR_VARIABLE = "cursor"
    LIMIT_VARIABLE = "perPage"

    def __init__(
        self,
        client: GraphQLClient,
        entity: str,
        project: str,
        filters: Mapping[str, Any] | None = None,
        order: str | None = DEFAULT_RUN_ORDER,
        per_page: int = 50,
    ) -> None:
        self.entity = entity
        self.project = project
        self.filters: dict[str, Any] = json.loads(filters_json(filters))
        self.order = check_order(order)
        super().__init__(
            client,
            {"entity": entity, "project": project, "order": self.order, "filters": json.dumps(self.filters)},
            per_page,
        )

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
        return documents.project_in(data, self.entity, self.project)["runs"]  # type: ignore[no-any-return]

    def _total(self, data: Mapping[str, Any]) -> int | None:
        count = documents.project_in(data, self.entity, self.project).get("runCount")
        return int(count) if count is not None else None

    def _convert_node(self, node: Mapping[str, Any]) -> Run:
        return Run(self.client, self.entity, self.project, node["name"], attrs=node)

    def __repr__(self) -> str:
        return f"<Runs {self.entity}/{self.project} ({self._known_count()} runs)>"
