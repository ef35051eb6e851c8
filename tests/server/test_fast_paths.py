"""The hand-written fast paths of a listing agree with the library code they stand in for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from hypothesis import given
from hypothesis import strategies as st

from wandb_files.server.graphql.ids import (
    cursors_of,
    decode_cursor,
    decode_node_id,
    encode_cursor,
    encode_node_id,
    node_ids_of,
)
from wandb_files.server.graphql.resolvers.common import quote_path
from wandb_files.server.graphql.resolvers.scalars import serialize_datetime
from wandb_files.server.signing import _UPLOAD_PURPOSE, UrlSigner, _b64encode, _Purpose

# Names as file names are: any text but lone surrogates (they cannot be encoded, and names refuse them).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)


@given(kind=st.sampled_from(["File", "Run", "User", "Entity", "Project"]), pk=st.integers(0, 2**63))
def test_node_ids_are_base64s(kind: str, pk: int) -> None:
    node_id = encode_node_id(kind, pk)
    assert node_id == base64.b64encode(f"{kind}:{pk}".encode()).decode()
    assert decode_node_id(kind, node_id) == pk


@given(value=texts)
def test_cursors_are_urlsafe_base64s(value: str) -> None:
    cursor = encode_cursor("file", value)
    assert cursor == base64.urlsafe_b64encode(f"file:{value}".encode()).decode()
    assert decode_cursor("file", cursor) == value


@given(
    value=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    aware=st.booleans(),
    offset=st.integers(-12 * 60, 14 * 60),
)
def test_datetimes_read_as_strftime_writes_them(value: datetime, aware: bool, offset: int) -> None:
    if aware:
        value = value.replace(tzinfo=timezone(timedelta(minutes=offset)))
    assert serialize_datetime(value) == value.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(data=st.binary(max_size=400))
def test_token_parts_are_unpadded_urlsafe_base64(data: bytes) -> None:
    assert _b64encode(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@given(secret=st.text(min_size=1, max_size=80), signed=st.text("abcdefXYZ0123456789-_.", max_size=200))
def test_signatures_are_hmac_sha256(secret: str, signed: str) -> None:
    key = hmac.new(secret.encode(), _UPLOAD_PURPOSE, hashlib.sha256).digest()
    expected = _b64encode(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())
    assert _Purpose(secret, _UPLOAD_PURPOSE)._signature(signed) == expected


@given(run_id=st.integers(0, 2**40), name=texts)
def test_token_bodies_are_compact_json(run_id: int, name: str) -> None:
    signer = UrlSigner("s" * 64, 3600)
    token = signer.upload_token(run_id, name)
    body = base64.urlsafe_b64decode(token.split(".")[0] + "=" * (-len(token.split(".")[0]) % 4))
    assert json.loads(body) == [run_id, name]
    # What json.dumps wrote before, byte for byte, but for non-ASCII text (now UTF-8 rather than escapes).
    assert body == json.dumps([run_id, name], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert signer.read_upload_token(token) == (run_id, name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=30,
)


@given(value=json_values)
def test_response_bodies_are_starlettes_json(value: object) -> None:
    """orjson writes what Starlette's JSONResponse wrote, for every kind of value a GraphQL result holds."""
    assert orjson.dumps(value) == json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


@given(name=texts | st.text("abcXYZ019_.-~/%+ ", max_size=60))
def test_file_url_paths_are_quoted_as_quote_does(name: str) -> None:
    assert quote_path(name) == quote(name, safe="/")


@given(pks=st.lists(st.integers(0, 2**63), max_size=20))
def test_node_ids_of_a_page_are_encode_node_ids(pks: list[int]) -> None:
    assert node_ids_of("File", pks) == [encode_node_id("File", pk) for pk in pks]


@given(values=st.lists(texts, max_size=20))
def test_cursors_of_a_page_are_encode_cursors(values: list[str]) -> None:
    assert cursors_of("file", values) == [encode_cursor("file", v) for v in values]


blobs = st.tuples(texts, st.integers(0, 2**62), texts, texts, texts)


@given(prefix=texts, items=st.lists(blobs, max_size=8))
def test_a_pages_direct_urls_are_blob_tokens(prefix: str, items: list[tuple[str, int, str, str, str]]) -> None:
    """blob_urls, one loop over bytes, makes the very tokens blob_token makes one by one (same second)."""
    signer = UrlSigner("s" * 64, 3600)
    for _ in range(3):  # the two calls must fall in one second: try again if they did not
        urls = signer.blob_urls(prefix, items)
        one_by_one = [
            prefix + signer.blob_token(key, size=size, md5=md5, mimetype=mimetype, filename=filename)
            for key, size, md5, mimetype, filename in items
        ]
        stamps = {url.rsplit(".", 2)[-2] for url in urls + one_by_one}
        if len(stamps) <= 1:
            break
    assert urls == one_by_one
    for url, (key, size, md5, mimetype, filename) in zip(urls, items, strict=True):
        ref = signer.read_blob_token(url[len(prefix) :])
        assert (ref.blob_key, ref.size, ref.md5, ref.mimetype, ref.filename) == (key, size, md5, mimetype, filename)


def test_a_page_of_file_rows_is_the_page_statements_rows(tmp_path: Path) -> None:
    """file_page_rows (statements made once a shape, every value a parameter) gives files_page_statement's rows."""
    from wandb_files.server.db.database import create_db_engine, make_session_factory
    from wandb_files.server.db.filepages import file_page_rows, files_page_statement
    from wandb_files.server.db.models import File, Project, Run
    from wandb_files.server.db.users import create_user
    from wandb_files.server.graphql.resolvers.runs import _FILE_ROW_COLUMNS

    engine = create_db_engine(tmp_path / "db.sqlite")
    with make_session_factory(engine)() as session:
        user, _ = create_user(session, "u", "k" * 40)
        session.flush()
        project = Project(entity_id=1, name="p")
        session.add(project)
        session.flush()
        run = Run(project_id=project.id, name="r", user_id=user.id)
        session.add(run)
        session.flush()
        names = ["a.txt", "b_1.txt", "b%2.txt", "c/d.txt", "ü.bin", "z" * 300]
        for i, name in enumerate(names):
            session.add(
                File(
                    run_id=run.id, name=name, size_bytes=i, md5="m", mimetype="t", blob_key=f"k{i}",
                    updated_at=datetime(2026, 12, 1, 10, i, 5, 123 * i),
                )
            )  # fmt: skip
        session.commit()
        cases: list[dict[str, Any]] = [
            {},
            {"after_name": "b_1.txt"},
            {"pattern": "b\\_%"},
            {"pattern": "%.txt"},
            {"names": ["a.txt", "ü.bin", "nope"]},
            {"after_name": "a.txt", "names": ["a.txt", "c/d.txt"]},
        ]
        for case in cases:
            for limit in (1, 3, 10):
                after = case.get("after_name")
                rows = file_page_rows(session, _FILE_ROW_COLUMNS, run.id, after, limit,
                                      names=case.get("names"), pattern=case.get("pattern"))  # fmt: skip
                stmt = files_page_statement(run.id, after, limit, names=case.get("names"), pattern=case.get("pattern"))
                expected = [tuple(getattr(f, c.key) for c in _FILE_ROW_COLUMNS) for f in session.scalars(stmt)]
                assert [tuple(r) for r in rows] == expected, case
                assert all(isinstance(r.updated_at, datetime) for r in rows)
