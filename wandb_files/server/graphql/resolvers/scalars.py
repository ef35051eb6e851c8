"""The custom scalars: DateTime and Int64."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ariadne import ScalarType
from graphql import GraphQLError, IntValueNode, ValueNode

# --- scalars ---------------------------------------------------------------------------------------

datetime_scalar = ScalarType("DateTime")
int64_scalar = ScalarType("Int64")


@datetime_scalar.serializer
def serialize_datetime(value: datetime) -> str:
    """A datetime as ISO-8601 to the second with a Z (the columns hold naive UTC).

    Args:
        value: The column's value.

    Returns:
        ``YYYY-MM-DDTHH:MM:SSZ``, as ``strftime("%Y-%m-%dT%H:%M:%SZ")`` writes it.
    """
    if value.tzinfo is None and value.year >= 1000:
        # strftime's very text, from C code (strftime goes through time.strftime): a listing has one a file.
        return value.isoformat(timespec="seconds") + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@int64_scalar.serializer
def serialize_int64(value: int) -> int:
    """Sizes beyond 2**31 as plain JSON integers."""
    return int(value)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int64_value(value: object) -> int:
    """An Int64 variable: a JSON integer in range (not a bool, float or string).

    Args:
        value: The variable's JSON value.

    Returns:
        The integer.

    Raises:
        GraphQLError: anything else (a GraphQLError, so it is reported as BAD_USER_INPUT).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise GraphQLError(f"Int64 must be a 64-bit integer, not {value!r}")
    return value


# Set by a call, not with the decorator: the decorator is typed to return a Callable[[Any], Any], which would
# hide from parse_int64_literal (and mypy) that this returns an int.
int64_scalar.set_value_parser(parse_int64_value)


@int64_scalar.literal_parser
def parse_int64_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> int:
    """An Int64 written in the document.

    Args:
        node: The literal.
        variables: The request's variables (unused: an Int64 literal holds none).

    Returns:
        The integer.

    Raises:
        GraphQLError: it is not an integer literal in range.
    """
    if not isinstance(node, IntValueNode):
        raise GraphQLError("Int64 must be an integer")
    return parse_int64_value(int(node.value))
