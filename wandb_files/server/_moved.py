"""The deprecated paths of what moved to `wandb_files.testing` (they keep working for one release).

Shims only: the server package itself imports nothing outside `wandb_files.server`; the new module is imported
when a moved name is first asked for.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_to(module: str, new_module: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A module `__getattr__` that hands out `names` from `new_module` with a DeprecationWarning.

    Args:
        module: The old module's name (``__name__``), for the messages.
        new_module: Where the names live now.
        names: The names that moved.

    Returns:
        The function to assign to the old module's `__getattr__`.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module} is deprecated: import {name} from wandb_files.testing instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
