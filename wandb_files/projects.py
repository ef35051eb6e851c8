"""`Project` and `Projects`: the projects of an entity, as `Api.projects()` lists them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wandb_files import documents
from wandb_files.errors import NotFoundError
from wandb_files.paginator import Paginator
from wandb_files.runs import DEFAULT_RUN_ORDER, Runs

if TYPE_CHECKING:
    from wandb_files.graphql import GraphQLClient


class Project:
    """A project of an entity, as `Api.projects()` lists it.

    Args:
        client: The GraphQL client (`Api.client`).
        entity: The entity that owns the project.
        name: The project's name.
        attrs: The project's attributes as the server sent them (``id``, ``createdAt``, ``isBenchmark``, …).
    """

    def __init__(self, client: GraphQLClient, entity: str, name: str, attrs: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.entity = entity
        self.name = name
        self._attrs: dict[str, Any] = dict(attrs or {})

    @property
    def id(self) -> str | None:
        """The project's opaque node id on the server."""
        return self._attrs.get("id")

    @property
    def created_at(self) -> str | None:
        """When the project was created (ISO-8601)."""
        return self._attrs.get("createdAt")

    @property
    def path(self) -> list[str]:
        """``[entity, name]``, as in W&B."""
        return [self.entity, self.name]

    def runs(
        self, filters: Mapping[str, Any] | None = None, order: str | None = DEFAULT_RUN_ORDER, per_page: int = 50
    ) -> Runs:
        """The project's runs that match `filters`, in `order`, fetched lazily (see `Api.runs`).

        Raises:
            TypeError, ValueError: a malformed `filters`, an `order` that is not a string, or a bad `per_page`.
        """
        return Runs(self.client, self.entity, self.name, filters=filters, order=order, per_page=per_page)

    def __repr__(self) -> str:
        return f"<Project {self.entity}/{self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Project) and self.path == other.path and self.client is other.client

    def __hash__(self) -> int:
        return hash(tuple(self.path))


class Projects(Paginator[Project]):
    """The projects of an entity, by name, fetched lazily page by page.

    Args:
        client: The GraphQL client (`Api.client`).
        entity: The entity whose projects these are.
        per_page: How many projects one request fetches (1 to 10,000).

    Raises:
        TypeError, ValueError: `per_page` is not an int from 1 to 10,000.

    The server does not count projects, so `len()` walks the pages (without keeping what it walks past).
    """

    QUERY = documents.PROJECTS
    CURSOR_VARIABLE = "cursor"
    LIMIT_VARIABLE = "perPage"

    def __init__(self, client: GraphQLClient, entity: str, per_page: int = 50) -> None:
        self.entity = entity
        super().__init__(client, {"entity": entity}, per_page)

    def _connection(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        found = data.get("models")
        if found is None:
            raise NotFoundError(f"Entity {self.entity} not found")
        return found  # type: ignore[no-any-return]

    def _convert_node(self, node: Mapping[str, Any]) -> Project:
        return Project(self.client, str(node.get("entityName") or self.entity), node["name"], attrs=node)

    def __repr__(self) -> str:
        return f"<Projects {self.entity} ({self._known_count()} projects)>"
