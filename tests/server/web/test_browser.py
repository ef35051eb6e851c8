"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright (never a downloaded browser).

Signs in, walks down to a run, opens folders, filters, downloads and compares bytes, copies the snippet; another
user's run is refused; hostile names run no script; forms without the token (or from another site) change
nothing; sign-out and a changed key end the session; a 5,000-file run opens at once and pages by its cursor.
The run page's screenshot for the README is saved as docs/web-run-page.png.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import ADMIN_KEY, Client, LiveServer
from tests.support.web import change_key, seed_files, seed_run

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "web-run-page.png"


def sign_in(page: Any, server: LiveServer, key: str) -> None:
    page.goto(server.base_url + "/")
    page.fill("#api_key", key)
    page.click("#signin")
    page.wait_for_selector("#entities")


ENTRIES = "#files tr.file td.name, #files tr.folder td a"


def expect_names(page: Any, names: list[str]) -> None:
    """The run page lists exactly `names` (waiting for a navigation under way to finish)."""
    from playwright.sync_api import expect  # imported here: without playwright the fixtures skip the module

    expect(page.locator(ENTRIES)).to_have_text(names)


def test_sign_in_walk_down_filter_download_and_copy(web_server: LiveServer, page: Any, tmp_path: Path) -> None:
    admin = Client(web_server.base_url, ADMIN_KEY)
    admin.make_run("walk", "run-1")
    files = {
        "config.yaml": b"lr: 0.1\n",
        "model.ckpt": os.urandom(300_000),
        "media/images/pred_1.png": os.urandom(2_000),
        "media/images/pred_2.png": os.urandom(2_000),
        "media/tables/eval.json": b"{}",
    }
    for name, data in files.items():
        admin.upload("admin", "walk", "run-1", name, data)

    sign_in(page, web_server, ADMIN_KEY)
    assert "signed in as admin" in page.inner_text("header")
    page.get_by_role("link", name="admin", exact=True).click()
    page.get_by_role("link", name="walk", exact=True).click()
    row = page.locator("#runs tbody tr", has_text="run-1")
    assert "running" in row.inner_text() and row.locator("td.num").inner_text() == "5"
    row.get_by_role("link", name="run-1").click()
    assert page.inner_text("#file-count") == "5"
    expect_names(page, ["config.yaml", "media/", "model.ckpt"])

    page.get_by_role("link", name="media/").click()
    expect_names(page, ["../", "images/", "tables/"])
    page.get_by_role("link", name="images/").click()
    expect_names(page, ["../", "pred_1.png", "pred_2.png"])
    page.get_by_role("link", name="run-1", exact=True).click()  # the breadcrumb back to the top

    page.fill("#pattern", "%.png")
    page.click("#apply-filter")
    expect_names(page, ["media/images/pred_1.png", "media/images/pred_2.png"])
    assert parse_qs(urlsplit(page.url).query)["pattern"] == ["%.png"]
    page.fill("#pattern", "model.%")
    page.click("#apply-filter")
    expect_names(page, ["model.ckpt"])

    with page.expect_download() as started:
        page.locator("#files tr.file", has_text="model.ckpt").locator("a.download").click()
    download = started.value
    assert download.suggested_filename == "model.ckpt"
    assert Path(download.path()).read_bytes() == files["model.ckpt"]

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.base_url)
    row = page.locator("#files tr.file", has_text="model.ckpt")
    row.locator("summary").click()
    row.locator("button.copy").click()
    from playwright.sync_api import expect

    expect(row.locator("button.copy")).to_have_text("copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == 'wandb_files.Api().run("admin/walk/run-1").file("model.ckpt")'


def test_another_users_run_is_refused(web_server: LiveServer, page: Any) -> None:
    key = web_server.add_user("bob")
    bob = Client(web_server.base_url, key)
    bob.make_run("private", "r")
    bob.upload("bob", "private", "r", "diary.txt", b"dear diary")
    sign_in(page, web_server, ADMIN_KEY)
    assert "bob" not in page.inner_text("#entities")
    for path in ("/web/e/bob", "/web/e/bob/private", "/web/e/bob/private/r", "/web/e/bob/private/r/file/diary.txt"):
        response = page.goto(web_server.base_url + path)
        assert response.status == 404, path
        assert "No such" in page.inner_text("main") and "diary" not in page.content()


HOSTILE = [
    '<img src=x onerror="window.__pwned=1">.png',
    "<script>window.__pwned=2;.txt",
    "<svg onload=window.__pwned=3>.svg",
    '"><img src=x onerror=window.__pwned=4>.txt',
    "javascript:window.__pwned=5",
    "report\u202etxt.exe",
    "esc\x1b[2Jclear.log",
    "<img src=x onerror=window.__pwned=6>/inside.txt",
]


def test_hostile_names_run_no_script_and_show_escaped(web_server: LiveServer, page: Any) -> None:
    seed_run(web_server, "admin", "hostile", "h1", display_name="<img src=x onerror=window.__pwned=7>", state="<b>")
    seed_files(web_server, ("admin", "hostile", "h1"), HOSTILE)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, web_server, ADMIN_KEY)
    for path in ("/web/e/admin/hostile", "/web/e/admin/hostile/h1"):
        page.goto(web_server.base_url + path)
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("main img, main svg, main script").count() == 0, path
    text = page.inner_text("#files")
    assert "report\\u202etxt.exe" in text and "esc\\x1b[2Jclear.log" in text
    assert '<img src=x onerror="window.__pwned=1">.png' in text  # shown as the text it is
    # Following the links (the folder, the javascript: name's download) runs nothing either.
    page.get_by_role("link", name="<img src=x onerror=window.__pwned=6>/").click()
    expect_names(page, ["../", "inside.txt"])
    assert page.evaluate("typeof window.__pwned") == "undefined" and not dialogs


