"""Signed, expiring tokens for upload URLs and direct (key-less) download URLs.

A token is `<payload>.<timestamp>.<signature>`: the payload is base64url JSON, the timestamp whole
seconds in base 36, the signature base64url HMAC-SHA256 over the first two parts with a key derived
from the server secret per purpose, so an upload token can never be replayed as a download token.
Signing is a handful of microseconds: a RunFiles page signs one direct URL per file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .db.models import Setting

SECRET_SETTING = "url_signing_secret"
_UPLOAD_PURPOSE = b"wandb-files.upload"
_BLOB_PURPOSE = b"wandb-files.blob"
# Tokens stamped later than now by more than this (clock skew between processes) are not accepted.
_MAX_CLOCK_SKEW_SECONDS = 60


class InvalidToken(Exception):
    """The token was tampered with, malformed, or made with another secret."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is older than the signed-URL lifetime."""


def load_or_create_secret(session: Session) -> str:
    """The server's signing secret, made once and shared through the database by every server process."""
    # INSERT … ON CONFLICT DO NOTHING, then read: processes starting at once end up with the same secret.
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(Setting).values(key=SECRET_SETTING, value=secrets.token_hex(32)).on_conflict_do_nothing())
    session.commit()
    return session.scalars(select(Setting.value).where(Setting.key == SECRET_SETTING)).one()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


class _Purpose:
    """Signs and checks the tokens of one purpose."""

    def __init__(self, secret: str, purpose: bytes) -> None:
        key = hmac.new(secret.encode("utf-8"), purpose, hashlib.sha256).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def _signature(self, signed: str) -> str:
        mac = self._mac.copy()
        mac.update(signed.encode("ascii"))
        return _b64encode(mac.digest())

    def dumps(self, payload: Any) -> str:
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        signed = f"{body}.{_base36(int(time.time()))}"
        return f"{signed}.{self._signature(signed)}"

    def loads(self, token: str, max_age: int) -> Any:
        if not isinstance(token, str) or not token.isascii():
            raise InvalidToken("the signed URL is not valid")
        signed, _, signature = token.rpartition(".")
        body, _, stamp = signed.partition(".")
        if not body or not stamp or not hmac.compare_digest(signature, self._signature(signed)):
            raise InvalidToken("the signed URL is not valid")
        try:
            age = time.time() - int(stamp, 36)
            payload = json.loads(_b64decode(body))
        except (ValueError, binascii.Error):
            raise InvalidToken("the signed URL is not valid") from None
        if age < -_MAX_CLOCK_SKEW_SECONDS:
            raise InvalidToken("the signed URL is not valid")
        if age > max_age:
            raise ExpiredToken("the signed URL has expired")
        return payload


class UrlSigner:
    """Makes and checks the tokens embedded in /uploads/{token} and /blobs/{token} URLs."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._upload = _Purpose(secret, _UPLOAD_PURPOSE)
        self._blob = _Purpose(secret, _BLOB_PURPOSE)

    def upload_token(self, run_id: int, file_name: str) -> str:
        """A token allowing PUTs of the bytes of `file_name` into run `run_id`."""
        return self._upload.dumps([run_id, file_name])

    def read_upload_token(self, token: str) -> tuple[int, str]:
        """The (run id, file name) of a valid upload token; raises InvalidToken/ExpiredToken."""
        payload = self._upload.loads(token, self.ttl_seconds)
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not isinstance(payload[0], int)
            or not isinstance(payload[1], str)
        ):
            raise InvalidToken("the signed URL is not valid")
        return payload[0], payload[1]

    def blob_token(self, blob_key: str) -> str:
        """A token allowing GET of one blob without an API key."""
        return self._blob.dumps(blob_key)

    def read_blob_token(self, token: str) -> str:
        """The blob key of a valid blob token; raises InvalidToken/ExpiredToken."""
        payload = self._blob.loads(token, self.ttl_seconds)
        if not isinstance(payload, str):
            raise InvalidToken("the signed URL is not valid")
        return payload
