"""The executable GraphQL schema: schema.graphql bound to the resolvers (Ariadne, schema-first)."""

from __future__ import annotations

from pathlib import Path

from ariadne import make_executable_schema
from graphql import GraphQLSchema

from .resolvers import BINDABLES

SCHEMA_PATH = Path(__file__).parent.parent / "schema.graphql"


def build_schema() -> GraphQLSchema:
    """The executable schema from schema.graphql."""
    return make_executable_schema(SCHEMA_PATH.read_text(encoding="utf-8"), *BINDABLES)
