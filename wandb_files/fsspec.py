"""`wandb://entity/project/run_id/<file name>`: the files of W&B runs as an fsspec filesystem.

    import pandas
    frame = pandas.read_csv("wandb://entity/project/run_id/tables/metrics.csv")  # key as Api() finds it

    from wandb_files.fsspec import WandbFileSystem
    fs = WandbFileSystem(api_key=..., base_url=...)
    fs.ls("entity/project")                             # its runs
    fs.glob("entity/project/run_id/media/**/*.png")     # the literal prefix filters on the server
    fs.glob("entity/project/*/media/images/*.png")      # over every run of the project

    chosen = WandbFileSystem(run_filters={"state": "finished", "config.model": "resnet"})
    chosen.glob("entity/project/*/metrics.csv")         # over the runs the filter selects only
    with fs.open("entity/project/run_id/model.ckpt", "rb") as f:
        f.seek(1 << 20); header = f.read(64)           # one ranged GET, not the whole file

Levels: entities (the key's own and its teams) → projects → runs → files, whose names may hold ``/`` and so
make pseudo-folders. Everything goes through the SDK: listings through `Api`/`Run.files` (with the LIKE
`pattern` the server filters by), reads through ranged GETs on the file's ``url``, downloads through the bulk
engine (`transfer.download_many`: parallel, verified, atomic), uploads through `Run.upload_named`, deletes
through `files.delete_files`.

The filesystem keeps one listing cache per run: what it has listed (a whole run, or every name under a
prefix) answers `ls`, `info`, `find` and `glob` again without a request, until `invalidate_cache()`. Its own
writes and deletes update that cache; other clients' changes are seen after `invalidate_cache()` (or with
``use_listings_cache=False``, or ``listings_expiry_time=`` seconds).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import contextvars
import errno
import hashlib
import hmac
import inspect
import io
import json
import os
import re
import stat
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from glob import has_magic
from pathlib import Path
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.config import apply_config
from fsspec.implementations.local import make_path_posix
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem, _Cached
from fsspec.utils import glob_translate, isfilelike

from wandb_files import transfer
from wandb_files.api import DEFAULT_BASE_URL, Api, check_base_url, resolve_key
from wandb_files.errors import (
    AuthenticationError,
    ConfigurationError,
    DeleteError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    UploadError,
)
from wandb_files.files import File, delete_files
from wandb_files.filters import filters_json
from wandb_files.formatting import safe_name
from wandb_files.http import HTTPResponse
from wandb_files.patterns import like_prefix
from wandb_files.runs import Run
from wandb_files.transfer.hashing import md5_matches, remote_changed

__all__ = ["WandbFile", "WandbFileSystem"]

#: How many files one listing request asks for (the CLI's page size too).
LISTING_PAGE = 1000
#: The read-ahead of a file opened for reading: a small read moves at most this much more than it asked for.
DEFAULT_READ_BLOCK = 1 << 20
_RUN_DEPTH = 3  # entity/project/run_id


def _parts(path: str) -> list[str]:
    return path.split("/") if path else []


def _first_magic(text: str) -> int:
    """Where the first glob character of `text` is (its length when it has none)."""
    found = [i for i in (text.find("*"), text.find("?"), text.find("[")) if i >= 0]
    return min(found) if found else len(text)


def _dir_info(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory", "md5": None, "mimetype": None, "updated_at": None, **extra}


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """The SDK's answers as fsspec's conventions want them: missing is FileNotFoundError, refused is
    PermissionError (the server answers another user's entity as a missing one)."""
    try:
        yield
    except NotFoundError as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc), path) from exc
    except (AuthenticationError, PermissionDeniedError) as exc:
        raise PermissionError(errno.EACCES, str(exc), path) from exc


class _RunListing:
    """What the filesystem knows of one run's files.

    `complete` holds the name prefixes whose every file is in `files` ("" for the whole run): a lookup under
    one of them needs no request, and a name missing there is known to be missing.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.files: dict[str, File] = {}
        self.complete: set[str] = set()
        self.made = time.monotonic()
        self._names: list[str] | None = None  # sorted, rebuilt after a change
        self._children: dict[str, list[dict[str, Any]]] = {}

    def covers(self, prefix: str) -> bool:
        return any(prefix.startswith(known) for known in self.complete)

    def names_under(self, prefix: str) -> list[str]:
        if self._names is None:
            self._names = sorted(self.files)
        found = []
        for index in range(bisect.bisect_left(self._names, prefix), len(self._names)):
            name = self._names[index]
            if not name.startswith(prefix):
                break
            found.append(name)
        return found

    def changed(self) -> None:
        self._names = None
        self._children.clear()

    def add(self, files: Iterable[File]) -> None:
        for file in files:
            self.files[file.name] = file
        self.changed()

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            self.files.pop(name, None)
        self.changed()

    def listed(self, prefix: str, files: list[File]) -> None:
        """Record a complete listing of the names under `prefix`."""
        self.remove(self.names_under(prefix))  # entries the server no longer lists
        self.add(files)
        self.complete = {known for known in self.complete if not known.startswith(prefix)} | {prefix}


# The key and server a WandbFileSystem(...) call would use, while fsspec's metaclass tokenizes that call.
_CALLER_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("wandb_files_fsspec_key", default=None)
# Keys are hashed with a secret of this process: an instance token reveals nothing that could test a guessed key.
_TOKEN_SECRET = os.urandom(32)
# fsspec 2024.3 and later: `to_json(include_password=...)` and `to_dict`; 2024.2 has only `to_json()`.
_JSON_TAKES_PASSWORD = "include_password" in inspect.signature(AbstractFileSystem.to_json).parameters


def _key_fingerprint(kwargs: dict[str, Any]) -> str | None:
    """A keyed hash of the API key and server these constructor arguments resolve to (None: none resolves)."""
    try:
        base_url = check_base_url(kwargs.get("base_url") or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
        key, _ = resolve_key(kwargs.get("api_key"), base_url)
    except (ConfigurationError, TypeError, ValueError):
        return None  # the constructor raises the same error with its own message
    return hmac.new(_TOKEN_SECRET, f"{base_url}\n{key}".encode(), hashlib.sha256).hexdigest()


class _PerKeyCache(_Cached):  # type: ignore[misc]  # fsspec publishes no type information
    """fsspec's instance cache, keyed also by the API key in effect: after `WANDB_API_KEY` (or the netrc entry,
    or `WANDB_BASE_URL`) changes, ``WandbFileSystem()`` is a new instance acting as the new user."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        reset = _CALLER_KEY.set(_key_fingerprint(apply_config(cls, dict(kwargs))))
        try:
            return super().__call__(*args, **kwargs)
        finally:
            _CALLER_KEY.reset(reset)

    @property
    def _key_in_effect(cls) -> str | None:
        """Read by fsspec's tokenizer (`_extra_tokenize_attributes`) while `__call__` runs."""
        return _CALLER_KEY.get()


