"""The User and Entity types."""

from __future__ import annotations

from typing import Any

from ariadne import ObjectType

from ...db import access
from ...db.models import Entity, User
from ..context import Info, Viewer, ctx_of
from ..ids import encode_cursor, encode_node_id
from .common import page_size

# --- User / Entity ---------------------------------------------------------------------------------

user_type = ObjectType("User")


@user_type.field("id")
def resolve_user_id(user: Viewer | User, info: Info) -> str:
    """Opaque user id."""
    return encode_node_id("User", user.id)


@user_type.field("username")
@user_type.field("entity")
def resolve_user_name(user: Viewer | User, info: Info) -> str:
    """A user's name doubles as username and default entity."""
    return user.name


@user_type.field("email")
def resolve_user_email(user: Viewer | User, info: Info) -> None:
    """No e-mail addresses are kept."""
    return None


@user_type.field("flags")
def resolve_user_flags(user: Viewer | User, info: Info) -> str:
    """No feature flags."""
    return "{}"


@user_type.field("apiKeys")
def resolve_user_api_keys(user: Viewer | User, info: Info) -> dict[str, Any]:
    """Keys are stored only as hashes, so none can be listed (W&B's old keys were their own names)."""
    return {"edges": []}


@user_type.field("teams")
def resolve_user_teams(user: Viewer | User, info: Info, first: int | None = None) -> dict[str, Any]:
    """The entities the user owns."""
    entities = access.viewer_entities(ctx_of(info).session, user.id, page_size(first) if first is not None else None)
    return {"edges": [{"node": e, "cursor": encode_cursor("entity", e.name)} for e in entities]}


entity_type = ObjectType("Entity")


@entity_type.field("id")
def resolve_entity_id(entity: Entity, info: Info) -> str:
    """Opaque entity id."""
    return encode_node_id("Entity", entity.id)
