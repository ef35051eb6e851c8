"""The project page chooses runs as the API does, over real HTTP on SQLite and PostgreSQL: a filter (W&B's JSON
or the `key op value` form), the server's order from a column header, keyset pages, a refused filter shown on
the page, and config values holding HTML shown as text."""

from __future__ import annotations

import html
import re

import pytest

import wandb_files
from tests.support import ADMIN_KEY, LiveServer
from tests.support.web import WebClient
from wandb_files.server.db.runfilters import RunFilterError
from wandb_files.server.db.runquery import query_filters

#: run id -> (config, summary, tags, group)
RUNS = {
    "r1": ({"model": "resnet", "lr": 0.1}, {"acc": 0.71}, ["base"], "g1"),
    "r2": ({"model": "resnet", "lr": 0.01}, {"acc": 0.93}, ["best"], "g1"),
    "r3": ({"model": "vit", "lr": 0.01}, {"acc": 0.88}, ["best"], "g2"),
    "r4": ({"model": "resnet", "lr": 0.001}, {"acc": 0.52}, [], None),
    "r5": ({"model": "resnet"}, {"acc": 0.61}, ["base", "best"], "g2"),
}


@pytest.fixture
def web(live_server: LiveServer) -> WebClient:
    client = WebClient(live_server)
    client.sign_in(ADMIN_KEY)
    return client


@pytest.fixture
def api(live_server: LiveServer) -> wandb_files.Api:
    return wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)


@pytest.fixture
def project(api: wandb_files.Api, unique: str) -> str:
    for run_id, (config, summary, tags, group) in RUNS.items():
        api.create_run(run_id, f"sel-{unique}", config=config, summary=summary, tags=tags, group=group)
    return f"admin/sel-{unique}"


def run_ids(page: str) -> list[str]:
    """The run ids of the page's table, in order."""
    body = page.split('<table id="runs">', 1)[1].split("</table>", 1)[0]
    return [html.unescape(x) for x in re.findall(r'<tr>\s*<td><a href="[^"]*">(.*?)</a></td>', body)]


def headers(page: str) -> dict[str, str]:
    """Each sortable column's label -> the URL its header links to."""
    found = re.findall(r'<a class="sort" data-order="[^"]*" href="([^"]*)">(.*?)</a>', page)
    return {html.unescape(label).rstrip(" ▲▼"): html.unescape(href) for href, label in found}


def follow(web: WebClient, href: str) -> str:
    response = web.http.get(web.base.removesuffix("/web") + href, timeout=30, allow_redirects=False)
    assert response.status_code == 200, response.text
    return response.text


def test_a_filter_selects_and_orders_the_runs_the_api_does(web: WebClient, api: wandb_files.Api, project: str) -> None:
    document = {"config.model": "resnet", "summary_metrics.acc": {"$gt": 0.6}}
    wanted = [r.id for r in api.runs(project, filters=document, order="-summary_metrics.acc")]
    assert wanted == ["r2", "r1", "r5"]
    import json

    page = web.get(f"/e/{project}", params={"filter": json.dumps(document), "order": "-summary_metrics.acc"})
    assert page.status_code == 200 and run_ids(page.text) == wanted
    assert "3 runs match the filter" in page.text
    typed = web.get(f"/e/{project}", params={"filter": "config.model = resnet and summary.acc > 0.6",
                                             "order": "-summary_metrics.acc"})  # fmt: skip
    assert run_ids(typed.text) == wanted
    assert run_ids(web.get(f"/e/{project}", params={"filter": "tags in base,best and group missing"}).text) == []
    assert run_ids(web.get(f"/e/{project}", params={"filter": "tags = best", "order": "+name"}).text) == [
        "r2",
        "r3",
        "r5",
    ]
    # The metadata columns: state, tags, group, then config and summary keys (those the filter and order name first).
    row = page.text.split('<a href="/web/e/' + project + '/r2">', 1)[1].split("</tr>", 1)[0]
    assert (
        '<span class="tag">best</span>' in row
        and '<td class="short">g1</td>' in row
        and "0.93" in row
        and "resnet" in row
    )
    labels = list(headers(page.text))
    assert labels[:4] == ["run", "name", "created (UTC)", "config.model"] and "config.lr" in labels
    assert next(label for label in labels if label.startswith("summary.")) == "summary.acc"


def test_a_column_header_orders_every_run_on_the_server_and_again_reverses(web: WebClient, project: str) -> None:
    first = web.get(f"/e/{project}", params={"filter": "config.model = resnet"}).text
    by_lr = follow(web, headers(first)["config.lr"])
    assert run_ids(by_lr) == ["r5", "r4", "r2", "r1"]  # a missing value first when ascending, as MongoDB sorts
    assert "config.lr ▲" in by_lr and "filter=config.model" in headers(first)["config.lr"]
    reverse = follow(web, headers(by_lr)["config.lr"])
    assert run_ids(reverse) == ["r1", "r2", "r4", "r5"] and "config.lr ▼" in reverse
    by_name = follow(web, headers(reverse)["run"])
    assert run_ids(by_name) == ["r1", "r2", "r4", "r5"]


