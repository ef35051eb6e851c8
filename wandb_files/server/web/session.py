"""The web page's cookie sessions: who is signed in, CSRF, signing in and out.

The session cookie (Starlette's SessionMiddleware: signed with a key derived from the server's secret,
HttpOnly, SameSite=Lax) holds the user id, a fingerprint of the key's stored hash, when it was made and a CSRF
token, never the key: changing a user's key ends their sessions at the next request, and signing out ends every
session of that user made before (a copy of the cookie is no longer good either), through a row of the
settings table. The views (pages.py) only ask who is signed in and for checked forms.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from ..db.users import authenticate, hash_api_key, record_sign_out, session_user

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

#: Where the server mounts the web page; the session cookie is sent to these paths only.
MOUNT = "/web"
SESSION_COOKIE = "wandb_files_session"
#: A session lasts this long after its last change (sign-in); signing out or a changed key ends it sooner.
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class WebViewer:
    """The signed-in user."""

    id: int
    name: str


def _key_fingerprint(session_key: bytes, api_key_sha256: str) -> str:
    """What the session keeps of the key: an HMAC of its stored hash, useless for anything but comparing."""
    return hmac.new(session_key, api_key_sha256.encode(), hashlib.sha256).hexdigest()[:32]


class WebSessions:
    """The web page's sessions over the server's database."""

    def __init__(self, sessions: sessionmaker[Session], secret: str, public_origin: str | None) -> None:
        """
        Args:
            sessions: The server's session factory.
            secret: The server's secret; the cookie's signing key and the key fingerprints' are derived from it.
            public_origin: --public-url's scheme and host, if any: forms may come from there too (a proxy in
                front may speak https), and when it is https the cookie is sent only over HTTPS.
        """
        self.sessions = sessions
        self.public_origin = public_origin
        self.session_key = hmac.new(secret.encode(), b"wandb-files.web-session", hashlib.sha256).digest()
        self._cookie_secret = hmac.new(secret.encode(), b"wandb-files.web-cookie", hashlib.sha256).hexdigest()

    def middleware(self) -> Middleware:
        """The cookie middleware of the web app."""
        return Middleware(
            SessionMiddleware,
            secret_key=self._cookie_secret,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_SECONDS,
            path=MOUNT,
            same_site="lax",
            https_only=self.public_origin is not None and self.public_origin.startswith("https:"),
        )

    @staticmethod
    def csrf_token(request: Request) -> str:
        """The session's CSRF token (made on first use)."""
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form, checked against CSRF: the session's token must come back, and a browser's
        Origin (when sent) must be this server's.

        Args:
            request: The POST.

        Returns:
            The form's fields.

        Raises:
            HTTPException: 403 when either check fails, 413 for a body over 16 KiB, 400 for a form that is not UTF-8.
        """
        origin = request.headers.get("origin")
        own = {f"{request.url.scheme}://{request.url.netloc}"}
        if self.public_origin is not None:
            own.add(self.public_origin)
        if origin is not None and origin not in own:
            raise HTTPException(403, "this form was sent from another site")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise HTTPException(413, "the form is too large")
        fields: dict[str, str] = {}
        # Anything but a urlencoded form carries no token, and is refused below like a form without one.
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
            try:
                fields = dict(parse_qsl(body.decode("utf-8"), max_num_fields=8))
            except (UnicodeDecodeError, ValueError):
                raise HTTPException(400, "the form could not be read") from None
        expected = request.session.get("csrf")
        sent = fields.get("csrf", "")
        if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), sent.encode()):
            raise HTTPException(403, "the form's security token is missing or stale: reload the page and try again")
        return fields

    def _viewer(self, request: Request) -> WebViewer | None:
        uid, fingerprint, made = (request.session.get(k) for k in ("uid", "kf", "iat"))
        if not isinstance(uid, int) or not isinstance(fingerprint, str) or not isinstance(made, int):
            return None
        with self.sessions() as session:
            row = session_user(session, uid)
        if (
            row is None
            # The key was changed (revoked) since sign-in.
            or not hmac.compare_digest(_key_fingerprint(self.session_key, row.api_key_sha256), fingerprint)
            # The user signed out (anywhere) after this session was made.
            or (row.value is not None and made <= int(row.value))
        ):
            request.session.clear()
            return None
        return WebViewer(row.id, row.name)

    async def viewer(self, request: Request) -> WebViewer | None:
        """The signed-in user, if the session is one and the user's key is still the one signed in with.

        Args:
            request: The request, with its session.

        Returns:
            The user, or None (and a session that is no longer good is cleared).
        """
        return await run_in_threadpool(self._viewer, request)

    async def sign_in(self, request: Request, api_key: str) -> bool:
        """Start a session for the holder of `api_key` (a fresh one: nothing of the anonymous one is kept).

        Args:
            request: The sign-in POST, its form already checked.
            api_key: The key typed in.

        Returns:
            Whether the key is a user's (if not, the session is left as it was).
        """

        def check() -> tuple[int, str] | None:
            with self.sessions() as session:
                user = authenticate(session, api_key)
            return (user.id, hash_api_key(api_key)) if user is not None else None

        found = await run_in_threadpool(check) if api_key else None
        if found is None:
            return False
        request.session.clear()
        request.session.update(
            uid=found[0],
            kf=_key_fingerprint(self.session_key, found[1]),
            iat=time.time_ns(),
            csrf=secrets.token_urlsafe(32),
        )
        return True

    async def sign_out(self, request: Request) -> None:
        """End this session and every other one its user made before now.

        Args:
            request: The sign-out POST, its form already checked.
        """
        uid = request.session.get("uid")
        if isinstance(uid, int):

            def record() -> None:
                with self.sessions() as session:
                    record_sign_out(session, uid, time.time_ns())

            await run_in_threadpool(record)
        request.session.clear()
