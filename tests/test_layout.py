"""The arrows between the package's rooms run one way: api → runs → files → transfer → http, and graphql → http
(GraphQL is one user of the HTTP layer, byte transfers another); the server imports nothing from the client (the
schema file is all they share)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wandb_files

PACKAGE = Path(wandb_files.__file__).parent


def _imports(path: Path) -> set[str]:
    """The wandb_files modules a file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("wandb_files")}


def _module_imports(dotted: str) -> set[str]:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return _imports(path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))


def test_the_server_imports_nothing_from_the_client() -> None:
    for path in (PACKAGE / "server").rglob("*.py"):
        outside = {name for name in _imports(path) if not name.startswith("wandb_files.server")}
        assert not outside, f"{path.relative_to(PACKAGE)} imports {sorted(outside)}"


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("wandb_files.files", ["wandb_files.api", "wandb_files.runs", "wandb_files.bulk", "wandb_files.cli"]),
        ("wandb_files.runs", ["wandb_files.api", "wandb_files.bulk", "wandb_files.cli"]),
        ("wandb_files.paginator", ["wandb_files.api", "wandb_files.runs", "wandb_files.files"]),
        ("wandb_files.graphql", ["wandb_files.api", "wandb_files.runs", "wandb_files.files", "wandb_files.transfer"]),
        (
            "wandb_files.http",
            ["wandb_files.graphql", "wandb_files.api", "wandb_files.runs", "wandb_files.files", "wandb_files.transfer"],
        ),
        ("wandb_files.retry", ["wandb_files.http", "wandb_files.graphql"]),
        # The two download engines do not know each other: the caller picks one (transfer.engines) and passes it.
        (
            "wandb_files.transfer.curl",
            ["wandb_files.transfer.downloads", "wandb_files.transfer.uploads", "wandb_files.transfer.engines"],
        ),
        ("wandb_files.transfer.downloads", ["wandb_files.transfer.curl", "wandb_files.transfer.engines"]),
        ("wandb_files.transfer.jobs", ["wandb_files.transfer.downloads", "wandb_files.transfer.curl"]),
        # Ranged parts report progress through flow's callback type; the bulk runner is not theirs to know.
        ("wandb_files.transfer.ranges", ["wandb_files.transfer.runner"]),
        # Flow control and settings are leaves of the bulk runner, not parts of it.
        ("wandb_files.transfer.flow", ["wandb_files.transfer.runner", "wandb_files.transfer.settings"]),
        ("wandb_files.transfer.settings", ["wandb_files.transfer.runner", "wandb_files.transfer.flow"]),
    ],
)
def test_arrows_run_one_way(module: str, must_not_import: list[str]) -> None:
    imported = _module_imports(module)
    for forbidden in must_not_import:
        assert not any(name == forbidden or name.startswith(forbidden + ".") for name in imported), (module, forbidden)


def test_the_transfer_engine_knows_nothing_of_files_runs_or_the_api() -> None:
    for path in (PACKAGE / "transfer").rglob("*.py"):
        imported = _imports(path)
        for forbidden in ("wandb_files.api", "wandb_files.runs", "wandb_files.files", "wandb_files.bulk"):
            assert not any(n == forbidden or n.startswith(forbidden + ".") for n in imported), (path.name, forbidden)


def test_transfers_use_the_http_layer_not_graphql() -> None:
    """Byte transfers go through `wandb_files.http`; GraphQL is built on it, not the other way round."""
    for path in (PACKAGE / "transfer").rglob("*.py"):
        imported = _imports(path)
        assert not any(n == "wandb_files.graphql" or n.startswith("wandb_files.graphql.") for n in imported), path.name
    assert "wandb_files.http" in _module_imports("wandb_files.graphql")
    assert "wandb_files.http" in _module_imports("wandb_files.transfer.downloads")


def test_no_module_imports_another_modules_private_names() -> None:
    """A name used across modules is public in the module that owns it (client and server alike)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("wandb_files")):
                found += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not [f for f in found if not f.endswith(("__version__", "__future__"))], found


def test_only_optional_code_imports_the_fsspec_filesystem() -> None:
    """wandb_files.fsspec needs the [fsspec] extra: nothing else in the package may import it."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "fsspec.py" and path.parent == PACKAGE:
            continue
        assert not any(n == "wandb_files.fsspec" or n.startswith("wandb_files.fsspec.") for n in _imports(path)), path


@pytest.mark.parametrize(
    ("room", "must_not_import"),
    [
        ("storage", ["db", "graphql", "web", "http"]),
        ("db", ["graphql", "web", "http"]),
        ("graphql", ["web", "http"]),
        ("web", ["http"]),
    ],
)
def test_the_server_rooms_depend_downwards(room: str, must_not_import: list[str]) -> None:
    """http → web → graphql → db → storage: routes know the web page, GraphQL and the database, never the other
    way round (the web page reads through db.access, as the resolvers do, and shares GraphQL's cursors)."""
    for path in (PACKAGE / "server" / room).rglob("*.py"):
        imported = _imports(path)
        for other in must_not_import:
            forbidden = f"wandb_files.server.{other}"
            assert not any(n == forbidden or n.startswith(forbidden + ".") for n in imported), (path.name, forbidden)


# What builds or runs SQL: statement constructors, the DB-API drivers, and executing on a session or connection.
_SQL_NAMES = {"select", "insert", "update", "delete", "text", "bindparam", "func", "and_", "or_", "exists", "union"}
_SQL_MODULES = ("sqlalchemy.dialects", "sqlalchemy.sql", "sqlite3", "psycopg")
_EXECUTE = {"execute", "scalar", "scalars", "exec_driver_sql", "executescript"}


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module outside `if TYPE_CHECKING:` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_only_the_database_room_builds_or_runs_sql() -> None:
    """Every query lives in server/db/: routes, resolvers and views call its functions (one access policy, one
    place per query), so no statement can be written twice, or bypass `db.access`."""
    for path in (PACKAGE / "server").rglob("*.py"):
        if (PACKAGE / "server" / "db") in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                assert not node.module.startswith(_SQL_MODULES), (where, node.module)  # type: ignore[union-attr]
                assert not {a.name for a in node.names} & _SQL_NAMES, (where, [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(_SQL_MODULES) for a in node.names), where
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in _EXECUTE, (where, node.lineno, node.func.attr)


def test_the_web_views_import_no_sqlalchemy() -> None:
    """The web page's views and sessions reach the database only through db/ (types aside)."""
    for path in (PACKAGE / "server" / "web").rglob("*.py"):
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] == "sqlalchemy" for n in names), (path.name, names)
