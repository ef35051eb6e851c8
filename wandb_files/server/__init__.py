"""The embedded W&B-compatible file server (GraphQL over Starlette, SQLite, local blob store).

This package imports nothing from the rest of `wandb_files`; schema.graphql is the only shared piece.
"""

from .config import ServerConfig
from .http.app import create_app

__all__ = ["ServerConfig", "create_app"]