# The ignore: fsspec publishes no type information.
class WandbFileSystem(AbstractFileSystem, metaclass=_PerKeyCache):  # type: ignore[misc]
    """The files of W&B runs as an fsspec filesystem, protocol ``wandb``.

    Paths are ``entity/project/run_id/<file name>`` (with or without ``wandb://``). Registered through the
    ``fsspec.specs`` entry point, so ``fsspec.filesystem("wandb")``, ``fsspec.open("wandb://…")`` and
    ``pandas.read_csv("wandb://…", storage_options={...})`` find it once ``wandb-files[fsspec]`` is installed.

    Args:
        api_key: The API key; else `WANDB_API_KEY`, else the netrc entry of the server (as `Api` finds it).
        base_url: The server; else `WANDB_BASE_URL`, else ``https://api.wandb.ai``.
        timeout: Seconds one call may take, its retries included (`Api`'s `timeout`).
        max_workers: Parallel transfers of `get`, `put` and `rm` (default `WANDB_FILES_MAX_WORKERS`, else 32).
        block_size: Default read-ahead of files opened for reading, in bytes (1 MiB).
        run_filters: Only the runs this W&B filter document selects (as `Api.runs` takes it, e.g.
            ``{"state": "finished", "summary_metrics.acc": {"$gt": 0.9}}``) are listed in a project: `ls`,
            `glob`, `find`, `walk` and `get` of a project see those runs only. A run named in a path is
            reached whatever the filter (the filter chooses what a project lists, it is not an access rule).
            Through a URL: ``storage_options={"run_filters": {...}}``.
        use_listings_cache: False lists again for every call (fsspec's option).
        listings_expiry_time: Seconds a listing is kept (fsspec's option); None keeps it until invalidated.
        **storage_options: Passed to `AbstractFileSystem` (e.g. ``skip_instance_cache``).

    Raises:
        ConfigurationError: no API key could be found, or the base URL is not an http(s) URL.
        TypeError, ValueError: `run_filters` is not a filter document (the message names the bad part). A
            filter the server refuses is a `BadRequestError` at the first listing of a project.

    A run is like a bucket: writing needs the run to exist (`mkdir("entity/project/run_id")` creates it).
    Folders exist only through the files under them.

    Instances are cached as fsspec caches them, by their arguments and by the key and server in effect: once
    `WANDB_API_KEY` changes, ``WandbFileSystem()`` (and ``pandas.read_csv("wandb://…")``) is another instance,
    acting as the new key's user. The cache token holds a keyed hash of the key, never the key.

    A pickle (and ``from_json``) holds the constructor's arguments. An `api_key` passed as an argument is among
    them, in clear text: keep such a pickle as secret as the key (Dask and multiprocessing workers need it to
    act as that user). A key that came from `WANDB_API_KEY` or the netrc file is not in the pickle: the process
    that loads it uses the key it finds there itself. ``to_json()`` and ``to_dict()`` leave `api_key` out unless
    asked with ``include_password=True``.
    """

    protocol = "wandb"
    root_marker = ""
    _extra_tokenize_attributes = ("_key_in_effect",)  # see _PerKeyCache

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_workers: int | None = None,
        block_size: int | None = None,
        run_filters: Mapping[str, Any] | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)  # fsspec's own options (listings cache, instance cache)
        filters_json(run_filters)  # a malformed document fails here, before any request
        self.run_filters = dict(run_filters) if run_filters is not None else None
        self.api = Api(api_key=api_key, base_url=base_url, timeout=timeout)
        self.max_workers = max_workers
        self.read_block_size = int(block_size) if block_size else DEFAULT_READ_BLOCK
        self._lock = threading.RLock()
        self._runs: dict[str, _RunListing] = {}
        self._collecting = threading.local()  # get/put gather their files here, then move them all at once

    def __repr__(self) -> str:
        chosen = f" runs {json.dumps(self.run_filters)}" if self.run_filters else ""
        return f"<WandbFileSystem {self.api.base_url}{chosen}>"

    def to_dict(self, *, include_password: bool = False) -> dict[str, Any]:
        """The filesystem as fsspec's JSON form describes it (``cls``, ``protocol``, ``args``, the options).

        Args:
            include_password: Keep an `api_key` that was passed as an argument (in clear text).

        Returns:
            A JSON-serializable dict; `from_dict` (or `from_json`) makes the filesystem again.
        """
        if _JSON_TAKES_PASSWORD:
            described: dict[str, Any] = super().to_dict(include_password=include_password)
        else:
            described = json.loads(super().to_json())
        if not include_password:
            described.pop("api_key", None)
        return described

    def to_json(self, *, include_password: bool = False) -> str:
        """`to_dict` as JSON text.

        Args:
            include_password: Keep an `api_key` that was passed as an argument (in clear text).

        Returns:
            The JSON text; `fsspec.AbstractFileSystem.from_json` makes the filesystem again (with the key found
            in the environment, unless it was included).
        """
        if _JSON_TAKES_PASSWORD:
            text: str = super().to_json(include_password=include_password)  # its encoder calls our to_dict
            return text
        return json.dumps(self.to_dict(include_password=include_password))

    # --- paths ---------------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        stripped: str = super()._strip_protocol(path)
        return stripped.strip("/")

    def _split_file(self, path: str) -> tuple[str, str]:
        """``(run path, file name)`` of a path below a run.

        Raises:
            IsADirectoryError: the path is an entity, a project or a run.
        """
        parts = _parts(path)
        if len(parts) <= _RUN_DEPTH:
            raise IsADirectoryError(errno.EISDIR, "an entity, project or run is a folder, not a file", path)
        return "/".join(parts[:_RUN_DEPTH]), "/".join(parts[_RUN_DEPTH:])

    # --- the caches ----------------------------------------------------------------------------------

    def _fresh(self, listing: _RunListing) -> bool:
        if not self.dircache.use_listings_cache:
            return False
        expiry = self.dircache.listings_expiry_time
        return expiry is None or time.monotonic() - listing.made <= expiry

    def _run_listing(self, run_path: str) -> _RunListing:
        """The cache of the run at `run_path`, its run loaded (one request) when it is new.

        Raises:
            FileNotFoundError: no such run.
        """
        with self._lock:
            listing = self._runs.get(run_path)
            if listing is not None and self._fresh(listing):
                return listing
            entity, project, run_id = run_path.split("/")
            with _os_errors(run_path):
                run = listing.run if listing is not None else Run(self.api.client, entity, project, run_id)
            listing = _RunListing(run)
            self._runs[run_path] = listing
            return listing

    def _files_under(self, listing: _RunListing, prefix: str) -> list[str]:
        """The names of the run's files that start with `prefix`, listed with one LIKE pattern unless known."""
        with self._lock:
            if not listing.covers(prefix):
                files = listing.run.files(pattern=like_prefix(prefix), per_page=LISTING_PAGE)
                with _os_errors("/".join(listing.run.path)):
                    listing.listed(prefix, list(files))
            return listing.names_under(prefix)

    def _lookup(self, listing: _RunListing, name: str) -> File | None:
        """The run's file called `name`, or None."""
        with self._lock:
            if name in listing.files:
                return listing.files[name]
            if listing.covers(name):
                return None
            with _os_errors("/".join(listing.run.path)):
                found = [f for f in listing.run.files(names=[name], per_page=1) if f.name == name]
            listing.add(found)
            return found[0] if found else None

    def _is_folder(self, listing: _RunListing, name: str) -> bool:
        """Whether some file of the run has a name under ``name/``."""
        prefix = name + "/"
        with self._lock:
            if listing.names_under(prefix):
                return True
            if listing.covers(prefix):
                return False
            with _os_errors("/".join(listing.run.path)):
                first = listing.run.files(pattern=like_prefix(prefix), per_page=1)[:1]
            listing.add(first)
            return bool(first)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget cached listings: all of them, or those of `path`, what lies under it and above it.

        Any path at or below a run forgets that run's whole listing.
        """
        with self._lock:
            if path is None:
                self.dircache.clear()
                self._runs.clear()
            else:
                path = self._strip_protocol(path)
                parts = _parts(path)
                if len(parts) >= _RUN_DEPTH:
                    self._runs.pop("/".join(parts[:_RUN_DEPTH]), None)
                else:
                    for key in [k for k in self._runs if k.startswith(path + "/") or not path]:
                        del self._runs[key]
                for depth in range(min(len(parts), _RUN_DEPTH - 1) + 1):
                    self.dircache.pop("/".join(parts[:depth]), None)
                for key in [k for k in self.dircache if path and k.startswith(path + "/")]:
                    self.dircache.pop(key, None)
        super().invalidate_cache(path)

    # --- listing -------------------------------------------------------------------------------------

    def _file_info(self, run_path: str, file: File) -> dict[str, Any]:
        return {
            "name": f"{run_path}/{file.name}",
            "size": file.size,
            "type": "file",
            "md5": file.md5,
            "mimetype": file.mimetype,
            "updated_at": file.updated_at,
        }

    def _listing_above_runs(self, path: str) -> list[dict[str, Any]]:
        """The entities (for ""), the projects of an entity, or the runs of a project; cached in `dircache`."""
        with self._lock:
            if self.dircache.use_listings_cache:
                with contextlib.suppress(KeyError):
                    cached: list[dict[str, Any]] = self.dircache[path]
                    return cached
            parts = _parts(path)
            with _os_errors(path):
                if not parts:
                    viewer = self.api.viewer
                    teams = [e["node"]["name"] for e in (viewer.get("teams") or {}).get("edges") or []]
                    entries = [_dir_info(name) for name in dict.fromkeys([viewer["entity"], *teams])]
                elif len(parts) == 1:
                    entries = [
                        _dir_info(f"{path}/{p.name}", created_at=p.created_at)
                        for p in self.api.projects(parts[0], per_page=LISTING_PAGE)
                    ]
                else:
                    entries = []
                    for run in self.api.runs(path, filters=self.run_filters, per_page=LISTING_PAGE):
                        run_path = f"{path}/{run.id}"
                        if run_path not in self._runs:
                            self._runs[run_path] = _RunListing(run)  # one request less when it is opened
                        entries.append(self._run_info(run))
            entries.sort(key=lambda entry: entry["name"])
            self.dircache[path] = entries
            return entries

    @staticmethod
    def _run_info(run: Run) -> dict[str, Any]:
        return _dir_info(
            "/".join(run.path),
            created_at=run.created_at,
            updated_at=run._attrs.get("heartbeatAt") or run.created_at,
            state=run.state,
            display_name=run.name,
        )

    def _children(self, listing: _RunListing, run_path: str, prefix: str) -> list[dict[str, Any]]:
        """The files and pseudo-folders directly under `prefix` ("" or ``folder/``) of a run."""
        with self._lock:
            names = self._files_under(listing, prefix)
            cached = listing._children.get(prefix)
            if cached is not None:
                return cached
            entries: dict[tuple[str, str], dict[str, Any]] = {}
            for name in names:
                rest = name[len(prefix) :]
                if "/" in rest:
                    folder = prefix + rest.split("/", 1)[0]
                    entries.setdefault(("directory", folder), _dir_info(f"{run_path}/{folder}"))
                else:
                    entries[("file", name)] = self._file_info(run_path, listing.files[name])
            result = sorted(entries.values(), key=lambda entry: (entry["name"], entry["type"]))
            listing._children[prefix] = result
            return result

    def ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        """What lies directly under `path`: entities, projects, runs, or a run's files and pseudo-folders.

        Args:
            path: ``""`` (the key's entities), ``entity``, ``entity/project``, a run, or a folder or file in one.
            detail: Dicts with ``name``, ``size``, ``type``, ``md5``, ``mimetype``, ``updated_at`` (runs and
                projects add ``created_at``), else the names.
            refresh: List again instead of answering from the cache.

        Returns:
            The entries, sorted by name; for a file, that file alone.

        Raises:
            FileNotFoundError: nothing exists at `path`.
            PermissionError: the key was refused.
        """
        path = self._strip_protocol(path)
        if refresh:
            self.invalidate_cache(path)
        parts = _parts(path)
        if len(parts) < _RUN_DEPTH:
            entries = self._listing_above_runs(path)
        else:
            run_path = "/".join(parts[:_RUN_DEPTH])
            listing = self._run_listing(run_path)
            name = "/".join(parts[_RUN_DEPTH:])
            entries = self._children(listing, run_path, name + "/" if name else "")
            if not entries and name:
                file = self._lookup(listing, name)
                if file is None:
                    raise FileNotFoundError(errno.ENOENT, "no such file or folder in the run", path)
                entries = [self._file_info(run_path, file)]
        return [dict(e) for e in entries] if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """What `ls` says of `path` itself: a file's size, md5, mimetype, updated_at, or a folder.

        Raises:
            FileNotFoundError: nothing exists at `path`.
            PermissionError: the key was refused.
        """
        path = self._strip_protocol(path)
        parts = _parts(path)
        if not parts:
            return _dir_info("")
        if len(parts) < _RUN_DEPTH:
            parent = "/".join(parts[:-1])
            for entry in self._listing_above_runs(parent):
                if entry["name"] == path:
                    return dict(entry)
            if len(parts) == 1:  # an entity not among the viewer's own and its teams', yet maybe visible
                self._listing_above_runs(path)
                return _dir_info(path)
            raise FileNotFoundError(errno.ENOENT, "no such project", path)
        run_path = "/".join(parts[:_RUN_DEPTH])
        listing = self._run_listing(run_path)
        if len(parts) == _RUN_DEPTH:
            return self._run_info(listing.run)
        name = "/".join(parts[_RUN_DEPTH:])
        file = self._lookup(listing, name)
        if file is not None:
            return self._file_info(run_path, file)
        if self._is_folder(listing, name):
            return _dir_info(path)
        raise FileNotFoundError(errno.ENOENT, "no such file or folder in the run", path)

    def _file(self, path: str) -> File:
        """The `File` at `path`.

        Raises:
            FileNotFoundError: there is none. IsADirectoryError: `path` is a folder.
        """
        if len(_parts(path)) <= _RUN_DEPTH:
            self.info(path)  # missing, or a folder
        run_path, name = self._split_file(path)
        listing = self._run_listing(run_path)
        file = self._lookup(listing, name)
        if file is None:
            if self._is_folder(listing, name):
                raise IsADirectoryError(errno.EISDIR, "a folder, not a file", path)
            raise FileNotFoundError(errno.ENOENT, "no such file in the run", path)
        return file

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **kwargs: Any
    ) -> Any:
        """Every file below `path` (and folder, with `withdirs`); inside a run, from one listing of its prefix.

        Raises:
            ValueError: `maxdepth` is below 1.
        """
        path = self._strip_protocol(path)
        parts = _parts(path)
        if len(parts) < _RUN_DEPTH:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        run_path = "/".join(parts[:_RUN_DEPTH])
        listing = self._run_listing(run_path)
        name = "/".join(parts[_RUN_DEPTH:])
        prefix = name + "/" if name else ""
        out: dict[str, dict[str, Any]] = {}
        if withdirs and (not name or self._is_folder(listing, name)):
            out[path] = self.info(path)
        for found in self._files_under(listing, prefix):
            segments = found[len(prefix) :].split("/")
            if maxdepth is None or len(segments) <= maxdepth:
                out[f"{run_path}/{found}"] = self._file_info(run_path, listing.files[found])
            if withdirs:
                deepest = len(segments) if maxdepth is None else min(len(segments), maxdepth + 1)
                for depth in range(1, deepest):
                    folder = f"{run_path}/{prefix}{'/'.join(segments[:depth])}"
                    out.setdefault(folder, _dir_info(folder))
        if not out and name:
            file = self._lookup(listing, name)
            if file is not None:
                out[path] = self._file_info(run_path, file)
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        """Paths matching a glob (``*``, ``?``, ``[…]``, ``**``), as fsspec's `glob` matches them.

        Inside a run, the pattern's literal prefix goes to the server as a LIKE pattern, so matching
        ``run/media/pred_*.png`` in a 100,000-file run lists only the names starting with ``media/pred_``.

        Raises:
            ValueError: `maxdepth` is below 1, or ``**`` is not a whole path segment.
        """
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        ends_with_sep = isinstance(path, str) and path.endswith("/")
        stripped = self._strip_protocol(path)
        parts = _parts(stripped)
        magic = [i for i, part in enumerate(parts) if has_magic(part)]
        if not magic or (magic[0] < _RUN_DEPTH and any("**" in part for part in parts[:_RUN_DEPTH])):
            return super().glob(path, maxdepth=maxdepth, **kwargs)
        if len(parts) <= _RUN_DEPTH:  # runs, projects or entities: short listings, fsspec's way
            return super().glob(path, maxdepth=maxdepth, **kwargs)
        detail = kwargs.pop("detail", False)
        withdirs = kwargs.pop("withdirs", True)
        runs = self._matching_runs(parts[:_RUN_DEPTH]) if magic[0] < _RUN_DEPTH else ["/".join(parts[:_RUN_DEPTH])]
        # fsspec's own rules: the search root ends before the first magic segment, the depth counts from it.
        root_end = stripped[: _first_magic(stripped)].rfind("/") + 1
        depth: int | None = stripped[root_end:].count("/") + 1
        if "**" in stripped:
            depth = None if maxdepth is None else depth - stripped[stripped.find("**") :].count("/") - 1 + maxdepth
        pattern = re.compile(glob_translate(stripped + ("/" if ends_with_sep else "")))
        slash_dirs = ends_with_sep or stripped.endswith("/**")
        rest = "/".join(parts[_RUN_DEPTH:])
        literal = rest[: _first_magic(rest)]
        out: dict[str, dict[str, Any]] = {}
        for run_path in runs:
            try:
                listing = self._run_listing(run_path)
                names = self._files_under(listing, literal)
            except FileNotFoundError:
                continue
            candidates: dict[str, dict[str, Any]] = {}
            if withdirs:
                candidates[run_path] = self._run_info(listing.run)
            for name in names:
                candidates[f"{run_path}/{name}"] = self._file_info(run_path, listing.files[name])
                if withdirs:
                    segments = name.split("/")
                    for end in range(1, len(segments)):
                        folder = f"{run_path}/{'/'.join(segments[:end])}"
                        candidates.setdefault(folder, _dir_info(folder))
            for candidate, entry in candidates.items():
                if depth is not None and candidate[root_end:].count("/") + 1 > depth:
                    continue
                shown = candidate + "/" if slash_dirs and entry["type"] == "directory" else candidate
                if pattern.match(shown):
                    out[candidate] = entry
        names_out = sorted(out)
        return {n: out[n] for n in names_out} if detail else names_out

    def _matching_runs(self, parts: list[str]) -> list[str]:
        """The run paths that `parts` (entity, project, run_id, each maybe a glob) match."""
        found = [""]
        for level, part in enumerate(parts):
            following = []
            for parent in found:
                if not has_magic(part):
                    following.append(f"{parent}/{part}" if parent else part)
                    continue
                regex = re.compile(glob_translate(part))
                try:
                    entries = self._listing_above_runs(parent) if level < _RUN_DEPTH else []
                except FileNotFoundError:
                    continue
                following += [e["name"] for e in entries if regex.match(e["name"].rsplit("/", 1)[-1])]
            found = following
        return found

    def ukey(self, path: str) -> str:
        """What changes when the file's bytes change: its md5 as the server records it."""
        info = self.info(path)
        return str(info.get("md5") or hashlib.sha256(repr(sorted(info.items())).encode()).hexdigest())

    def checksum(self, path: str) -> int:
        """The file's md5 as an integer (fsspec's checksum)."""
        md5 = self.info(path).get("md5")
        if md5:
            with contextlib.suppress(ValueError):
                return int.from_bytes(base64.b64decode(md5, validate=True), "big")
        return int(self.ukey(path)[:32], 16)

    def modified(self, path: str) -> datetime:
        """When the file was last written, as the server says (``updated_at``).

        Raises:
            FileNotFoundError: no such file. ValueError: the server gave no time for it.
        """
        stamp = self.info(path).get("updated_at")
        if not stamp:
            raise ValueError(f"the server gives no modification time for {path!r}")
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))

    # --- reading -------------------------------------------------------------------------------------

    def _read(self, file: File, path: str, start: int, end: int | None) -> bytes:
        """Bytes ``[start, end)`` of `file` (``end`` None: to its end) with one ranged GET, retried like a
        download (`HTTPClient.read_range`: the key goes only to the server's own origin).

        Raises:
            FileNotFoundError: the file is gone. PermissionError: refused.
            IntegrityError: the file changed on the server since it was listed.
            TransportError, APIError: the server could not be reached, or kept failing.
        """
        if file.size is not None:
            end = file.size if end is None else min(end, file.size)
        if end is not None and end <= start:
            return b""
        url = file.url or file.direct_url
        if not url:
            raise FileNotFoundError(errno.ENOENT, "the server gives no URL for this file", path)

        def same_version(response: HTTPResponse) -> None:
            if remote_changed(response.headers.get("ETag"), file.md5):
                raise IntegrityError(
                    f"{path}: the file changed on the server since it was listed; call invalidate_cache() and open it again"
                )

        with _os_errors(path):
            return self.api.client.read_range(url, file.name, start, end, check=same_version)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The bytes ``[start, end)`` of a file (negative: from its end), fetched with one ranged GET.

        A whole file read this way is checked against the server's size and md5.

        Raises:
            FileNotFoundError: no such file. IsADirectoryError: a folder.
            IntegrityError: the bytes did not match, or the file changed since it was listed.
        """
        path = self._strip_protocol(path)
        file = self._file(path)
        size = file.size
        begin = 0 if start is None else start
        if begin < 0:
            begin = max(0, (size or 0) + begin)
        stop = end
        if stop is not None and stop < 0:
            stop = max(0, (size or 0) + stop)
        data = self._read(file, path, begin, stop)
        whole = begin == 0 and (stop is None or (size is not None and stop >= size))
        if (
            whole
            and file.md5
            and ((size is not None and len(data) != size) or not md5_matches(hashlib.md5(data).digest(), file.md5))
        ):
            raise IntegrityError(f"{path}: the bytes read do not match the server's size and md5")
        return data

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> WandbFile:
        return WandbFile(
            self, path, mode, block_size=block_size, autocommit=autocommit, cache_options=cache_options, **kwargs
        )

    def _local_target(self, lpath: Any, *, folder: bool = False) -> Path:
        """Where `lpath` is written, checked as `Files.download` checks its targets (`transfer.Destination`).

        Inside `get`, a path under the folder the call named is that folder's `Destination` target: no folder on
        the way may be a symbolic link or a file. A path the caller named whole (`get_file`, a list of local
        paths, a single file) may itself be a link to a folder, as a download's root may; a link at a file's
        own place is replaced, never written through (`transfer.download`).

        Raises:
            ValueError: a folder on the way is a symbolic link or a file, the target is a folder, or the name
                cannot be written safely.
        """
        path = make_path_posix(lpath)
        within: tuple[str, dict[str, transfer.Destination]] | None = getattr(self._collecting, "local_root", None)
        if within is not None:
            root, made = within
            if path.startswith(root + "/"):
                destination = made.get(root) or made.setdefault(root, transfer.Destination(root or "/"))
                return destination.target(path[len(root) + 1 :].rstrip("/"), folder=folder)
        if folder:
            return transfer.Destination(path).root
        parent, name = os.path.split(path.rstrip("/"))
        return transfer.Destination(parent or "/").target(name)

    def get_file(
        self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK, outfile: Any = None, **kwargs: Any
    ) -> None:
        """Download one file to `lpath`: temp file beside it, size and md5 checked, then renamed into place.

        Inside `get`, files are gathered and downloaded together, in parallel. A symbolic link at `lpath` is
        replaced by the file; what it points to is never written.

        Raises:
            FileNotFoundError: no such file.
            ValueError: `lpath` is a folder, or a folder on the way to it is a file.
            IntegrityError, TransportError, APIError: as `File.download`.
        """
        rpath = self._strip_protocol(rpath)
        if outfile is not None or isfilelike(lpath):
            with self.open(rpath, "rb") as source:
                callback.set_size(source.size)
                while chunk := source.read(self.read_block_size):
                    (outfile if outfile is not None else lpath).write(chunk)
                    callback.relative_update(len(chunk))
            return
        if self.isdir(rpath):
            self._local_target(lpath, folder=True).mkdir(parents=True, exist_ok=True)
            return
        file = self._file(rpath)
        if not file.url:
            raise FileNotFoundError(errno.ENOENT, "the server gives no URL for this file", rpath)
        job = transfer.DownloadJob(file.url, self._local_target(lpath), rpath, file.size, file.md5)
        gathering: list[transfer.DownloadJob] | None = getattr(self._collecting, "downloads", None)
        if gathering is not None:
            gathering.append(job)
            return
        callback.set_size(file.size)
        with _os_errors(rpath):
            transfer.download_one(self.api.client, job, progress=callback.relative_update)

    def get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Download files (a list, a glob, or a folder with `recursive`) as fsspec's `get` maps them to local
        paths, all at once through the bulk engine: in parallel, each verified and renamed atomically.

        Under the local folder `lpath` names (which may itself be a symbolic link), every target is checked
        before anything is downloaded, as `Files.download` checks them: a symbolic link or a file on the way
        to one refuses the call, so nothing is ever written outside `lpath`.

        Raises:
            FileNotFoundError: `rpath` matches nothing.
            ValueError: a folder on the way to a target is a symbolic link or a file (nothing was downloaded).
            DownloadError: some files failed; the others were downloaded.
        """
        if isinstance(lpath, os.PathLike):
            lpath = os.fspath(lpath)  # fsspec's own get takes only strings and lists
        jobs: list[transfer.DownloadJob] = []
        self._collecting.downloads = jobs
        # fsspec's get makes each local path from make_path_posix(lpath): those are the paths under it.
        self._collecting.local_root = (make_path_posix(lpath).rstrip("/"), {}) if isinstance(lpath, str) else None
        try:
            super().get(rpath, lpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        finally:
            self._collecting.downloads = None
            self._collecting.local_root = None
        if jobs:
            client = self.api.client
            transfer.download_many(
                client, jobs, engine=transfer.choose_engine(client), max_workers=self.max_workers, progress=False
            )

    # --- writing -------------------------------------------------------------------------------------

    def _writable(self, path: str) -> tuple[_RunListing, str]:
        """The run and the file name `path` writes, checked before anything is sent.

        Raises:
            IsADirectoryError: `path` is an entity, project or run.
            FileNotFoundError: the run does not exist (`mkdir` creates it).
            ValueError: the name is not one a run can hold.
        """
        run_path, name = self._split_file(path)
        problem = transfer.name_problem(name)
        if problem:
            raise ValueError(f"{path!r} cannot be a file of a run: {problem}")
        try:
            listing = self._run_listing(run_path)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                errno.ENOENT, f"{exc.strerror}; create the run first: fs.mkdir({run_path!r})", path
            ) from exc
        return listing, name

    @staticmethod
    def _checked_source(local: Path) -> Path:
        """The regular file `local` is, or links to, checked before anything is sent.

        Raises:
            FileNotFoundError: `local` is missing, or a symbolic link to nothing (dangling, or links that loop).
            OSError: `local` cannot be looked at (e.g. PermissionError).
            ValueError: `local` is not a regular file (a folder, a FIFO, a device).
        """
        try:
            mode = os.stat(local).st_mode
        except OSError as exc:
            if os.path.islink(local):
                why = "a symbolic link to nothing (its target is missing, or links loop)"
                raise FileNotFoundError(errno.ENOENT, f"{why}; nothing was uploaded", str(local)) from None
            raise type(exc)(exc.errno, f"{exc.strerror}; nothing was uploaded", str(local)) from None
        if not stat.S_ISREG(mode):
            raise ValueError(f"{safe_name(str(local))!r} is not a regular file; nothing was uploaded")
        return Path(os.path.realpath(local))

    def _check_sources(self, pairs: list[tuple[Path, str]]) -> None:
        """Every local file of `pairs` checked (fsspec's errors, naming the caller's path): nothing is sent
        unless all of them can be.

        Raises:
            FileNotFoundError, OSError, ValueError: as `_checked_source`.
        """
        for given, _ in pairs:
            self._checked_source(Path(os.path.abspath(given)))
        transfer.plan_named_uploads(pairs)  # names and clashes too, before any run is sent to

    def _upload(self, listing: _RunListing, pairs: list[tuple[Path, str]]) -> list[File]:
        """Upload local files under the given names through `Run.upload_named`, then record them in the cache.
        A symbolic link is sent as the bytes of the file it points to.

        Raises:
            FileNotFoundError, ValueError: a local file is missing or not a file; nothing was sent.
            UploadError: some files failed (the others were uploaded and are cached).
        """
        self._check_sources(pairs)
        uploaded: list[File] = []
        try:
            uploaded = listing.run.upload_named(pairs, max_workers=self.max_workers, progress=False)
        except UploadError as exc:
            uploaded = exc.results
            raise
        finally:
            with self._lock:
                listing.add(uploaded)
        return uploaded

    def put_file(
        self, lpath: Any, rpath: str, callback: Any = DEFAULT_CALLBACK, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Upload one local file to `rpath` through `Run.upload_named` (its md5 checked by the server's record).

        Inside `put`, files are gathered and uploaded together, in parallel.

        Raises:
            FileNotFoundError: the run does not exist. FileExistsError: ``mode="create"`` and `rpath` exists.
            ValueError: the name cannot be a file of a run. UploadError: the upload failed.
        """
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            return  # folders exist only through their files
        listing, name = self._writable(rpath)
        if mode == "create" and self._lookup(listing, name) is not None:
            raise FileExistsError(errno.EEXIST, "the file exists", rpath)
        gathering: list[tuple[str, Path, str]] | None = getattr(self._collecting, "uploads", None)
        if gathering is not None:
            gathering.append(("/".join(listing.run.path), Path(lpath), name))
            return
        size = self._checked_source(Path(os.path.abspath(lpath))).stat().st_size
        callback.set_size(size)
        try:
            self._upload(listing, [(Path(lpath), name)])
        except UploadError as exc:
            raise exc.failures[0][1] from None
        callback.relative_update(size)

    def put(
        self,
        lpath: Any,
        rpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload local files (a list, a glob, or a folder with `recursive`) as fsspec's `put` maps them, all at
        once: one `Run.upload_named` call a run, in parallel.

        Every local file is checked before anything is sent. A symbolic link to a file is uploaded under its
        own name with the bytes of the file it points to (wherever that is); a link to nothing (dangling, or a
        loop) refuses the whole call.

        Raises:
            FileNotFoundError: a run does not exist, or a local path is missing or a symbolic link to nothing
                (nothing was sent). ValueError: a name cannot be a file of a run, or a local path is not a
                regular file (nothing was sent).
            UploadError: some files failed (the others were uploaded).
        """
        gathered: list[tuple[str, Path, str]] = []
        self._collecting.uploads = gathered
        try:
            super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)
        finally:
            self._collecting.uploads = None
        by_run: dict[str, list[tuple[Path, str]]] = {}
        for run_path, local, name in gathered:
            by_run.setdefault(run_path, []).append((local, name))
        for pairs in by_run.values():  # every local file of every run is checked before the first byte is sent
            self._check_sources(pairs)
        failures: list[tuple[str, BaseException]] = []
        uploaded: list[File] = []
        for run_path, pairs in by_run.items():
            try:
                uploaded += self._upload(self._run_listing(run_path), pairs)
            except UploadError as exc:
                failures += [(f"{run_path}/{name}", error) for name, error in exc.failures]
                uploaded += exc.results
        if failures:
            raise UploadError(failures, uploaded)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Create the run at ``entity/project/run_id`` (and its project); deeper folders need no creating.

        Raises:
            PermissionError: `path` is an entity or a project: those are created with their first run.
        """
        path = self._strip_protocol(path)
        parts = _parts(path)
        if len(parts) < _RUN_DEPTH:
            raise PermissionError(
                errno.EPERM, "entities and projects cannot be made here; a project is made with its first run", path
            )
        entity, project, run_id = parts[:_RUN_DEPTH]
        with _os_errors(path):
            run = self.api.create_run(run_id, project=project, entity=entity)
        with self._lock:
            self.dircache.pop(f"{entity}/{project}", None)
            self.dircache.pop(entity, None)
            if "/".join(run.path) not in self._runs:
                self._runs["/".join(run.path)] = _RunListing(run)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """`mkdir`, refusing an existing run unless `exist_ok`.

        Raises:
            FileExistsError: the run exists and not `exist_ok`.
        """
        path = self._strip_protocol(path)
        if not exist_ok and len(_parts(path)) == _RUN_DEPTH and self.exists(path):
            raise FileExistsError(errno.EEXIST, "the run exists", path)
        self.mkdir(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files (a path, a list, a glob; a folder's files with `recursive`), 500 ids a request.

        Every path is checked before anything is deleted. Runs themselves are not deleted, only their files.

        Raises:
            FileNotFoundError: a path matches nothing.
            IsADirectoryError: a folder without `recursive`.
            DeleteError: some files were not deleted (the others were).
        """
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        doomed: dict[str, list[File]] = {}
        for found in paths:
            parts = _parts(found)
            if len(parts) <= _RUN_DEPTH:
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "pass recursive=True to delete a folder's files", found)
                continue
            run_path, name = "/".join(parts[:_RUN_DEPTH]), "/".join(parts[_RUN_DEPTH:])
            listing = self._run_listing(run_path)
            file = self._lookup(listing, name)
            if file is None:
                if not self._is_folder(listing, name):
                    raise FileNotFoundError(errno.ENOENT, "no such file in the run", found)
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "pass recursive=True to delete a folder's files", found)
                continue
            doomed.setdefault(run_path, []).append(file)
        failures: list[tuple[str, BaseException]] = []
        deleted: list[File] = []
        for run_path, files in doomed.items():
            try:
                gone = delete_files(self.api.client, files)
            except DeleteError as exc:
                gone = exc.results
                failures += [(f"{run_path}/{name}", error) for name, error in exc.failures]
            deleted += gone
            with self._lock:
                cached = self._runs.get(run_path)
                if cached is not None:
                    cached.remove(f.name for f in gone)
        if failures:
            raise DeleteError(failures, deleted)

    def rm_file(self, path: str) -> None:
        """Delete one file.

        Raises:
            FileNotFoundError: no such file. IsADirectoryError: a folder.
        """
        self.rm(self._strip_protocol(path))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Not available: W&B has no server-side copy (download and `put` instead)."""
        raise NotImplementedError("W&B has no server-side copy; download the file and put it where it should go")


class WandbFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec publishes no type information
    """A file of a run opened through `WandbFileSystem.open`.

    Reading (``rb``) fetches byte ranges as they are needed, with a read-ahead of `block_size` (1 MiB unless
    the filesystem or the call says otherwise; ``cache_type="none"`` reads exactly what is asked). Writing
    (``wb``, ``xb``) buffers into a temp file and uploads it when the file is closed; leaving a ``with`` block
    through an exception, or `discard()`, uploads nothing. A file opened for writing that is never closed
    (garbage-collected, or still open when the interpreter exits) uploads nothing either, with a warning: an
    upload from a finalizer could hang the exit or deadlock, and an unclosed file may hold half a write.

    Raises:
        FileNotFoundError: (reading) no such file; (writing) no such run.
        IsADirectoryError: `path` is a folder.
        FileExistsError: ``xb`` and the file exists.
        NotImplementedError: ``ab`` (a run's files are replaced whole, never appended to).
    """

    closed: bool  # a property of fsspec's class, set by it and by close()

    def __init__(
        self,
        fs: WandbFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        path = fs._strip_protocol(path)
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._spool: Any = None
        if mode == "rb":
            self._remote = fs._file(path)
            kwargs["size"] = self._remote.size
            self._details = fs._file_info(fs._split_file(path)[0], self._remote)
        elif mode in ("wb", "xb"):
            self._listing, self._name = fs._writable(path)
            if mode == "xb" and fs._lookup(self._listing, self._name) is not None:
                raise FileExistsError(errno.EEXIST, "the file exists", path)
        else:
            raise NotImplementedError(f"mode {mode!r}: a run's files are read ('rb') or written whole ('wb', 'xb')")
        if block_size in (None, "default"):
            block_size = fs.read_block_size
        # Checked above for "xb"; older fsspec releases know only "wb".
        super().__init__(
            fs, path, "wb" if mode == "xb" else mode, block_size, autocommit, cache_type, cache_options, **kwargs
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = self.fs._read(self._remote, self.path, start, end)
        return data

    def _initiate_upload(self) -> None:
        self._temp = tempfile.TemporaryDirectory(prefix="wandb-files-write-")
        self._spool = open(Path(self._temp.name, "written"), "wb")  # noqa: SIM115 - closed in _upload_chunk or discard

    def _upload_chunk(self, final: bool = False) -> bool:
        self._spool.write(self.buffer.getbuffer())
        if final:
            self._spool.close()
            if self.autocommit:
                self.commit()
        return True

    def commit(self) -> None:
        """Upload what was written (at close, or when a transaction completes)."""
        if self._temp is None:
            return
        try:
            try:
                self.fs._upload(self._listing, [(Path(self._temp.name, "written"), self._name)])
            except UploadError as exc:
                raise exc.failures[0][1] from None
        finally:
            self._drop_spool()

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def discard(self) -> None:
        """Throw away what was written and close the file: nothing is uploaded, now or at `close`."""
        self._drop_spool()
        if self.mode != "rb" and not self.closed:
            self.buffer = io.BytesIO()
            self.closed = True  # close() then has nothing left to send

    def close(self) -> None:
        """Close the file; in a write mode, upload what was written (see the class)."""
        if self.closed or self.mode == "rb":
            super().close()
            return
        try:
            if not self.forced:
                self.flush(force=True)
        finally:
            self.closed = True
        # No invalidate_cache here (fsspec's close does it): the upload put the new file into the cache.

    def __del__(self) -> None:
        # A finalizer must not upload: it may run at interpreter exit, where the transfer threads cannot start
        # (the process would hang), or inside any code holding the connection pool's locks. A written file that
        # was never closed is an unfinished write: it is discarded, and said so.
        if self.closed or self.mode == "rb":  # closed first: a file whose __init__ failed has no mode
            super().__del__()
            return
        self.discard()
        with contextlib.suppress(Exception):  # warnings may already be gone at interpreter exit
            warnings.warn(
                f"{safe_name(self.path)!r} was opened for writing and never closed: nothing was uploaded "
                "(close it, or write inside a with block)",
                UserWarning,  # not ResourceWarning, which Python hides: written bytes were lost
                stacklevel=1,
            )

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None and self.mode != "rb" and not self.closed:
            self.discard()
            self.closed = True
            return
        self.close()
