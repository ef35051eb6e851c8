"""What your own test suites import: a real server in a subprocess, and a proxy that injects faults.

    from wandb_files.testing import BackgroundServer, FaultProxy

    with BackgroundServer(tmp_path / "data") as server, FaultProxy(server.base_url, fault_rate=0.2) as proxy:
        api = wandb_files.Api(api_key=server.api_key, base_url=proxy.url)
        ...

`BackgroundServer` needs the ``[server]`` extra (in the server's process); `FaultProxy` needs ``[proxy]``
(aiohttp) and is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wandb_files.testing.background import BackgroundServer, free_port

if TYPE_CHECKING:
    from wandb_files.testing.proxy import FAULTS, FaultProxy

__all__ = ["FAULTS", "BackgroundServer", "FaultProxy", "free_port"]


def __getattr__(name: str) -> Any:
    if name in ("FaultProxy", "FAULTS"):
        return getattr(importlib.import_module("wandb_files.testing.proxy"), name)
    raise AttributeError(f"module 'wandb_files.testing' has no attribute {name!r}")
