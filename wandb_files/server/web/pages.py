"""The web page's routes: sign-in, entities, projects, runs, a run's files, downloads.

Access is the API's: every lookup goes through `access` from the viewer's own entities, so another user's
run is a 404 page, as a missing one. Who is signed in, and whether a form may be trusted, is session.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..db import access, runfilters, runquery
from ..db.folders import Entry, folder_page
from ..db.models import File, Project, Run
from ..graphql.errors import ApiError
from ..graphql.ids import decode_cursor, encode_cursor
from .render import Renderer
from .runtable import RunsPage, order_param, runs_table
from .session import WebSessions, WebViewer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SORT_KEYS = ("name", "size", "type", "updated", "md5")
#: The kind of the project page's cursors: a run's position under the page's order (runfilters.position_text).
_RUNS_CURSOR = "webruns"
_DEFAULT_RUN_ORDER = order_param(runfilters.parse_order(None))

#: Sent with every page: nothing from another origin (no external assets, no inline script), never framed.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on our own forms.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class FileOpener(Protocol):
    """What serves a file's bytes to the web page: the server's own download path (the blob, or with S3 a
    redirect to a presigned URL), as an attachment."""

    def __call__(self, file: File) -> Response | None:
        """The response for `file`'s bytes, or None if its blob is gone (replaced or deleted meanwhile)."""


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the web page (and no-store: pages show private data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def attachment_disposition(name: str) -> str:
    """A Content-Disposition that makes a browser save the file under its base name (RFC 6266): an ASCII
    `filename` with anything unsafe replaced, and the exact name as `filename*`.

    Args:
        name: The file's name in the run (its last segment is used).

    Returns:
        The header's value.
    """
    base = name.rsplit("/", 1)[-1]
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-+ ()") else "_" for ch in base)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


class WebPages:
    """The routes of the web page over the server's database and file path."""

    def __init__(self, sessions: sessionmaker[Session], web_sessions: WebSessions, open_file: FileOpener) -> None:
        self.sessions = sessions
        self.web_sessions = web_sessions
        self.open_file = open_file
        self.renderer = Renderer()

    # --- plumbing ------------------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, status: int = 200, *, new_session: bool = True, **context: Any
    ) -> HTMLResponse:
        """`template` as the response, with the CSRF token every form needs (made now when `new_session`)."""
        context.setdefault("viewer", None)
        token = self.web_sessions.csrf_token(request) if new_session else request.session.get("csrf", "")
        html = self.renderer.render(template, csrf=token, root=self.root(request), **context)
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str, viewer: WebViewer | None = None) -> HTMLResponse:
        """An error page. It never starts a session: a refused cross-site POST arrives without the (Lax)
        cookie, and a fresh cookie in its answer would replace the visitor's session."""
        return self.page(request, "error.html", status, new_session=False, code=status, message=message, viewer=viewer)

    @staticmethod
    def root(request: Request) -> str:
        """The path the web page is mounted at ("/web"), for links."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def signed_in(self, request: Request) -> WebViewer | Response:
        """The viewer, or the sign-in page to answer with."""
        viewer = await self.web_sessions.viewer(request)
        if viewer is None:
            return self.page(request, "signin.html", 401, message="Sign in with your API key.")
        return viewer

    # --- routes --------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """GET /: the sign-in form, or the viewer's entities."""
        viewer = await self.web_sessions.viewer(request)
        if viewer is None:
            return self.page(request, "signin.html", message=None)

        def entities() -> list[str]:
            with self.sessions() as session:
                return [e.name for e in access.viewer_entities(session, viewer.id)]

        return self.page(request, "entities.html", viewer=viewer, entities=await run_in_threadpool(entities))

    async def sign_in(self, request: Request) -> Response:
        """POST /signin: check the key, start a session (a fresh one: nothing of the anonymous one is kept)."""
        fields = await self.web_sessions.form(request)
        if not await self.web_sessions.sign_in(request, fields.get("api_key", "").strip()):
            return self.page(request, "signin.html", 401, message="That API key is not valid.")
        return RedirectResponse(self.root(request) + "/", status_code=303)

    async def sign_out(self, request: Request) -> Response:
        """POST /signout: end this session and every other one the user made before now."""
        await self.web_sessions.form(request)
        await self.web_sessions.sign_out(request)
        return RedirectResponse(self.root(request) + "/", status_code=303)

    async def entity(self, request: Request) -> Response:
        """GET /e/{entity}: the entity's projects, keyset-paged by name."""
        viewer = await self.signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        name = request.path_params["entity"]
        after = self._cursor(request, "project")
        limit = self._page_size(request)

        def load() -> tuple[list[Project], bool] | None:
            with self.sessions() as session:
                entity = access.owned_entity(session, viewer.id, name)
                if entity is None:
                    return None
                projects = access.projects_page(session, entity.id, after, limit + 1)
                return projects[:limit], len(projects) > limit

        found = await run_in_threadpool(load)
        if found is None:
            return self.error(request, 404, "No such entity.", viewer)
        projects, more = found
        next_cursor = encode_cursor("project", projects[-1].name) if more else None
        return self.page(
            request, "projects.html", viewer=viewer, entity=name, projects=projects, next_cursor=next_cursor
        )

    async def project(self, request: Request) -> Response:
        """GET /e/{entity}/{project}: the project's runs that `filter=` selects (W&B's filter JSON, or the
        ``key op value`` form), in the server's `order=`, keyset-paged (`after=`), with their metadata.

        The selection is the API's own (db/runfilters.py): the same filter selects the same runs in the same
        order. A filter or order the server refuses is shown on the page (400), with the message naming the
        offending part.
        """
        viewer = await self.signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        entity_name, project_name = request.path_params["entity"], request.path_params["project"]
        q = request.query_params
        typed_filter = q.get("filter", "")
        order_text = q.get("order") or _DEFAULT_RUN_ORDER
        after = self._cursor(request, _RUNS_CURSOR)
        limit = self._page_size(request)

        def load() -> tuple[RunsPage | str, str] | None:
            with self.sessions() as session:
                entity = access.owned_entity(session, viewer.id, entity_name)
                project = access.project_named(session, entity.id, project_name) if entity is not None else None
                if project is None:
                    return None
                try:
                    sel = runfilters.selection(
                        runquery.filters_text(typed_filter), order_text, session.get_bind().dialect.name
                    )
                    position = runfilters.parse_position(sel.order, after) if after is not None else None
                except runfilters.RunFilterError as exc:
                    # A refused order is not kept in the form, which would send it again with the next filter.
                    return str(exc), _DEFAULT_RUN_ORDER if exc.path == "order" else order_text
                found = runfilters.runs_page(session, project.id, sel, position, limit + 1)
                total = runfilters.count_runs(session, project.id, sel)
                session.expunge_all()
                more = len(found) > limit
                cursor = runfilters.position_text(sel.order, found[limit - 1][1]) if more else None
                return RunsPage([run for run, _ in found[:limit]], total, cursor, sel), order_param(sel.order)

        found = await run_in_threadpool(load)
        if found is None:
            return self.error(request, 404, "No such project.", viewer)
        page, canonical = found
        base = f"{self.root(request)}/e/" + "/".join(quote(x, safe="") for x in (entity_name, project_name))
        state = {"filter": typed_filter, "order": canonical}
        if limit != PAGE_SIZE:
            state["per_page"] = str(limit)

        def link(**changes: str) -> str:
            # This page's query with `changes`; the default order and empty values are left out of the URL.
            merged = {**state, **changes}
            defaults = {"order": _DEFAULT_RUN_ORDER}
            return base + "?" + urlencode({k: v for k, v in merged.items() if v and defaults.get(k) != v})

        common = {
            "viewer": viewer,
            "entity": entity_name,
            "project": project_name,
            "base": base,
            "link": link,
            "filter_text": typed_filter,
            "order": canonical,
            "per_page": limit,
            "first_page": after is None,
        }
        if isinstance(page, str):
            return self.page(request, "runs.html", 400, filter_error=page, table=None, **common)
        table = runs_table(page.runs, page.selection)
        next_cursor = encode_cursor(_RUNS_CURSOR, page.cursor) if page.cursor is not None else None
        return self.page(
            request,
            "runs.html",
            filter_error=None,
            table=table,
            total=page.total,
            next_cursor=next_cursor,
            **common,
        )

    async def run(self, request: Request) -> Response:
        """GET /e/{entity}/{project}/{run}: a folder of the run's files (`folder=`), or the files matching
        `pattern=` (LIKE, as the API's); `after=` is the cursor of the next page, `sort=`/`order=` sort it."""
        viewer = await self.signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        p = request.path_params
        q = request.query_params
        folder = q.get("folder", "")
        if folder and not folder.endswith("/"):
            folder += "/"
        pattern = q.get("pattern") or None
        if pattern is not None:
            problem = access.like_pattern_problem(pattern)
            if problem is not None:
                raise HTTPException(400, problem)
        after = self._cursor(request, "file")
        limit = self._page_size(request)
        sort = q.get("sort", "name")
        if sort not in SORT_KEYS:
            sort = "name"
        descending = q.get("order") == "desc"

        def load() -> tuple[Run, list[Entry], str | None] | None:
            with self.sessions() as session:
                run = access.owned_run(session, viewer.id, p["entity"], p["project"], p["run"])
                if run is None:
                    return None
                page = folder_page(session, run.id, folder, after, limit, pattern=pattern)
                session.expunge_all()
                return run, page.entries, page.next_after

        found = await run_in_threadpool(load)
        if found is None:
            return self.error(request, 404, "No such run.", viewer)
        run, entries, next_after = found
        entries = _sorted(entries, sort, descending)
        parts = folder.split("/")[:-1]
        crumbs = [(part, "/".join(parts[: i + 1]) + "/") for i, part in enumerate(parts)]
        base = f"{self.root(request)}/e/" + "/".join(quote(x, safe="") for x in (p["entity"], p["project"], p["run"]))
        state = {"folder": folder, "pattern": pattern or "", "sort": sort, "order": "desc" if descending else "asc"}
        if limit != PAGE_SIZE:
            state["per_page"] = str(limit)

        def link(**changes: str) -> str:
            # This page's query with `changes`; defaults and empty values are left out of the URL.
            merged = {**state, **changes}
            defaults = {"sort": "name", "order": "asc"}
            return base + "?" + urlencode({k: v for k, v in merged.items() if v and defaults.get(k) != v})

        return self.page(
            request,
            "run.html",
            link=link,
            viewer=viewer,
            entity=p["entity"],
            project=p["project"],
            run=run,
            run_path=f"{p['entity']}/{p['project']}/{p['run']}",
            folder=folder,
            crumbs=crumbs,
            parent=crumbs[-2][1] if len(crumbs) > 1 else "",
            base=base,
            pattern=pattern or "",
            entries=entries,
            sort=sort,
            descending=descending,
            per_page=limit,
            next_cursor=encode_cursor("file", next_after) if next_after is not None else None,
            first_page=after is None,
        )

    async def download(self, request: Request) -> Response:
        """GET /e/{entity}/{project}/{run}/file/{name}: the file's bytes as an attachment, for its owner."""
        viewer = await self.signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        p = request.path_params

        def open_() -> Response | None:
            for _ in range(3):
                with self.sessions() as session:
                    file = access.owned_file(session, viewer.id, p["entity"], p["project"], p["run"], p["name"])
                    if file is None:
                        return None
                    session.expunge(file)
                response = self.open_file(file)
                if response is not None:
                    return response
                # Re-uploaded or deleted between the lookup and the open: look again.
            return None

        response = await run_in_threadpool(open_)
        return response if response is not None else self.error(request, 404, "No such file.", viewer)

    # --- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _cursor(request: Request, kind: str) -> str | None:
        after = request.query_params.get("after")
        if not after:
            return None
        try:
            return decode_cursor(kind, after)
        except ApiError:
            raise HTTPException(400, "invalid cursor") from None

    @staticmethod
    def _page_size(request: Request) -> int:
        raw = request.query_params.get("per_page", "")
        if not raw:
            return PAGE_SIZE
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
            raise HTTPException(400, f"per_page must be between 1 and {MAX_PAGE_SIZE}")
        return int(raw)


