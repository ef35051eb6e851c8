"""GraphQL errors with a machine-readable extensions.code, and how errors are shown to clients."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

logger = logging.getLogger("wandb_files.server")

UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL = "INTERNAL"


class ApiError(GraphQLError):
    """An error meant for the client: its message and code are shown as they are."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, extensions={"code": code})
        self.code = code


def entity_not_found(entity: str) -> ApiError:
    """The entity does not exist, or is not the viewer's: one answer for both, so nothing can be probed."""
    return ApiError(NOT_FOUND, f"entity {entity!r} not found, or you do not have access to it")


def not_found(message: str) -> ApiError:
    """Something that must exist does not."""
    return ApiError(NOT_FOUND, message)


def bad_input(message: str) -> ApiError:
    """The request's arguments are unacceptable."""
    return ApiError(BAD_USER_INPUT, message)


def error_body(code: str, message: str) -> dict[str, Any]:
    """A GraphQL-shaped response body carrying one error, for failures outside execution."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """Ariadne error formatter: ApiErrors as they are, parse/validation errors as BAD_USER_INPUT,
    anything else as an opaque INTERNAL error (logged with its traceback, never sent)."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, ApiError) or isinstance(error, ApiError):
        return formatted
    # graphql-core wraps a bad variable value's coercion error (a GraphQLError) as the original error.
    if original is None or isinstance(original, GraphQLError):
        formatted["extensions"] = {"code": BAD_USER_INPUT}
        return formatted
    logger.error("internal error resolving %s", formatted.get("path"), exc_info=original)
    result: dict[str, Any] = {"message": "internal server error", "extensions": {"code": INTERNAL}}
    for key in ("locations", "path"):
        if key in formatted:
            result[key] = formatted[key]
    return result
