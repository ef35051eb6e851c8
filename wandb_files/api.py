"""`Api`: the entry point, configured like `wandb.Api()`."""

from __future__ import annotations

import logging
import netrc
import os
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wandb_files import documents
from wandb_files.errors import AuthenticationError, ConfigurationError, MissingApiKeyError, NotFoundError
from wandb_files.graphql import GraphQLClient
from wandb_files.projects import Projects
from wandb_files.runs import DEFAULT_RUN_ORDER, Run, Runs, check_mapping, check_tags, json_text, wrap_config

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
DEFAULT_TIMEOUT = 30.0
_PART = re.compile(r"^[^/\s:]+$")
_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits
_PATH_FORMS = "entity/project/run_id, entity/project/runs/run_id, entity/project:run_id or project/run_id"


def _netrc_key(host: str) -> tuple[str, str] | None:
    """The password for `host` in the netrc file, with where it was found."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError) as exc:  # as the wandb client: a warning, no key
        log.warning("ignoring %s: %s", path, exc)
        return None
    if entry and entry[2]:
        return entry[2], f"{path} (machine {host})"
    return None


def _checked_key(key: str, source: str) -> tuple[str, str]:
    # HTTP Basic credentials are ASCII; anything else would fail deep inside the transport.
    if not key.isascii() or not key.isprintable() or any(ch.isspace() for ch in key):
        raise ConfigurationError(
            f"the API key from {source} has characters an API key cannot have (only printable ASCII without "
            "spaces); check that it was copied whole and nothing else with it"
        )
    return key, source


def resolve_key(api_key: str | None, base_url: str) -> tuple[str, str]:
    """The API key to use and where it came from: `api_key`, else ``WANDB_API_KEY``, else ~/.netrc for the host.

    Raises:
        TypeError: `api_key` is not a string.
        MissingApiKeyError: no key was found (or `api_key` is empty).
    """
    if api_key is not None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a string, not {type(api_key).__name__}")
        if not api_key.strip():
            raise MissingApiKeyError("api_key is empty")
        return _checked_key(api_key.strip(), "the api_key argument")
    if os.environ.get("WANDB_API_KEY", "").strip():
        return _checked_key(os.environ["WANDB_API_KEY"].strip(), "the WANDB_API_KEY environment variable")
    host = urlsplit(base_url).hostname or ""
    found = _netrc_key(host)
    if found:
        return _checked_key(*found)
    raise MissingApiKeyError(
        f"No API key for {base_url}: pass Api(api_key=...), set WANDB_API_KEY, "
        f"or add 'machine {host} login user password <key>' to ~/.netrc."
    )


def check_base_url(base_url: object) -> str:
    """The server's base URL as the client uses it: no trailing slash, no ``/graphql`` endpoint at the end.

    Raises:
        TypeError: `base_url` is not a string.
        ConfigurationError: it is not an http(s) URL with a host.
    """
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    text = base_url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError:  # `http://[::1` (an unclosed IPv6 address), `http://host:99999`
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
    text = text.rstrip("/")
    # W&B's GraphQL endpoint is {base_url}/graphql; a URL of the endpoint itself means its base.
    return text.removesuffix("/graphql").rstrip("/") if text.endswith("/graphql") else text


class Api:
    """A connection to a W&B (or `wandb-files server`) API.

    Args:
        api_key: The API key. Defaults to `WANDB_API_KEY`, then the `~/.netrc` entry for the base URL's host.
        base_url: The server. Defaults to `overrides["base_url"]`, then `WANDB_BASE_URL`, then
            ``https://api.wandb.ai``.
        timeout: Seconds to wait for the server to answer one request.
        overrides: W&B-style defaults: ``entity``, ``project`` and ``base_url``.

    Raises:
        ConfigurationError: no API key could be found, or the base URL is not an http(s) URL.
        TypeError: an argument has the wrong type.

    Nothing is sent until the first call that needs the server.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(f"overrides must be a dict, not {type(overrides).__name__}")
        self.settings: dict[str, Any] = dict(overrides or {})
        self.base_url = check_base_url(
            base_url or self.settings.get("base_url") or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
        )
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        key, source = resolve_key(api_key, self.base_url)
        self.client = GraphQLClient(self.base_url, key, timeout=float(timeout or DEFAULT_TIMEOUT), key_source=source)

    def __repr__(self) -> str:
        viewer = self.__dict__.get("viewer")  # only if already fetched: a repr sends nothing
        return f"<Api {self.base_url}" + (f" as {viewer['username']}>" if viewer else ">")

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.client.close()

    @cached_property
    def viewer(self) -> dict[str, Any]:
        """The user the API key belongs to (``id``, ``username``, ``entity``, …).

        Raises:
            AuthenticationError: the key was not accepted.
        """
        viewer = self.client.execute(documents.VIEWER).get("viewer")
        if viewer is None:
            raise AuthenticationError(
                f"{self.base_url} did not accept the API key from {self.client.key_source}.", status_code=401
            )
        return dict(viewer)

    @property
    def default_entity(self) -> str:
        """The entity used when a path leaves it out: `overrides["entity"]`, else the key's own."""
        return str(self.settings.get("entity") or os.environ.get("WANDB_ENTITY") or self.viewer["entity"])

    def parse_run_path(self, path: str) -> tuple[str, str, str]:
        """Split a run path into ``(entity, project, run_id)`` without asking the server about the run.

        Args:
            path: Any form `run()` accepts.

        Raises:
            TypeError: `path` is not a string.
            ValueError: `path` is not one of the accepted forms.
        """
        if not isinstance(path, str):
            raise TypeError(f"path must be a string like 'entity/project/run_id', not {type(path).__name__}")
        text = path.strip()
        parts_url = urlsplit(text)
        if parts_url.scheme in ("http", "https"):
            text = parts_url.path
        parts = list(text.strip("/").split("/"))
        if len(parts) >= 4 and parts[2] == "runs":
            # entity/project/runs/run_id, and a web URL's tab after it: /overview, /files, /logs, …
            parts = [parts[0], parts[1], parts[3]]
        elif len(parts) == 2 and ":" in parts[1]:
            parts = [parts[0], *parts[1].split(":", 1)]
        elif len(parts) == 2:
            parts = [self.default_entity, *parts]
        elif len(parts) == 1 and self.settings.get("project"):
            parts = [self.default_entity, self.settings["project"], parts[0]]
        if len(parts) != 3 or not all(_PART.match(p) for p in parts):
            raise ValueError(f"run path {path!r} is not one of: {_PATH_FORMS}")
        return parts[0], parts[1], parts[2]

    def _split_project_path(self, path: str | None) -> tuple[str, str]:
        if path is None:
            path = self.settings.get("project")
            if not path:
                raise ValueError("pass a project path like 'entity/project', or set overrides={'project': ...}")
        if not isinstance(path, str):
            raise TypeError(f"path must be a string like 'entity/project', not {type(path).__name__}")
        parts = path.strip().strip("/").split("/")
        if len(parts) == 1:
            parts = [self.default_entity, parts[0]]
        if len(parts) != 2 or not all(_PART.match(p) for p in parts):
            raise ValueError(f"project path {path!r} is not 'entity/project' or 'project'")
        return parts[0], parts[1]

    def run(self, path: str) -> Run:
        """The run at `path`.

        Args:
            path: ``entity/project/run_id``, ``entity/project/runs/run_id``, ``entity/project:run_id``,
                ``project/run_id`` (the default entity), or a run's web URL (any tab, e.g. ``…/files``).

        Returns:
            The run, with its attributes loaded.

        Raises:
            TypeError: `path` is not a string.
            ValueError: `path` is not one of the forms above.
            NotFoundError: the project or run does not exist.
            PermissionDeniedError: the key may not see that entity.
        """
        entity, project, run_id = self.parse_run_path(path)
        return Run(self.client, entity, project, run_id)

    def runs(
        self,
        path: str | None = None,
        filters: Mapping[str, Any] | None = None,
        order: str | None = DEFAULT_RUN_ORDER,
        per_page: int = 50,
    ) -> Runs:
        """The runs of a project that match `filters`, in `order`, fetched lazily (W&B's `Api.runs`).

        Args:
            path: ``entity/project`` or ``project`` (the default entity); defaults to `overrides["project"]`.
            filters: W&B's MongoDB-style filter document, e.g. ``{"config.model": "resnet", "state": "finished",
                "summary_metrics.acc": {"$gt": 0.5}}``. Keys: ``name`` (run id), ``display_name``, ``state``,
                ``tags``, ``group``, ``jobType``, ``created_at``, ``heartbeat_at``, ``username``,
                ``config.<key>``, ``summary_metrics.<key>`` (nested keys with dots). Operators: ``$and $or $nor
                $eq $ne $gt $gte $lt $lte $in $nin $exists $regex``. None for all runs.
            order: ``+`` (ascending) or ``-`` (descending) then ``created_at``, ``heartbeat_at``, ``name``,
                ``display_name``, ``config.<key>.value`` or ``summary_metrics.<key>``. Default ``"+created_at"``
                (oldest first), as in W&B.
            per_page: How many runs one request fetches (1 to 10,000).

        Returns:
            A lazy `Runs` collection; `len()` is the server's count of the matching runs.

        Raises:
            TypeError: `path` or `order` is not a string, or `filters` is not a dict.
            ValueError: a bad path or `per_page`, or a malformed filter document (unknown operator, a key that is
                not a string, a value that is not JSON, ...): the message names its place, e.g.
                ``filters["$and"][1]["config.lr"]["$gtt"]``.
            BadRequestError: (when used) the server refused the filter or the order.
        """
        entity, project = self._split_project_path(path)
        return Runs(self.client, entity, project, filters=filters, order=order, per_page=per_page)

    def projects(self, entity: str | None = None, per_page: int = 50) -> Projects:
        """The projects of an entity, by name, fetched lazily.

        Args:
            entity: The entity; defaults to `default_entity`.
            per_page: How many projects one request fetches (1 to 10,000).

        Returns:
            A lazy `Projects` collection; nothing is fetched until it is used.

        Raises:
            TypeError, ValueError: a bad `entity` or `per_page` (checked before any request).
            NotFoundError: (when used) no such entity, or one the key may not see: the server does not say which.
        """
        if entity is not None and (not isinstance(entity, str) or not _PART.match(entity)):
            raise ValueError(f"entity must be a non-empty name without '/', ':' or spaces, got {entity!r}")
        return Projects(self.client, entity or self.default_entity, per_page=per_page)

    def create_run(
        self,
        run_id: str | None = None,
        project: str | None = None,
        entity: str | None = None,
        *,
        display_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        notes: str | None = None,
    ) -> Run:
        """Create a run (and its project when missing), or return the existing run with that id.

        The metadata given is written either way (on an existing run, `config` and `summary` replace its own);
        what is not given is left as it is.

        Args:
            run_id: The run's id; a random 8-character one when omitted.
            project: The project; defaults to `overrides["project"]`, then ``"uncategorized"``.
            entity: The entity; defaults to `default_entity`.
            display_name: The run's display name.
            config: The config with plain values (``{"lr": 0.01}``); stored in W&B's ``{"value": ...}`` form.
            summary: The summary metrics.
            tags: The tags.
            group: The group.
            job_type: The job type.
            notes: The notes.

        Returns:
            The run.

        Raises:
            TypeError: an argument has the wrong type, or `config`/`summary` is not JSON-serialisable.
            ValueError: a bad `run_id`, `project` or `entity`.
            BadRequestError: the server refused a name or a value.
            NotFoundError: the key may not write to that entity.
        """
        for argument, value in (("run_id", run_id), ("project", project), ("entity", entity)):
            if value is not None and (not isinstance(value, str) or not _PART.match(value)):
                raise ValueError(f"{argument} must be a non-empty name without '/', ':' or spaces, got {value!r}")
        for argument, value in (
            ("display_name", display_name),
            ("group", group),
            ("job_type", job_type),
            ("notes", notes),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{argument} must be a string, not {type(value).__name__}")
        variables: dict[str, Any] = {
            "displayName": display_name,
            "groupName": group,
            "jobType": job_type,
            "notes": notes,
        }
        if config is not None:
            variables["config"] = json_text(wrap_config(check_mapping(config, "config")), "config")
        if summary is not None:
            variables["summaryMetrics"] = json_text(check_mapping(summary, "summary"), "summary")
        if tags is not None:
            variables["tags"] = check_tags(tags)
        run_id = run_id or "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(8))
        project = project or self.settings.get("project") or "uncategorized"
        entity = entity or self.default_entity
        bucket = self.client.execute(
            documents.UPSERT_RUN,
            {"name": run_id, "project": project, "entity": entity, **variables},
            retry_safe=True,  # upserting the same id with the same values twice is harmless
        )["upsertBucket"]["bucket"]
        if bucket is None:
            raise NotFoundError(f"the server did not create run {entity}/{project}/{run_id}")
        return Run(self.client, entity, project, bucket["name"], attrs=bucket)


#: The page size of `runs_of`'s run listings.
RUNS_PAGE = 1000


def runs_of(api: Api, source: str, *, filters: Mapping[str, Any] | None = None, order: str | None = None) -> Runs | Run:
    """The runs `source` names: the runs of a project (those `filters` selects, in `order`), or one run.

    Two parts (``a/b``) name the project when it exists, else run ``b`` of project ``a`` of the default entity;
    with `filters` or `order` they must name a project.

    Args:
        api: The `Api`.
        source: ``entity/project``, or a run path in any form `Api.run` takes.
        filters: A W&B filter document choosing runs of the project.
        order: The order of the project's runs (as `Api.runs` takes it).

    Returns:
        The project's runs (a lazy `Runs`; its count is already known), or the run.

    Raises:
        TypeError, ValueError: a bad `source`, a malformed filter, or `filters`/`order` with a run as the source.
        NotFoundError: neither a project nor a run by that path.
        BadRequestError: the server refused the filter or the order.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a run path or 'entity/project', not {type(source).__name__}")
    choosing = filters is not None or order is not None
    parts = source.strip().strip("/").split("/")
    if len(parts) == 2 and ":" not in source and "://" not in source:
        runs = api.runs(source, filters=filters, order=order, per_page=RUNS_PAGE)
        try:
            len(runs)  # one request: is there such a project? (and does the server take the filter?)
        except NotFoundError as exc:
            if choosing:  # a filter chooses runs of a project: no second reading
                raise NotFoundError(
                    f"no project {'/'.join(parts)} (filters and an order choose runs of a project)",
                    status_code=exc.status_code,
                    errors=exc.errors,
                ) from exc
        else:
            return runs
        try:
            return api.run(source)
        except NotFoundError as exc:  # name what was typed, in both readings, not only the second one's project
            typed = "/".join(parts)
            raise NotFoundError(
                f"found neither the project {typed} nor the run {api.default_entity}/{typed} "
                "(two parts are entity/project, else project/run_id of the default entity)",
                status_code=exc.status_code,
                errors=exc.errors,
            ) from exc
    if choosing:
        raise ValueError(
            f"filters and order choose runs of a project, and {source!r} names one run: give 'entity/project'"
        )
    return api.run(source)