def test_forms_without_the_token_or_from_another_site_change_nothing(web_server: LiveServer, page: Any) -> None:
    sign_in(page, web_server, ADMIN_KEY)
    response = page.request.post(web_server.base_url + "/web/signout", form={"nothing": "here"})
    assert response.status == 403
    response = page.request.post(web_server.base_url + "/web/signout", form={"csrf": "guessed"})
    assert response.status == 403
    # A page of another origin posting to our sign-out form.
    page.goto("data:text/html,<form id=f method=post action='" + web_server.base_url + "/web/signout'></form>")
    with page.expect_navigation():
        page.evaluate("document.getElementById('f').submit()")
    assert "security token" in page.content() or "another site" in page.content()
    page.goto(web_server.base_url + "/web/")
    assert page.locator("#entities").count() == 1  # still signed in


def test_sign_out_ends_the_session(web_server: LiveServer, page: Any) -> None:
    sign_in(page, web_server, ADMIN_KEY)
    page.goto(web_server.base_url + "/web/e/admin")
    page.click("#signout")
    page.wait_for_selector("#api_key")
    response = page.goto(web_server.base_url + "/web/e/admin")
    assert response.status == 401 and page.locator("#api_key").count() == 1
    for cookie in page.context.cookies():  # what is left is an anonymous session: a CSRF token, no user
        payload = json.loads(base64.b64decode(cookie["value"].split(".")[0]))
        assert "uid" not in payload and "kf" not in payload


def test_a_changed_key_ends_the_session(web_server: LiveServer, page: Any) -> None:
    key = web_server.add_user("carol")
    sign_in(page, web_server, key)
    page.goto(web_server.base_url + "/web/e/carol")
    assert page.locator("#projects").count() == 1
    change_key(web_server, "carol")
    response = page.reload()
    assert response.status == 401 and page.locator("#api_key").count() == 1


def test_a_big_run_opens_at_once_and_pages_by_its_cursor(web_server: LiveServer, page: Any) -> None:
    seed_run(web_server, "admin", "big", "b5000")
    names = [f"step_{i:05d}.json" for i in range(5000)]
    seed_files(web_server, ("admin", "big", "b5000"), names)
    sign_in(page, web_server, ADMIN_KEY)
    started = time.perf_counter()
    page.goto(web_server.base_url + "/web/e/admin/big/b5000")
    opened = time.perf_counter() - started
    assert page.inner_text("#file-count") == "5,000"
    expect_names(page, names[:100])
    assert opened < 5, opened  # one indexed query of 101 rows, whatever the run's size
    page.click("#next-page")
    expect_names(page, names[100:200])
    assert "after=" in page.url
    page.click("#next-page")
    expect_names(page, names[200:300])


@pytest.mark.skipif(os.environ.get("WANDB_FILES_NO_SCREENSHOT") == "1", reason="WANDB_FILES_NO_SCREENSHOT=1")
def test_screenshot_of_the_run_page(web_server: LiveServer, page: Any) -> None:
    """docs/web-run-page.png, shown in the README: a run with folders and files, at fixed times."""
    when = datetime(2026, 11, 30, 14, 5, 12)
    seed_run(
        web_server,
        "admin",
        "cifar10",
        "3kx9q2ab",
        display_name="resnet50-lr0.1",
        state="finished",
        created_at=when,
        updated_at=when,
    )
    run = ("admin", "cifar10", "3kx9q2ab")
    for names, size in [
        (["config.yaml"], 1_342),
        (["wandb-summary.json"], 260),
        (["output.log"], 48_211),
        (["requirements.txt"], 912),
        ([f"media/images/predictions_{i}_c95b0a.png" for i in range(12)], 20_480),
        ([f"checkpoints/epoch_{i:02d}.ckpt" for i in range(10)], 94_371_840),
        (["model.onnx"], 102_760_448),
    ]:
        seed_files(web_server, run, names, size=size, updated_at=when)
    sign_in(page, web_server, ADMIN_KEY)
    page.goto(web_server.base_url + "/web/e/admin/cifar10/3kx9q2ab")
    page.locator("#files tr.file", has_text="model.onnx").locator("summary").click()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
