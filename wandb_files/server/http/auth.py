"""Reading the API key from a request (HTTP Basic, as W&B clients send it)."""

from __future__ import annotations

import base64
import binascii


def api_key_from_authorization(header: str | None) -> str | None:
    """The API key in an `Authorization: Basic base64(user:key)` header; any user name is accepted."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None
