"""Reading one page of a run's files by keyset: WHERE run_id = ? AND name > ? ORDER BY name LIMIT ?.

A page walks the unique (run_id, name) index from the cursor on (the previous page's last name), so page 2,000
costs what page 1 does; nothing here uses OFFSET. `files_page_statement` is the SELECT of `File` objects (the
web page's folders, the scale tests); `file_page_rows` gives just the columns a GraphQL listing reads, from
statements built once per shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from .models import File


def files_page_statement(
    run_id: int,
    after_name: str | None,
    limit: int,
    *,
    names: list[str] | None = None,
    pattern: str | None = None,
    before_name: str | None = None,
) -> Select[File]:
    """One page of a run's files, ordered by name, as a SELECT of `File` rows.

    Args:
        run_id: The run's row id.
        after_name: Only names after this one (the previous page's last), or None.
        limit: At most this many rows.
        names: Only these names (None or empty: no such filter).
        pattern: Only names matching this SQL LIKE pattern (backslash escapes), or None.
        before_name: Only names before this one (where a folder's range of the index ends), or None.

    Returns:
        The SELECT of `File` rows.
    """
    stmt = select(File).where(File.run_id == run_id)
    if after_name is not None:
        stmt = stmt.where(File.name > after_name)
    if before_name is not None:
        stmt = stmt.where(File.name < before_name)
    if names:
        stmt = stmt.where(File.name.in_(set(names)))
    if pattern is not None:
        stmt = stmt.where(File.name.like(pattern, escape="\\"))
    return stmt.order_by(File.name).limit(limit)


# The shapes of files_page_statement with every value a parameter, made once a shape: building a statement
# costs more than running it. Keyed by (columns, after, names, pattern).
_PAGE_TEMPLATES: dict[tuple[tuple[Any, ...], bool, bool, bool], Select[Any]] = {}


def file_page_rows(
    session: Session,
    columns: tuple[Any, ...],
    run_id: int,
    after_name: str | None,
    limit: int,
    *,
    names: list[str] | None = None,
    pattern: str | None = None,
) -> Sequence[Any]:
    """The rows (just `columns`) of files_page_statement(run_id, after_name, limit, names, pattern).

    Args:
        session: The request's session (its connection runs the query: column rows need no ORM).
        columns: The `File` columns to select, always the same tuple object for one caller.
        run_id: The run's row id.
        after_name: Only names after this one (the previous page's last), or None.
        limit: At most this many rows.
        names: Only these names (None or empty: no such filter).
        pattern: Only names matching this SQL LIKE pattern (backslash escapes), or None.

    Returns:
        SQLAlchemy's rows, in name order, with the columns' Python types (date columns as datetimes).
    """
    shape = (columns, after_name is not None, bool(names), pattern is not None)
    stmt = _PAGE_TEMPLATES.get(shape)
    if stmt is None:
        stmt = select(*columns).where(File.run_id == bindparam("run_id"))
        if after_name is not None:
            stmt = stmt.where(File.name > bindparam("after"))
        if names:
            stmt = stmt.where(File.name.in_(bindparam("names", expanding=True)))
        if pattern is not None:
            stmt = stmt.where(File.name.like(bindparam("pattern"), escape="\\"))
        stmt = _PAGE_TEMPLATES.setdefault(shape, stmt.order_by(File.name).limit(bindparam("limit")))
    params: dict[str, Any] = {"run_id": run_id, "limit": limit}
    if after_name is not None:
        params["after"] = after_name
    if names:
        params["names"] = sorted(set(names))
    if pattern is not None:
        params["pattern"] = pattern
    # The session's connection, not the session: column rows need no ORM result processing.
    return session.connection().execute(stmt, params).all()
