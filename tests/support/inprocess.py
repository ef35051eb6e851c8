"""A server app in this process (no HTTP): its state object, with user admin and run admin/p/r."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_files.server.config import ServerConfig
from wandb_files.server.db.models import Entity, Project, Run
from wandb_files.server.db.users import ensure_admin
from wandb_files.server.http.app import _Server, create_app

#: The admin's API key.
ADMIN_KEY = "k" * 40


def in_process_server(tmp_path: Path, **config: Any) -> _Server:
    """A server over a new data folder under `tmp_path`, holding the admin and its run admin/p/r (id 1);
    `config` holds further ServerConfig fields (an S3 blob store, say)."""
    app = create_app(ServerConfig(data_dir=tmp_path / "data", **config))
    srv: _Server = app.state.server
    with srv.sessions() as session:
        ensure_admin(session, ADMIN_KEY)
        entity = session.query(Entity).filter_by(name="admin").one()
        project = Project(entity_id=entity.id, name="p")
        session.add(project)
        session.flush()
        session.add(Run(project_id=project.id, name="r", user_id=entity.owner_id))
        session.commit()
    return srv
