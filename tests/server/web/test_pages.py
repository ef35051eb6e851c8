"""The web page over real HTTP, on SQLite and PostgreSQL: sessions, CSRF, headers, access, escaping, folders,
paging, the filter, downloads and the copyable snippet. The browser itself is tests/server/web/test_browser.py.
"""

from __future__ import annotations

import ast
import base64
import html
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support import ADMIN_KEY, Client, LiveServer, md5_b64
from tests.support.web import WebClient, change_key, csrf_of, seed_files, seed_run
from wandb_files.server.db.folders import folder_end
from wandb_files.server.web.render import python_string

HOSTILE = [
    "<script>window.pwned=1;.txt",  # an unclosed script tag would swallow the rest of the page
    "<svg onload=window.pwned=3>.svg",
    '<img src=x onerror="window.pwned=2">.png',
    "quote\"s and 'apostrophes'.txt",
    "report\u202etxt.exe",
    "esc\x1b[31mred.log",
    "csi\x9b31m.log",
    "line\u2028break.txt",
    "tab\there.txt",
    "amp&lt;not-a-tag&gt;.txt",
]
#: A folder's name is shown too: ``</script>`` in one.
HOSTILE_FOLDER = "<img src=x onerror=window.pwned=4>"


@pytest.fixture
def web(live_server: LiveServer) -> WebClient:
    client = WebClient(live_server)
    client.sign_in(ADMIN_KEY)
    return client


def names_on(page: str) -> list[str]:
    """The entries of a run page as shown (folders with their slash), unescaped from HTML."""
    found = re.findall(
        r'<td class="name">(.*?)</td>|<tr class="folder"><td colspan="6"><a href="[^"]*">(.*?)</a>', page
    )
    return [html.unescape(a or b) for a, b in found if (a or b) != "../"]