def test_pages_follow_the_order_by_keyset_cursors_without_repeats(web: WebClient, project: str) -> None:
    page = web.get(f"/e/{project}", params={"order": "-summary_metrics.acc", "per_page": "2"}).text
    seen = run_ids(page)
    while True:
        found = re.search(r'id="next-page" href="([^"]+)"', page)
        if found is None:
            break
        page = follow(web, html.unescape(found.group(1)))
        assert "per_page=2" in html.unescape(found.group(1)) and "order=-summary_metrics.acc" in page
        seen += run_ids(page)
    assert seen == ["r2", "r3", "r1", "r5", "r4"]
    # A cursor made for one order is refused by another, on the page, never as a 500.
    cursor = re.search(r"after=([^\"&]+)", web.get(f"/e/{project}", params={"per_page": "1"}).text)
    assert cursor is not None
    other = web.get(f"/e/{project}", params={"after": html.unescape(cursor.group(1)).replace("%3D", "="),
                                             "order": "+name"})  # fmt: skip
    assert other.status_code == 400 and "belongs to order" in html.unescape(other.text)
    assert web.get(f"/e/{project}", params={"after": "bm9wZQ"}).status_code == 400


@pytest.mark.parametrize(
    ("typed", "named"),
    [
        ('{"tags": {"$gt": "a"}}', "invalid filters.tags.$gt"),
        ('{"$or": [{"state": "x"}, {"config.lr": {"$in": 3}}]}', "invalid filters.$or[1].config.lr.$in"),
        ('{"state": ', "invalid filters: not valid JSON"),
        ("config.lr > ", "invalid filter: at character"),
        ("created_at > soon", "invalid filters.created_at.$gt"),
    ],
)
def test_a_refused_filter_is_shown_on_the_page_naming_its_path(
    web: WebClient, project: str, typed: str, named: str
) -> None:
    response = web.get(f"/e/{project}", params={"filter": typed})
    assert response.status_code == 400
    message = re.search(r'id="filter-error">(.*?)</p>', response.text, re.S)
    assert message is not None and html.unescape(message.group(1)).startswith(named)
    assert f'value="{html.escape(typed)}"' in response.text.replace("&#34;", "&quot;").replace("&#39;", "&#x27;")
    bad_order = web.get(f"/e/{project}", params={"order": "-colour"})
    assert bad_order.status_code == 400 and "cannot order by" in html.unescape(bad_order.text)
    assert 'name="order" value="-created_at"' in bad_order.text  # the form does not send the refused order again


def test_config_values_and_tags_holding_html_are_shown_as_text(
    web: WebClient, api: wandb_files.Api, unique: str
) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    api.create_run(
        "x1",
        f"xss-{unique}",
        config={"note": hostile, "<b>key</b>": 1, "nested": {"deep": "</td><script>alert(2)</script>"}},
        summary={"acc": 0.5, "s": "\u202ereversed"},
        tags=["<i>tag</i>"],
        group='"><svg onload=alert(3)>',
    )
    page = web.get(f"/e/admin/xss-{unique}").text
    for raw in ("<img", "<script>", "<svg", "<b>key", "<i>tag", "\u202e"):
        assert raw not in page, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;i&gt;tag&lt;/i&gt;" in page
    assert "config.&lt;b&gt;key&lt;/b&gt;" in page and "\\u202ereversed" in page
    filtered = web.get(f"/e/admin/xss-{unique}", params={"filter": f'config.note = "{hostile}"'}).text
    assert run_ids(filtered) == ["x1"] and "<img" not in filtered


def test_the_key_op_value_form_compiles_to_the_filter_document() -> None:
    assert query_filters("config.lr = 0.01 and summary.acc > 0.5 and tags in a,b") == {
        "$and": [{"config.lr": 0.01}, {"summary_metrics.acc": {"$gt": 0.5}}, {"tags": {"$in": ["a", "b"]}}]
    }
    assert query_filters("state != running AND config.opt.name ~ ^ad") == {
        "$and": [{"state": {"$ne": "running"}}, {"config.opt.name": {"$regex": "^ad"}}]
    }
    assert query_filters('tags not in 2024, v1 and config.note = "a and b" and group missing') == {
        "$and": [{"tags": {"$nin": ["2024", "v1"]}}, {"config.note": "a and b"}, {"group": {"$exists": False}}]
    }
    assert query_filters("config.x exists") == {"config.x": {"$exists": True}}
    assert query_filters("  ") == {}
    for bad, where in (("config.lr", "character 1"), ("config.lr = 1 or state = x", "character 15"),
                       ('config.s = "open', "character 12")):  # fmt: skip
        with pytest.raises(RunFilterError, match=where):
            query_filters(bad)
