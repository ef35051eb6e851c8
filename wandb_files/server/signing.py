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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.orm import Session

from .db.settings import setting_or_create

SECRET_SETTING = "url_signing_secret"
_UPLOAD_PURPOSE = b"wandb-files.upload"
_SHA256_BLOCK = 64
_BLOB_PURPOSE = b"wandb-files.blob"
# Tokens stamped later than now by more than this (clock skew between processes) are not accepted.
_MAX_CLOCK_SKEW_SECONDS = 60


class InvalidToken(Exception):
    """The token was tampered with, malformed, or made with another secret."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is older than the signed-URL lifetime."""


def load_or_create_secret(session: Session) -> str:
    """The server's signing secret, made once and shared through the database by every server process."""
    return setting_or_create(session, SECRET_SETTING, secrets.token_hex(32))


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(data: bytes) -> str:
    # base64.urlsafe_b64encode without its Python layers: a listing signs a URL a file.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


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
        # HMAC-SHA256 (RFC 2104) with the key's two padded blocks hashed once: each signature then copies them.
        # hmac.digest looks SHA-256 up in OpenSSL 3 at every call, which costs twice the hashing itself.
        block = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        # (second, its base-36 text): the timestamp part of tokens, made once a second (a listing signs a URL
        # per file). One tuple, so that threads always read a matching pair.
        self._stamp: tuple[int, str] = (-1, "")

    def _signature(self, signed: str) -> str:
        inner = self._inner.copy()
        inner.update(signed.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return _b64encode(outer.digest())

    def dumps(self, payload: Any) -> str:
        # orjson: the compact UTF-8 JSON of json.dumps, without making an encoder per call (a token a file).
        body = _b64encode(orjson.dumps(payload))
        now = int(time.time())
        stamp = self._stamp
        if stamp[0] != now:
            stamp = self._stamp = (now, _base36(now))
        signed = f"{body}.{stamp[1]}"
        return f"{signed}.{self._signature(signed)}"

    def dumps_many(self, prefix: str, payloads: Iterable[Any]) -> list[str]:
        """`prefix + self.dumps(payload)` for each payload, stamped alike: the same tokens, made in one loop
        over bytes (a listing signs a URL a file, and the calls and text conversions cost more than HMAC)."""
        now = int(time.time())
        stamp = self._stamp
        if stamp[0] != now:
            stamp = self._stamp = (now, _base36(now))
        dot_stamp = f".{stamp[1]}".encode("ascii")
        start = prefix.encode("utf-8")
        first, second = self._inner, self._outer
        b2a, to_json, urlsafe = binascii.b2a_base64, orjson.dumps, _URLSAFE
        tokens = []
        for payload in payloads:
            signed = b2a(to_json(payload), newline=False).translate(urlsafe).rstrip(b"=") + dot_stamp
            inner = first.copy()
            inner.update(signed)
            outer = second.copy()
            outer.update(inner.digest())
            signature = b2a(outer.digest(), newline=False).translate(urlsafe).rstrip(b"=")
            tokens.append((start + signed + b"." + signature).decode("utf-8"))
        return tokens

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

    def blob_token(self, blob_key: str, *, size: int, md5: str, mimetype: str, filename: str) -> str:
        """A token allowing GET of one blob without an API key.

        It carries what the response needs besides the bytes (size, base64 md5 for the ETag, media type, the
        file name for Content-Disposition), so serving it needs no database. Blob keys are never reused: a
        re-uploaded file gets a new key and its old blob is deleted, so the token of a replaced or deleted
        file finds no blob and answers 404.

        Args:
            blob_key: The blob the file row points at.
            size: Its size in bytes.
            md5: Its base64 MD5 digest.
            mimetype: The media type to serve it with.
            filename: The last part of the file's name.

        Returns:
            The token, for a /blobs/{token} URL.
        """
        return self._blob.dumps([blob_key, size, md5, mimetype, filename])

    def blob_urls(self, prefix: str, blobs: Iterable[tuple[str, int, str, str, str]]) -> list[str]:
        """`prefix + blob_token(...)` for many blobs at once (what a listing page needs).

        Args:
            prefix: What goes before each token, e.g. ``https://host/blobs/``.
            blobs: (blob_key, size, md5, mimetype, filename) of each blob, as `blob_token` takes them.

        Returns:
            The URLs, in order.
        """
        return self._blob.dumps_many(prefix, blobs)

    def read_blob_token(self, token: str) -> BlobRef:
        """What a valid blob token says about its blob.

        Args:
            token: The token of a /blobs/{token} URL.

        Returns:
            The blob's key, size, md5, media type and file name.

        Raises:
            InvalidToken: it was tampered with, malformed, or made with another secret.
            ExpiredToken: it is older than the signed-URL lifetime.
        """
        payload = self._blob.loads(token, self.ttl_seconds)
        if (
            not isinstance(payload, list)
            or len(payload) != 5
            or not all(isinstance(v, str) for v in payload[:1] + payload[2:])
            or not isinstance(payload[1], int)
        ):
            raise InvalidToken("the signed URL is not valid")
        return BlobRef(*payload)


@dataclass(frozen=True)
class BlobRef:
    """A blob as a /blobs token names it: what serving it needs besides the bytes."""

    blob_key: str
    size: int
    md5: str
    mimetype: str
    filename: str
