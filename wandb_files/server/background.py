"""Deprecated: `wandb_files.server.background` moved to `wandb_files.testing` (this path keeps working for one release)."""

from wandb_files.server._moved import moved_to

__getattr__ = moved_to(__name__, "wandb_files.testing.background", ("BackgroundServer", "free_port"))
