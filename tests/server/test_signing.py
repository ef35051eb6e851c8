"""Signed URL tokens as pure logic: round trips, tampering, purposes, expiry (no server needed)."""

from __future__ import annotations

import pytest

from wandb_files.server import signing
from wandb_files.server.signing import BlobRef, ExpiredToken, InvalidToken, UrlSigner, _Purpose

REF = BlobRef("0123abcd", 102_400, "XrY7u+Ae7tCTyyK7j1rNww==", "image/png", "a b.png")


def _blob_token(signer: UrlSigner, ref: BlobRef = REF) -> str:
    return signer.blob_token(ref.blob_key, size=ref.size, md5=ref.md5, mimetype=ref.mimetype, filename=ref.filename)


def test_tokens_round_trip() -> None:
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    assert signer.read_upload_token(signer.upload_token(7, "media/a b.png")) == (7, "media/a b.png")
    assert signer.read_blob_token(_blob_token(signer)) == REF


def test_blob_tokens_carry_what_the_response_needs_under_the_signature() -> None:
    """Serving a direct URL reads size, md5, type and name from the token: changing any breaks the signature."""
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    token = _blob_token(signer)
    _, stamp, signature = token.split(".")
    forged = _Purpose("s" * 64, b"wandb-files.blob")  # the right key: only the signature binds these fields
    for field, value in (
        ("blob_key", "ffff0000"),
        ("size", 1),
        ("md5", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("mimetype", "text/html"),
    ):
        other = _blob_token(signer, BlobRef(**{**REF.__dict__, field: value}))
        other_body = other.split(".")[0]
        with pytest.raises(InvalidToken):
            signer.read_blob_token(f"{other_body}.{stamp}.{signature}")  # new contents, old signature
    assert forged.loads(token, 60) == [REF.blob_key, REF.size, REF.md5, REF.mimetype, REF.filename]


def test_blob_tokens_without_every_field_are_invalid() -> None:
    """A genuine signature over anything but the five fields (a bare key included) names no blob."""
    for malformed in ("0123abcd", [], ["0123abcd", "big", "m", "t", "n"], ["0123abcd", 1, "m", "t"], {"k": 1}):
        with pytest.raises(InvalidToken):
            UrlSigner("s" * 64, ttl_seconds=60).read_blob_token(
                _Purpose("s" * 64, b"wandb-files.blob").dumps(malformed)
            )


def test_tampered_foreign_and_cross_purpose_tokens_are_invalid() -> None:
    signer = UrlSigner("s" * 64, ttl_seconds=60)
    token = _blob_token(signer)
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
    token = _blob_token(signer)
    monkeypatch.setattr(signing.time, "time", lambda: now + 59)
    assert signer.read_blob_token(token) == REF
    monkeypatch.setattr(signing.time, "time", lambda: now + 61)
    with pytest.raises(ExpiredToken):
        signer.read_blob_token(token)
    monkeypatch.setattr(signing.time, "time", lambda: now - 120)  # signed "later" than now by two minutes
    with pytest.raises(InvalidToken):
        signer.read_blob_token(token)