def next_link(page: str) -> str | None:
    found = re.search(r'id="next-page" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def walk(web: WebClient, path: str, **params: str) -> list[str]:
    """Every entry of a folder, following the next-page links."""
    response = web.get(path, params=params)
    assert response.status_code == 200, response.text
    seen = names_on(response.text)
    link = next_link(response.text)
    while link is not None:
        response = web.http.get(web.base.removesuffix("/web") + link, timeout=30, allow_redirects=False)
        assert response.status_code == 200, response.text
        seen += names_on(response.text)
        link = next_link(response.text)
    return seen


# --- sessions, CSRF, headers ---------------------------------------------------------------------------------


def test_root_redirects_to_the_page_and_every_page_sends_the_security_headers(live_server: LiveServer) -> None:
    import requests

    response = requests.get(live_server.base_url + "/", allow_redirects=False, timeout=30)
    assert response.status_code == 307 and response.headers["location"] == "/web/"
    client = WebClient(live_server)
    for path in ("/", "/static/style.css", "/e/admin", "/no/such/page"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/").headers["cache-control"] == "no-store"
    # The API keeps its JSON answers and its own headers.
    api = requests.get(live_server.base_url + "/healthz", timeout=30)
    assert api.json() == {"status": "ok"} and "content-security-policy" not in api.headers


def test_the_session_cookie_is_httponly_lax_signed_and_holds_no_key(live_server: LiveServer) -> None:
    client = WebClient(live_server)
    response = client.sign_in(ADMIN_KEY)
    cookie = response.headers["set-cookie"]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/web" in flags
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = json.loads(base64.b64decode(value.split(".")[0]))
    assert set(payload) == {"uid", "kf", "iat", "csrf"}
    assert ADMIN_KEY not in cookie and ADMIN_KEY not in json.dumps(payload)
    import hashlib

    assert hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:16] not in json.dumps(payload)
    # A tampered cookie is no session.
    forged = WebClient(live_server)
    body = base64.b64encode(json.dumps({**payload, "uid": payload["uid"] + 1}).encode()).decode()
    forged.http.cookies.set("wandb_files_session", body + "." + value.split(".", 1)[1], path="/web")
    assert forged.get("/e/admin").status_code == 401


def test_sign_in_with_a_wrong_key_fails_and_no_page_shows_the_key(live_server: LiveServer) -> None:
    client = WebClient(live_server)
    token = csrf_of(client.get("/").text)
    response = client.post("/signin", {"api_key": "w" * 40, "csrf": token})
    assert response.status_code == 401 and "not valid" in response.text
    assert client.get("/e/admin").status_code == 401
    client.sign_in(ADMIN_KEY)
    for path in ("/", "/e/admin"):
        assert ADMIN_KEY not in client.get(path).text


def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(live_server: LiveServer) -> None:
    client = WebClient(live_server)
    token = csrf_of(client.get("/").text)
    assert client.post("/signin", {"api_key": ADMIN_KEY}).status_code == 403
    assert client.post("/signin", {"api_key": ADMIN_KEY, "csrf": "x" + token}).status_code == 403
    evil = client.post("/signin", {"api_key": ADMIN_KEY, "csrf": token}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    assert client.get("/e/admin").status_code == 401  # none of them signed in
    client.sign_in(ADMIN_KEY)
    # A token from before sign-in is stale after it (a fresh one is made at sign-in).
    assert client.post("/signout", {"csrf": token}).status_code == 403
    assert client.post("/signout", {}).status_code == 403
    assert client.get("/e/admin").status_code == 200
    token = csrf_of(client.get("/").text)
    assert client.post("/signout", {"csrf": token}).status_code == 303
    assert client.get("/e/admin").status_code == 401


def test_sign_out_ends_copies_of_the_cookie_too(live_server: LiveServer, unique: str) -> None:
    user = f"out{unique}"
    key = live_server.add_user(user)
    first, second = WebClient(live_server), WebClient(live_server)
    first.sign_in(key)
    second.sign_in(key)
    stolen = WebClient(live_server)
    stolen.http.cookies.update(first.http.cookies)
    assert stolen.get(f"/e/{user}").status_code == 200
    assert first.post("/signout", {"csrf": csrf_of(first.get("/").text)}).status_code == 303
    assert stolen.get(f"/e/{user}").status_code == 401  # the copy made before sign-out is worthless
    assert second.get(f"/e/{user}").status_code == 401  # as is every other session made before it
    again = WebClient(live_server)
    again.sign_in(key)  # and a new one works
    assert again.get(f"/e/{user}").status_code == 200


def test_behind_an_https_public_url_the_cookie_is_secure_and_its_origin_is_ours(tmp_path: Path) -> None:
    import requests

    with LiveServer(tmp_path / "data", api_key=ADMIN_KEY, extra_args=("--public-url", "https://wf.example")) as server:
        first = requests.get(server.base_url + "/web/", timeout=30)
        set_cookie = first.headers["set-cookie"]
        assert "secure" in [part.strip().lower() for part in set_cookie.split(";")]
        # A TLS-terminating proxy forwards plain HTTP (so requests would keep the Secure cookie to itself: it is
        # sent by hand), and the browser's Origin says where the form really came from.
        cookie = {"Cookie": set_cookie.split(";")[0]}
        form = {"api_key": ADMIN_KEY, "csrf": csrf_of(first.text)}
        url = server.base_url + "/web/signin"
        evil = requests.post(url, data=form, headers={**cookie, "Origin": "https://evil.example"}, timeout=30)
        assert evil.status_code == 403
        ours = requests.post(
            url, data=form, headers={**cookie, "Origin": "https://wf.example"}, allow_redirects=False, timeout=30
        )
        assert ours.status_code == 303


def test_a_changed_key_ends_the_session(live_server: LiveServer, unique: str) -> None:
    user = f"rev{unique}"
    key = live_server.add_user(user)
    client = WebClient(live_server)
    client.sign_in(key)
    assert client.get(f"/e/{user}").status_code == 200
    change_key(live_server, user)
    response = client.get(f"/e/{user}")
    assert response.status_code == 401 and "Sign in" in response.text


# --- access --------------------------------------------------------------------------------------------------


def test_another_users_run_is_the_page_of_a_missing_one(live_server: LiveServer, unique: str) -> None:
    owner = f"own{unique}"
    key = live_server.add_user(owner)
    Client(live_server.base_url, key).make_run("secret-project", "secret-run")
    Client(live_server.base_url, key).upload(owner, "secret-project", "secret-run", "secret.txt", b"top secret")
    web = WebClient(live_server)
    web.sign_in(ADMIN_KEY)
    theirs = {
        "entity": f"/e/{owner}",
        "project": f"/e/{owner}/secret-project",
        "run": f"/e/{owner}/secret-project/secret-run",
        "file": f"/e/{owner}/secret-project/secret-run/file/secret.txt",
    }
    missing = {k: v.replace(owner, f"nobody{unique}") for k, v in theirs.items()}
    for kind, path in theirs.items():
        refused, absent = web.get(path), web.get(missing[kind])
        assert refused.status_code == absent.status_code == 404, kind
        assert refused.text.replace(owner, f"nobody{unique}") == absent.text.replace(owner, f"nobody{unique}"), kind
        assert "secret.txt" not in refused.text and b"top secret" not in refused.content
    assert owner not in web.get("/").text
    # The owner sees it.
    own = WebClient(live_server)
    own.sign_in(key)
    assert own.get(theirs["file"]).content == b"top secret"


# --- escaping ------------------------------------------------------------------------------------------------


def test_hostile_names_are_shown_as_text_with_controls_and_bidi_escaped(
    live_server: LiveServer, web: WebClient, unique: str
) -> None:
    seed_run(live_server, "admin", f"p-{unique}", "r1", display_name="<b>bold</b>\u202e", state="<i>x</i>")
    seed_files(live_server, ("admin", f"p-{unique}", "r1"), [*HOSTILE, HOSTILE_FOLDER + "/inner.txt"])
    page = web.get(f"/e/admin/p-{unique}/r1").text
    assert "&lt;img src=x onerror=window.pwned=4&gt;/" in page
    for raw in ("<script>window", "<img", "<svg", "<b>bold", "<i>x"):
        assert raw not in page
    for char in ("\u202e", "\x1b", "\x9b", "\u2028", "\t"):
        assert char not in page, repr(char)
    assert "&lt;script&gt;window.pwned=1;.txt" in page
    assert "&lt;img src=x onerror=&#34;window.pwned=2&#34;&gt;.png" in page
    shown = names_on(page)
    assert "report\\u202etxt.exe" in shown and "esc\\x1b[31mred.log" in shown and "csi\\x9b31m.log" in shown
    assert "line\\u2028break.txt" in shown and "tab\\x09here.txt" in shown and "amp&lt;not-a-tag&gt;.txt" in shown
    runs_page = web.get(f"/e/admin/p-{unique}").text
    assert "&lt;b&gt;bold&lt;/b&gt;\\u202e" in runs_page and "&lt;i&gt;x&lt;/i&gt;" in runs_page


def test_the_python_snippet_evaluates_back_to_the_name(live_server: LiveServer, web: WebClient, unique: str) -> None:
    seed_run(live_server, "admin", f"p-{unique}", "r1")
    seed_files(live_server, ("admin", f"p-{unique}", "r1"), HOSTILE)
    page = web.get(f"/e/admin/p-{unique}/r1").text
    snippets = [html.unescape(s) for s in re.findall(r'<code class="py" id="py-\d+">(.*?)</code>', page)]
    assert len(snippets) == len(HOSTILE), snippets
    found = set()
    for snippet in snippets:
        call = ast.parse(snippet, mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "file"
        run_call = call.func.value
        assert isinstance(run_call, ast.Call) and ast.unparse(run_call.func) == "wandb_files.Api().run"
        assert ast.literal_eval(run_call.args[0]) == f"admin/p-{unique}/r1"
        found.add(ast.literal_eval(call.args[0]))
        assert snippet.isprintable(), snippet  # controls and bidi written as escapes
    assert found == set(HOSTILE)


@pytest.mark.parametrize("name", [*HOSTILE, "plain.txt", "ünïcödé ☃.txt", "\\back\\slash", "a" * 300])
def test_python_string_round_trips(name: str) -> None:
    literal = python_string(name)
    assert ast.literal_eval(literal) == name
    assert literal.startswith('"') and literal.isprintable()


# --- folders, paging, filter ---------------------------------------------------------------------------------

TREE = [
    "a",
    "a.b",
    "a0",
    "b/c.txt",
    "b/d/e.txt",
    "b/d/f.txt",
    "b/d0",
    "b\u00e9/x",
    "c\U0010ffff/y",
    "c\U0010ffff\U0010ffff",
    "d_%/z",
    "d_x",
    "z/" + "\U0010ffff" * 200,
    "z0",
]


def expected_folder(names: list[str], folder: str) -> list[str]:
    entries: dict[str, None] = {}
    for name in sorted(names, key=lambda n: n.encode()):
        if name.startswith(folder):
            segment, slash, _ = name[len(folder) :].partition("/")
            entries[segment + slash] = None
    return list(entries)


@pytest.mark.parametrize("per_page", ["1", "2", "3", "100"])
def test_every_folder_pages_through_exactly_its_entries(
    live_server: LiveServer, web: WebClient, unique: str, per_page: str
) -> None:
    path = ("admin", f"p-{unique}", "tree")
    seed_run(live_server, *path)
    seed_files(live_server, path, TREE)
    folders = {""} | {name[: i + 1] for name in TREE for i, ch in enumerate(name) if ch == "/"}
    for folder in sorted(folders):
        seen = walk(web, "/e/{}/{}/{}".format(*path), folder=folder, per_page=per_page)
        assert seen == expected_folder(TREE, folder), folder


def test_folder_end_is_past_every_name_in_the_folder() -> None:
    assert folder_end("") is None
    end = folder_end("a/")
    assert end is not None
    for name in ("a/", "a/b", "a/\U0010ffff" * 3):
        assert name.encode() < end.encode()
    for name in ("a0", "a1", "b", "a\u00e9"):
        assert name.encode() >= end.encode()


@pytest.mark.parametrize("pattern", ["%.txt", "b/%", "d\\_x", "d_%", "%\U0010ffff%", "a_", "%/%/%"])
def test_the_filter_has_the_apis_like_semantics(
    live_server: LiveServer, web: WebClient, admin: Client, unique: str, pattern: str
) -> None:
    path = ("admin", f"p-{unique}", "tree")
    seed_run(live_server, *path)
    seed_files(live_server, path, TREE)
    api = [e["node"]["name"] for e in admin.files(*path, pattern=pattern, fileLimit=1000)["files"]["edges"]]
    assert walk(web, "/e/{}/{}/{}".format(*path), pattern=pattern, per_page="2") == api
    # Within a folder: the API's matches under it.
    inside = walk(web, "/e/{}/{}/{}".format(*path), pattern=pattern, folder="b/")
    assert inside == [n[2:] for n in api if n.startswith("b/")]


def test_a_bad_pattern_or_cursor_is_a_400_page(
    live_server: LiveServer, web: WebClient, run_path: tuple[str, ...]
) -> None:
    base = "/e/{}/{}/{}".format(*run_path)
    assert web.get(base, params={"pattern": "a\\"}).status_code == 400
    assert web.get(base, params={"after": "!!"}).status_code == 400
    assert web.get(base, params={"per_page": "0"}).status_code == 400
    assert web.get("/e/admin/" + run_path[1], params={"after": "bogus"}).status_code == 400


def test_sorting_orders_the_entries_of_the_page(live_server: LiveServer, web: WebClient, unique: str) -> None:
    path = ("admin", f"p-{unique}", "sorted")
    seed_run(live_server, *path)
    for i, name in enumerate(["b.txt", "a.bin", "c.json"]):
        seed_files(live_server, path, [name], size=[5, 50, 1][i])
    base = "/e/{}/{}/{}".format(*path)
    assert names_on(web.get(base).text) == ["a.bin", "b.txt", "c.json"]
    assert names_on(web.get(base, params={"order": "desc"}).text) == ["c.json", "b.txt", "a.bin"]
    assert names_on(web.get(base, params={"sort": "size"}).text) == ["c.json", "b.txt", "a.bin"]
    assert names_on(web.get(base, params={"sort": "size", "order": "desc"}).text) == ["a.bin", "b.txt", "c.json"]
    assert names_on(web.get(base, params={"sort": "type"}).text) == ["c.json", "a.bin", "b.txt"]


def test_entities_projects_and_runs_are_listed_with_their_columns(
    live_server: LiveServer, web: WebClient, admin: Client, unique: str
) -> None:
    admin.make_run(f"p-{unique}", "first")
    admin.upload("admin", f"p-{unique}", "first", "one.txt", b"1")
    admin.upload("admin", f"p-{unique}", "first", "two.txt", b"22")
    admin.make_run(f"p-{unique}", "second")
    assert 'href="/web/e/admin"' in web.get("/").text
    assert f'href="/web/e/admin/p-{unique}"' in web.get("/e/admin", params={"per_page": "1000"}).text
    runs = web.get(f"/e/admin/p-{unique}").text
    rows = re.findall(r"<tr>\s*<td><a href=\"[^\"]*\">(\w+)</a></td>.*?<td class=\"num\">(\d+)</td>", runs, re.S)
    assert rows == [("second", "0"), ("first", "2")]  # newest first
    assert runs.count("running") >= 2
    page1 = web.get(f"/e/admin/p-{unique}", params={"per_page": "1"}).text
    assert "second" in page1 and "first" not in page1 and 'rel="next"' in page1


# --- downloads -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data/model.ckpt", 'we"ird; name=x.txt', "ünï/cödé ☃.txt", "x%2Fy?#.bin"])
def test_download_sends_the_bytes_as_an_attachment(
    live_server: LiveServer, web: WebClient, admin: Client, run_path: tuple[str, str, str], name: str
) -> None:
    data = name.encode() * 1000
    admin.upload(*run_path, name, data)
    page = web.get("/e/{}/{}/{}".format(*run_path), params={"pattern": name.replace("%", "\\%")}).text
    link = html.unescape(re.findall(r'<a class="download" href="([^"]+)"', page)[0])
    response = web.http.get(live_server.base_url + link, timeout=30)
    assert response.status_code == 200 and response.content == data
    assert md5_b64(response.content) == md5_b64(data)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    star = re.search(r"filename\*=UTF-8''(\S+)", disposition)
    assert star and unquote(star.group(1)) == name.rsplit("/", 1)[-1]
    fallback = re.search(r'filename="([^"]*)"', disposition)
    assert fallback and fallback.group(1).isascii() and ";" not in fallback.group(1)
    # Not without a session; and the key never appears in a link.
    assert WebClient(live_server).http.get(live_server.base_url + link, timeout=30).status_code == 401
    assert ADMIN_KEY not in page
