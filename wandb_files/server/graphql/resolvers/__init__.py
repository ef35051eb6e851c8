"""The resolvers of schema.graphql, one module a type (mutations with the type they change)."""

from __future__ import annotations

from ariadne import SchemaBindable

from . import file_mutations, files, history, logging, projects, query, runs, scalars, users

#: Everything `make_executable_schema` binds to schema.graphql.
BINDABLES: list[SchemaBindable] = [
    query.query,
    runs.mutation,
    file_mutations.mutation,
    users.user_type,
    users.entity_type,
    projects.project_type,
    runs.run_type,
    logging.logging_run_type,
    logging.logging_project_type,
    history.history_run_type,
    files.file_type,
    scalars.datetime_scalar,
    scalars.int64_scalar,
]
