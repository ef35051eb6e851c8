"""What the web page's tests share: a signed-in HTTP session, rows seeded straight through the server's database
layer (names the upload path refuses today, thousands of files in a second), and a user's key changed in place.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import uuid
from collections.abc import Iterable
from datetime import datetime

import requests
from sqlalchemy import insert, update

from tests.support import LiveServer
from wandb_files.server.db.access import owned_run
from wandb_files.server.db.database import create_db_engine, make_session_factory, write_transaction
from wandb_files.server.db.models import Entity, File, Project, Run, User, utcnow
from wandb_files.server.db.users import hash_api_key
from wandb_files.server.mediatypes import guess_mimetype

__all__ = ["WebClient", "change_key", "csrf_of", "seed_files", "seed_run"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token of the first form in `page`."""
    found = _CSRF.search(page)
    assert found, page[:2000]
    return html.unescape(found.group(1))


class WebClient:
    """A browser-like HTTP session on the web page (cookies kept, redirects not followed)."""

    def __init__(self, server: LiveServer) -> None:
        self.base = server.base_url + "/web"
        self.http = requests.Session()

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, allow_redirects=False, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str], **kwargs: object) -> requests.Response:
        return self.http.post(self.base + path, data=data, timeout=30, allow_redirects=False, **kwargs)  # type: ignore[arg-type]

    def sign_in(self, api_key: str) -> requests.Response:
        token = csrf_of(self.get("/").text)
        response = self.post("/signin", {"api_key": api_key, "csrf": token})
        assert response.status_code == 303, response.text
        return response


def _sessions(server: LiveServer):  # type: ignore[no-untyped-def]
    engine = create_db_engine(server.database_url or server.data_dir / "wandb-files.db", migrate=False)
    return engine, make_session_factory(engine)


def seed_run(server: LiveServer, user: str, project: str, run: str, **columns: object) -> None:
    """Create run `user/project/run` (and the project) in the server's database."""
    engine, sessions = _sessions(server)
    try:
        with sessions() as session, write_transaction(session):
            owner = session.query(User).filter_by(name=user).one()
            entity = session.query(Entity).filter_by(name=user).one()
            found = session.query(Project).filter_by(entity_id=entity.id, name=project).one_or_none()
            if found is None:
                found = Project(entity_id=entity.id, name=project, created_at=columns.get("created_at", utcnow()))
                session.add(found)
                session.flush()
            session.add(Run(project_id=found.id, name=run, user_id=owner.id, **columns))
    finally:
        engine.dispose()


def seed_files(
    server: LiveServer,
    path: tuple[str, str, str],
    names: Iterable[str],
    *,
    size: int = 10,
    updated_at: datetime | None = None,
) -> None:
    """Rows for `names` in run `path` (entity, project, run of the entity's owner), with no bytes behind them:
    straight through the database layer, so names the upload path refuses can be shown, and 5,000 files take a
    moment. `runs.file_count` is kept right."""
    entity, project, run = path
    engine, sessions = _sessions(server)
    try:
        with sessions() as session, write_transaction(session):
            owner = session.query(Entity).filter_by(name=entity).one().owner_id
            found = owned_run(session, owner, entity, project, run)
            assert found is not None, path
            md5 = base64.b64encode(hashlib.md5(b"x" * size).digest()).decode()
            rows = [
                {
                    "run_id": found.id,
                    "name": name,
                    "size_bytes": size,
                    "md5": md5,
                    "mimetype": guess_mimetype(name),
                    "blob_key": uuid.uuid4().hex,
                    "updated_at": updated_at or utcnow(),
                }
                for name in names
            ]
            session.execute(insert(File), rows)
            session.execute(update(Run).where(Run.id == found.id).values(file_count=Run.file_count + len(rows)))
    finally:
        engine.dispose()


def change_key(server: LiveServer, user: str) -> str:
    """Give `user` a new API key (revoking the old one) in the server's database; returns the new key."""
    new_key = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    engine, sessions = _sessions(server)
    try:
        with sessions() as session, write_transaction(session):
            session.execute(update(User).where(User.name == user).values(api_key_sha256=hash_api_key(new_key)))
    finally:
        engine.dispose()
    server._users.pop(user, None)  # the LiveServer's cache of keys
    return new_key