def _sorted(entries: list[Entry], sort: str, descending: bool) -> list[Entry]:
    """The page's entries by `sort` (folders first unless by name); pages themselves follow name order."""
    if sort == "name":
        return list(reversed(entries)) if descending else entries
    keys: dict[str, Callable[[File], Any]] = {
        "size": lambda f: f.size_bytes,
        "type": lambda f: f.mimetype,
        "updated": lambda f: f.updated_at,
        "md5": lambda f: f.md5,
    }
    key = keys[sort]
    folders = [e for e in entries if e.file is None]
    files = [(e.file, e) for e in entries if e.file is not None]
    files.sort(key=lambda pair: (key(pair[0]), pair[1].key), reverse=descending)
    return folders + [e for _, e in files]


def create_web_app(
    sessions: sessionmaker[Session], secret: str, open_file: FileOpener, *, public_url: str | None = None
) -> Starlette:
    """The web page as an ASGI app, to be mounted at /web of the server.

    Args:
        sessions: The server's session factory.
        secret: The server's secret (shared through the database by every instance); the session cookie's
            signing key is derived from it.
        open_file: Serves a file row's bytes as an attachment (the server's own download path).
        public_url: The server's --public-url, if any: forms may come from its origin too, and when it is
            https the cookie is sent only over HTTPS.

    Returns:
        The app.
    """
    origin = urlsplit(public_url) if public_url else None
    web_sessions = WebSessions(sessions, secret, f"{origin.scheme}://{origin.netloc}" if origin else None)
    pages = WebPages(sessions, web_sessions, open_file)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {404: "Not found.", 405: "Method not allowed."}
        return pages.error(request, exc.status_code, messages.get(exc.status_code, exc.detail))

    return Starlette(
        routes=[
            Route("/", pages.home, methods=["GET"]),
            Route("/signin", pages.sign_in, methods=["POST"]),
            Route("/signout", pages.sign_out, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/e/{entity}", pages.entity, methods=["GET"]),
            Route("/e/{entity}/{project}", pages.project, methods=["GET"]),
            Route("/e/{entity}/{project}/{run}", pages.run, methods=["GET"]),
            Route("/e/{entity}/{project}/{run}/file/{name:path}", pages.download, methods=["GET", "HEAD"]),
        ],
        middleware=[
            Middleware(_SecurityHeaders),
            web_sessions.middleware(),
        ],
        exception_handlers={HTTPException: http_error},
    )
