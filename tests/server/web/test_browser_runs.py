"""The project page's run selection in a real browser (Debian's Chromium, headless, via Playwright): typing a
filter changes the table, a column header orders it. Also saves docs/web-project-page.png for the README."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import wandb_files
from tests.support import ADMIN_KEY, Client, LiveServer
from tests.support.web import seed_files

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "web-project-page.png"
ROWS = "#runs tbody tr td:first-child"


def sign_in(page: Any, server: LiveServer) -> None:
    page.goto(server.base_url + "/")
    page.fill("#api_key", ADMIN_KEY)
    page.click("#signin")
    page.wait_for_selector("#entities")


def _created(server: LiveServer, project: str, times: dict[str, datetime]) -> None:
    """Fixed creation times, so the page (and its screenshot) is the same every time."""
    from sqlalchemy import update

    from wandb_files.server.db.database import create_db_engine, make_session_factory, write_transaction
    from wandb_files.server.db.models import Project, Run

    engine = create_db_engine(server.database_url or server.data_dir / "wandb-files.db", migrate=False)
    try:
        with make_session_factory(engine)() as session, write_transaction(session):
            project_id = session.query(Project.id).filter_by(name=project).scalar()
            for run_id, when in times.items():
                session.execute(
                    update(Run).where(Run.project_id == project_id, Run.name == run_id).values(created_at=when)
                )
    finally:
        engine.dispose()


def test_typing_a_filter_changes_the_table_and_a_header_orders_it(web_server: LiveServer, page: Any) -> None:
    from playwright.sync_api import expect

    api = wandb_files.Api(api_key=ADMIN_KEY, base_url=web_server.base_url)
    for i, (model, acc) in enumerate([("resnet", 0.7), ("vit", 0.9), ("resnet", 0.8), ("vit", 0.6)]):
        api.create_run(f"b{i}", "browse", config={"model": model, "lr": 10**-i}, summary={"acc": acc})
    sign_in(page, web_server)
    page.goto(web_server.base_url + "/web/e/admin/browse")
    expect(page.locator(ROWS)).to_have_text(["b3", "b2", "b1", "b0"])  # newest first

    page.fill("#run-filter", "config.model = resnet")
    page.press("#run-filter", "Enter")
    expect(page.locator(ROWS)).to_have_text(["b2", "b0"])
    expect(page.locator("#run-count")).to_contain_text("2 runs match the filter")

    page.locator("#runs th a.sort", has_text="summary.acc").click()
    expect(page.locator(ROWS)).to_have_text(["b0", "b2"])  # ascending, the filter kept
    page.locator("#runs th a.sort", has_text="summary.acc").click()
    expect(page.locator(ROWS)).to_have_text(["b2", "b0"])
    assert page.input_value("#run-filter") == "config.model = resnet"

    page.fill("#run-filter", '{"summary_metrics.acc": {"$gte": "high"}, "tags": {"$gt": "a"}}')
    page.click("#apply-run-filter")
    expect(page.locator("#filter-error")).to_contain_text("invalid filters.tags.$gt")
    assert page.locator("#runs").count() == 0


@pytest.mark.skipif(os.environ.get("WANDB_FILES_NO_SCREENSHOT") == "1", reason="WANDB_FILES_NO_SCREENSHOT=1")
def test_screenshot_of_the_project_page(web_server: LiveServer, page: Any) -> None:
    """docs/web-project-page.png, shown in the README: runs chosen by a filter, ordered by accuracy."""
    api = wandb_files.Api(api_key=ADMIN_KEY, base_url=web_server.base_url)
    runs = [
        ("3kx9q2ab", "resnet50-lr0.1", "resnet50", 0.1, 0.912, ["baseline"], "sweep-1"),
        ("8fj2m1zq", "resnet50-lr0.01", "resnet50", 0.01, 0.947, ["best", "paper"], "sweep-1"),
        ("p0c7d4ke", "resnet50-lr0.001", "resnet50", 0.001, 0.893, [], "sweep-1"),
        ("v1t8h3nn", "vit-b16-lr0.01", "vit-b16", 0.01, 0.931, ["paper"], "sweep-2"),
        ("a9s6w5xr", "vit-b16-lr0.001", "vit-b16", 0.001, 0.874, [], "sweep-2"),
        ("k2e4r7ty", "resnet18-smoke", "resnet18", 0.1, 0.412, ["smoke"], None),
    ]
    start = datetime(2026, 11, 30, 14, 5, 12)
    for run_id, name, model, lr, acc, tags, group in runs:
        api.create_run(
            run_id,
            "cifar10",
            display_name=name,
            config={"model": model, "lr": lr, "batch_size": 128, "optimizer": {"name": "sgd", "momentum": 0.9}},
            summary={"acc": acc, "loss": round(1 - acc, 3), "epoch": 90, "_runtime": 3600},
            tags=tags,
            group=group,
            job_type="train",
        )
    _created(web_server, "cifar10", {r[0]: start + timedelta(minutes=17 * i) for i, r in enumerate(runs)})
    admin = Client(web_server.base_url, ADMIN_KEY)
    for i, (run_id, *_) in enumerate(runs):
        names = ["config.yaml", "output.log", *(f"media/images/pred_{s}_{i}a2f.png" for s in range(3 + 2 * i))]
        seed_files(web_server, ("admin", "cifar10", run_id), names, size=2_048)
        admin.gql(
            'mutation($n: String, $s: String) { upsertBucket(input: {modelName: "cifar10", name: $n, state: $s}) '
            "{ bucket { id } } }",
            {"n": run_id, "s": "crashed" if run_id == "k2e4r7ty" else "finished"},
        )
    page.set_viewport_size({"width": 1500, "height": 520})
    sign_in(page, web_server)
    page.goto(web_server.base_url + "/web/e/admin/cifar10")
    page.fill("#run-filter", "config.lr <= 0.01 and tags != smoke")
    page.press("#run-filter", "Enter")
    page.locator("#runs th a.sort", has_text="summary.acc").click()
    page.locator("#runs th a.sort", has_text="summary.acc").click()
    page.wait_for_selector("#runs th a.sort:has-text('summary.acc ▼')")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
