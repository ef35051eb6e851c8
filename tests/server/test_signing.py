"""Signed URL tokens as pure logic: round trips, tampering, purposes, expiry (no server needed)."""

from __future__ import annotations

import pytest

from wandb_files.server import signing
from wandb_files.server.signing import ExpiredToken, InvalidToken, UrlSigner


def test_tokens_round_trip() -> None:
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    assert signer.read_upload_token(signer.upload_token(7, "media/a b.png")) == (7, "media/a b.png")
    assert signer.read_blob_token(signer.blob_token("0123abcd")) == "0123abcd"


def test_tampered_foreign_and_cross_purpose_tokens_are_invalid() -> None:
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    token = signer.blob_token("0123abcd")
    body, stamp, signature = token.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (f"{flipped}.{stamp}.{signature}", f"{body}.{stamp}.{signature[:-2]}", "garbage", "", "a.b.c", "ü.ü.ü"):
        with pytest.raises(InvalidToken):
            signer.read_blob_token(bad)
    with pytest.raises(InvalidToken):
        UrlSigner("t" * 64, ttl_seconds=60).read_blob_token(token)  # another server's secret
    with pytest.raises(InvalidToken):
        signer.read_upload_token(token)  # a download token is never an upload token


def test_tokens_expire_and_tokens_from_the_future_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    now = 1_800_000_000.0
    monkeypatch.setattr(signing.time, "time", lambda: now)
    token = signer.blob_token("0123abcd")
    monkeypatch.setattr(signing.time, "time", lambda: now + 59)
    assert signer.read_blob_token(token) == "0123abcd"
    monkeypatch.setattr(signing.time, "time", lambda: now + 61)
    with pytest.raises(ExpiredToken):
        signer.read_blob_token(token)
    monkeypatch.setattr(signing.time, "time", lambda: now - 120)  # signed "later" than now by two minutes
    with pytest.raises(InvalidToken):
        signer.read_blob_token(token)
