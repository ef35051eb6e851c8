"""Opaque node ids ("File:12" in base64) and page cursors."""

from __future__ import annotations

import base64
import binascii

from .errors import bad_input

# base64.b64encode and urlsafe_b64encode, without their Python layers (a listing makes two ids a file).
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encode_node_id(kind: str, pk: int) -> str:
    """The opaque id of row `pk` of type `kind`, e.g. base64("Run:3")."""
    return binascii.b2a_base64(f"{kind}:{pk}".encode(), newline=False).decode()


def node_ids_of(kind: str, pks: list[int]) -> list[str]:
    """[encode_node_id(kind, pk) for pk in pks], in one loop."""
    b2a, start = binascii.b2a_base64, f"{kind}:".encode()
    return [b2a(start + b"%d" % pk, newline=False).decode() for pk in pks]


def decode_node_id(kind: str, node_id: object) -> int:
    """The row id inside a node id of type `kind`; BAD_USER_INPUT when it is not one."""
    try:
        if not isinstance(node_id, str):
            raise ValueError
        prefix, _, number = base64.b64decode(node_id, validate=True).decode().partition(":")
        if prefix != kind or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_input(f"invalid {kind} id: {node_id!r}") from None


def encode_cursor(kind: str, value: str) -> str:
    """An opaque, stable cursor for `value` (a file name or a run row id)."""
    return binascii.b2a_base64(f"{kind}:{value}".encode(), newline=False).translate(_URLSAFE).decode()


def cursors_of(kind: str, values: list[str]) -> list[str]:
    """[encode_cursor(kind, v) for v in values], in one loop."""
    b2a, urlsafe, start = binascii.b2a_base64, _URLSAFE, f"{kind}:"
    return [b2a((start + value).encode(), newline=False).translate(urlsafe).decode() for value in values]


def decode_cursor(kind: str, cursor: str) -> str:
    """The value inside a cursor of `kind`; BAD_USER_INPUT "invalid cursor" when it is not one."""
    try:
        prefix, sep, value = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition(":")
        if prefix != kind or not sep:
            raise ValueError
        return value
    except (ValueError, binascii.Error, UnicodeError):
        raise bad_input("invalid cursor") from None
