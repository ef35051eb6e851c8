"""API keys and signed URLs never appear in logs, reprs, exception messages or progress output."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import pytest

import wandb_files
from tests.support import FAST_RETRY, LiveServer, run_with_files
from wandb_files.redact import redact


def test_debug_logs_of_a_whole_session_hold_no_key_and_no_signature(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    api = wandb_files.Api(api_key=live_server.api_key, base_url=live_server.base_url)
    run = run_with_files(api, tmp_path, {"a.bin": os.urandom(100), "b/c.txt": b"c"}, "secrets")
    files = run.files()
    tokens = [f.direct_url.rsplit("/", 1)[-1] for f in files]
    files.download(root=tmp_path / "out", progress=True)
    with pytest.raises(wandb_files.NotFoundError) as info:
        api.run(f"admin/secrets/{run.id}-missing")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/graphql" in logged or "POST" in logged  # debug logging really was on
    shown = logged + capsys.readouterr().err + repr(files) + repr(list(files)) + repr(api) + str(info.value)
    assert live_server.api_key not in shown
    assert not any(token in shown for token in tokens)
    assert not re.search(r"/uploads/(?!<redacted>)", logged)


def test_authentication_errors_name_the_source_never_the_key(live_server: LiveServer) -> None:
    key = "f" * 40
    api = wandb_files.Api(api_key=key, base_url=live_server.base_url)
    api.client.retry = FAST_RETRY
    with pytest.raises(wandb_files.AuthenticationError) as info:
        api.viewer
    assert key not in str(info.value) and "api_key argument" in str(info.value)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Basic YXBpOmFhYWFhYWFhYWFhYQ==", "YXBpOmFhYWFhYWFhYWFhYQ=="),
        ('"GET /blobs/eyJiIjoxfQ.abc-DEF_1 HTTP/1.1" 200', "eyJiIjoxfQ.abc-DEF_1"),
        ("PUT http://h:1/uploads/tok_123.sig?x=1", "tok_123.sig"),
        ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef", "deadbeef"),
        ("https://storage.googleapis.com/b/k?X-Goog-Signature=cafe&X-Goog-Credential=me", "cafe"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "<redacted>" in redact(text)


@pytest.mark.parametrize(
    "logger_name", ["wandb_files.transfer", "wandb_files.graphql", "urllib3.connectionpool", "gql.transport.requests"]
)
def test_records_of_child_loggers_are_redacted_too(logger_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Python runs a logger's filters only for its own records: redaction must not depend on them."""
    import wandb_files.graphql  # noqa: F401 - installs the redaction

    secret = "eyJiIjoxfQ.abc-DEF_1.sig"
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    own = logging.StreamHandler(stream)
    logger = logging.getLogger(logger_name)
    logger.addHandler(own)  # a handler right on the child logger sees the record as created
    try:
        logger.debug("GET http://127.0.0.1/blobs/%s HTTP/1.1 Authorization: Basic YXBpOmFhYWFhYWFhYWFhYQ==", secret)
    finally:
        logger.removeHandler(own)
    shown = stream.getvalue() + "\n".join(r.getMessage() for r in caplog.records)
    assert "<redacted>" in shown
    assert secret not in shown and "YXBpOmFhYWFhYWFhYWFhYQ==" not in shown
