"""Signed, expiring tokens for upload URLs and direct (key-less) download URLs."""

from __future__ import annotations

import secrets
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from .models import Setting

SECRET_SETTING = "url_signing_secret"
# One salt per purpose, so an upload token can never be replayed as a download token and vice versa.
_UPLOAD_SALT = "wandb-files.upload"
_BLOB_SALT = "wandb-files.blob"


class InvalidToken(Exception):
    """The token was tampered with, malformed, or made with another secret."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is older than the signed-URL lifetime."""


def load_or_create_secret(session: Session) -> str:
    """The server's signing secret, made once and shared through the database by every server process."""
    # INSERT OR IGNORE, then read: two processes starting at once end up with the same secret.
    session.execute(
        insert(Setting).values(key=SECRET_SETTING, value=secrets.token_hex(32)).on_conflict_do_nothing()
    )
    session.commit()
    return session.scalars(select(Setting.value).where(Setting.key == SECRET_SETTING)).one()


class UrlSigner:
    """Makes and checks the tokens embedded in /uploads/{token} and /blobs/{token} URLs."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._upload = URLSafeTimedSerializer(secret, salt=_UPLOAD_SALT)
        self._blob = URLSafeTimedSerializer(secret, salt=_BLOB_SALT)

    def _load(self, serializer: URLSafeTimedSerializer, token: str) -> Any:
        try:
            return serializer.loads(token, max_age=self.ttl_seconds)
        except SignatureExpired:
            raise ExpiredToken("the signed URL has expired") from None
        except BadSignature:
            raise InvalidToken("the signed URL is not valid") from None

    def upload_token(self, run_id: int, file_name: str) -> str:
        """A token allowing one PUT of the bytes of `file_name` into run `run_id`."""
        return self._upload.dumps([run_id, file_name])

    def read_upload_token(self, token: str) -> tuple[int, str]:
        """The (run id, file name) of a valid upload token; raises InvalidToken/ExpiredToken."""
        payload = self._load(self._upload, token)
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
        payload = self._load(self._blob, token)
        if not isinstance(payload, str):
            raise InvalidToken("the signed URL is not valid")
        return payload
