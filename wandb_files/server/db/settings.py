"""Server-wide settings (the settings table): written by several server processes at once, so by upserts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .database import upsert_insert, write_transaction
from .models import Setting


def setting_or_create(session: Session, key: str, value: str) -> str:
    """The value of setting `key`, made `value` first if it has none (the first process to ask wins).

    Args:
        session: An open session; committed.
        key: The setting.
        value: Its value if it has none yet.

    Returns:
        The value every process sees.
    """
    # INSERT … ON CONFLICT DO NOTHING, then read: processes starting at once end up with the same value.
    session.execute(upsert_insert(session)(Setting).values(key=key, value=value).on_conflict_do_nothing())
    session.commit()
    return session.scalars(select(Setting.value).where(Setting.key == key)).one()


def put_setting(session: Session, key: str, value: str) -> None:
    """Set `key` to `value` in a write transaction of its own, whether or not it had one.

    Args:
        session: An open session.
        key: The setting.
        value: Its new value.
    """
    with write_transaction(session):
        stmt = upsert_insert(session)(Setting).values(key=key, value=value)
        session.execute(stmt.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value}))
