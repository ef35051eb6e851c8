"""The settings of bulk calls, from their arguments or the environment: workers, bandwidth, progress bars and the
download engine."""

from __future__ import annotations

import math
import os
import re

#: Parallel transfers unless told otherwise (chosen by measurement: docs/performance.md).
DEFAULT_MAX_WORKERS = 32
#: What `WANDB_FILES_ENGINE` may say (see `engines.choose_engine`).
ENGINES = ("auto", "curl", "python")


def default_max_workers() -> int:
    """`WANDB_FILES_MAX_WORKERS`, else `DEFAULT_MAX_WORKERS`.

    Raises:
        ValueError: the variable is set but is not a positive integer.
    """
    raw = os.environ.get("WANDB_FILES_MAX_WORKERS", "").strip()
    if not raw:
        return DEFAULT_MAX_WORKERS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WANDB_FILES_MAX_WORKERS must be a positive integer, got {raw!r}")
    return int(raw)


def check_max_workers(max_workers: object) -> int:
    """`max_workers` if usable, else the default when it is None.

    Raises:
        TypeError: not an int.
        ValueError: less than 1.
    """
    if max_workers is None:
        return default_max_workers()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    return max_workers


_BANDWIDTH = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?(?:b(?:/s)?)?\s*$", re.IGNORECASE)
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bandwidth(text: str, what: str = "max_bandwidth") -> float:
    """Bytes per second from ``5000000``, ``5MB``, ``5 MB/s``, ``40M`` or ``4MiB`` (decimal unless ``i``).

    Raises:
        ValueError: not a positive number with an optional unit (the message names `what`).
    """
    match = _BANDWIDTH.match(text)
    value = float(match.group(1)) * _SCALE[(match.group(2) or "").lower()] if match else 0.0
    if value <= 0:
        raise ValueError(f"{what} must be a positive number of bytes per second (e.g. 5000000 or 5MB), got {text!r}")
    return value


def check_max_bandwidth(max_bandwidth: object) -> float | None:
    """`max_bandwidth` in bytes/s if usable; when None, `WANDB_FILES_MAX_BANDWIDTH`, else None (no limit).

    Raises:
        TypeError: not a number or a string.
        ValueError: not positive, or the variable is set to something else than a bandwidth.
    """
    if max_bandwidth is None:
        raw = os.environ.get("WANDB_FILES_MAX_BANDWIDTH", "").strip()
        return parse_bandwidth(raw, "WANDB_FILES_MAX_BANDWIDTH") if raw else None
    if isinstance(max_bandwidth, str):
        return parse_bandwidth(max_bandwidth)
    if isinstance(max_bandwidth, bool) or not isinstance(max_bandwidth, (int, float)):
        raise TypeError(f"max_bandwidth must be a number of bytes per second, not {type(max_bandwidth).__name__}")
    if not max_bandwidth > 0 or math.isinf(max_bandwidth):
        raise ValueError(f"max_bandwidth must be a positive number of bytes per second, got {max_bandwidth!r}")
    return float(max_bandwidth)


def progress_enabled(progress: bool | None) -> bool | None:
    """tqdm's `disable` for a `progress` argument: None means on for terminals, off for logs and when
    `WANDB_FILES_DISABLE_PROGRESS` is set."""
    if progress is not None:
        return not progress
    if os.environ.get("WANDB_FILES_DISABLE_PROGRESS", "").strip() not in ("", "0", "false", "False"):
        return True
    return None  # tqdm: off when stderr is not a terminal


def engine_choice() -> str:
    """`WANDB_FILES_ENGINE`, lower-cased; ``auto`` when unset.

    Raises:
        ValueError: it names no engine.
    """
    choice = os.environ.get("WANDB_FILES_ENGINE", "").strip().lower() or "auto"
    if choice not in ENGINES:
        raise ValueError(f"WANDB_FILES_ENGINE must be one of {', '.join(ENGINES)}, got {choice!r}")
    return choice
