"""Which engine runs a bulk download, decided in one place for every caller (`choose_engine`).

The two engines do not know each other: `downloads.download_many` runs whatever engine its caller gives it, and
the curl engine (`curl.CurlPool`) is given the pure-Python download of one job as its fallback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wandb_files.transfer.curl import CurlPool, curl_available
from wandb_files.transfer.flow import Cancel, ProgressCallback
from wandb_files.transfer.jobs import DownloadEngine, DownloadJob
from wandb_files.transfer.runner import ThreadPool
from wandb_files.transfer.settings import engine_choice

if TYPE_CHECKING:
    from wandb_files.http import HTTPClient


def choose_engine(client: HTTPClient) -> DownloadEngine:
    """The engine for `client`'s bulk downloads: the curl engine where it can stand in for requests, else the
    pure-Python thread pool.

    ``WANDB_FILES_ENGINE`` says ``auto`` (the default: curl when pycurl is installed), ``curl`` (fail without
    pycurl) or ``python``. Windows (no ``fcntl``) and a session set up by hand (proxies, client certificates: only
    requests knows what they mean) always get the thread pool.

    Args:
        client: The client whose session and key the downloads use.

    Returns:
        The engine to give `download_many`.

    Raises:
        ValueError: `WANDB_FILES_ENGINE` names no engine.
        ImportError: it says ``curl`` and pycurl is not installed.
    """
    choice = engine_choice()
    if choice == "python" or os.name == "nt":
        return ThreadPool
    if not curl_available():
        if choice == "curl":
            raise ImportError("WANDB_FILES_ENGINE=curl needs pycurl: pip install pycurl")
        return ThreadPool
    session = client.session
    if session.proxies or session.cert is not None:
        return ThreadPool

    def curl(
        workers: int, fallback: Callable[[DownloadJob], Path], advance: ProgressCallback, cancel: Cancel
    ) -> CurlPool:
        return CurlPool(client, workers, fallback, advance, cancel)

    return curl
