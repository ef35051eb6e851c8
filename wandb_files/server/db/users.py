"""Users, their entities and API keys (stored only as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Row, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..names import validate_user_name
from .database import write_transaction
from .models import Entity, Setting, User
from .settings import put_setting

ADMIN_NAME = "admin"
#: W&B's keys are 40 hex characters; a shorter key is too easy to guess.
MIN_KEY_LENGTH = 32
MAX_KEY_LENGTH = 256


class UserError(ValueError):
    """A user could not be created or changed; the message is fit to show to the operator."""


def hash_api_key(api_key: str) -> str:
    """The hex SHA-256 of an API key, the only form in which keys are stored."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    """A fresh 40-hex-character key, the shape of a W&B key."""
    return secrets.token_hex(20)


def check_api_key(api_key: str) -> str:
    """Return `api_key` if it may be a user's key: 32 to 256 printable ASCII characters, no spaces.

    Raises:
        UserError: it may not (the message says why, never the key).
    """
    if not MIN_KEY_LENGTH <= len(api_key) <= MAX_KEY_LENGTH:
        raise UserError(
            f"an API key must be {MIN_KEY_LENGTH}-{MAX_KEY_LENGTH} characters long (this one has {len(api_key)}); "
            "leave --api-key out to have a random 40-character key generated"
        )
    if not api_key.isascii() or not api_key.isprintable() or any(ch.isspace() for ch in api_key):
        raise UserError("an API key must be printable ASCII characters without spaces")
    return api_key


def create_user(session: Session, name: str, api_key: str | None = None, admin: bool = False) -> tuple[User, str]:
    """Create user `name` with an entity of the same name; return the user and its API key."""
    try:
        validate_user_name(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    key = check_api_key(api_key) if api_key is not None else generate_api_key()
    try:
        with write_transaction(session):
            if session.scalar(select(User.id).where(User.name == name)) is not None:
                raise UserError(f"user {name!r} already exists")
            if session.scalar(select(Entity.id).where(Entity.name == name)) is not None:
                raise UserError(f"entity {name!r} already exists")
            if session.scalar(select(User.id).where(User.api_key_sha256 == hash_api_key(key))) is not None:
                raise UserError("that API key already belongs to another user")
            user = User(name=name, api_key_sha256=hash_api_key(key), admin=admin)
            session.add(user)
            session.flush()
            session.add(Entity(name=name, owner_id=user.id))
    except IntegrityError:
        # Another process created the same name or key between our check and insert.
        raise UserError(f"user {name!r} or that API key already exists") from None
    return user, key


def ensure_admin(session: Session, api_key: str | None) -> str | None:
    """Make sure user `admin` exists; set its key when one is given.

    Returns the generated key when the admin user was just created without one (to be shown once),
    else None.
    """
    admin = session.scalar(select(User).where(User.name == ADMIN_NAME))
    if admin is None:
        try:
            _, key = create_user(session, ADMIN_NAME, api_key, admin=True)
        except UserError:
            # A second server process over the same database created it first; fall through to update.
            admin = session.scalar(select(User).where(User.name == ADMIN_NAME))
            if admin is None:
                raise
        else:
            return None if api_key is not None else key
    if api_key is not None:
        new_hash = hash_api_key(check_api_key(api_key))
        if admin.api_key_sha256 != new_hash:
            try:
                with write_transaction(session):
                    user = session.get(User, admin.id)
                    assert user is not None  # users are never deleted
                    user.api_key_sha256 = new_hash
            except IntegrityError:
                raise UserError("that API key already belongs to another user") from None
    return None


_AUTHENTICATE = select(User.id, User.name, User.admin).where(User.api_key_sha256 == bindparam("key_hash"))


def authenticate(session: Session, api_key: str) -> Row[int, str, bool] | None:
    """The id, name and admin flag of the user holding `api_key`, or None (one indexed lookup, no ORM)."""
    if not api_key:
        return None
    return session.execute(_AUTHENTICATE, {"key_hash": hash_api_key(api_key)}).first()


def _signed_out_key(uid: int) -> str:
    """The settings row holding when user `uid` last signed out of the web page (ns since the epoch)."""
    return f"web.signed_out.{uid}"


def session_user(session: Session, uid: int) -> Row[int, str, str, str | None] | None:
    """What a web session of user `uid` is checked against: id, name, stored key hash, and when the user last
    signed out (ns since the epoch, as text; None if never), in one query; None if there is no such user.

    Args:
        session: An open session.
        uid: The user id the session cookie holds.

    Returns:
        The row, or None.
    """
    return session.execute(
        select(User.id, User.name, User.api_key_sha256, Setting.value)
        .outerjoin(Setting, Setting.key == _signed_out_key(uid))
        .where(User.id == uid)
    ).first()


def record_sign_out(session: Session, uid: int, at_ns: int) -> None:
    """Web sessions of `uid` made until `at_ns` are over, wherever their cookie is (shared by every instance).

    Args:
        session: An open session.
        uid: The user.
        at_ns: When they signed out (ns since the epoch).
    """
    put_setting(session, _signed_out_key(uid), str(at_ns))
