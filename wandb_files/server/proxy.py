"""Deprecated: `wandb_files.server.proxy` moved to `wandb_files.testing` (this path keeps working for one release).

A shim only: the server package itself imports nothing outside `wandb_files.server`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = ("FaultProxy", "FAULTS")


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"{__name__} is deprecated: import {name} from wandb_files.testing instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("wandb_files.testing.proxy"), name)
