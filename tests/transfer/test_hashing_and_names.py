"""Pure logic of the transfer engine: md5 forms, ETags, the name rules, how names and sizes are shown."""

from __future__ import annotations

import base64
import hashlib

import pytest

from wandb_files import transfer
from wandb_files.formatting import human_size, safe_name
from wandb_files.transfer import hashing

DATA = b"the bytes of a file"
DIGEST = hashlib.md5(DATA).digest()


def test_md5_is_accepted_as_base64_or_hex() -> None:
    b64 = base64.b64encode(DIGEST).decode()
    assert transfer.md5_base64(DIGEST) == b64
    assert transfer.md5_matches(DIGEST, b64)
    assert transfer.md5_matches(DIGEST, DIGEST.hex())
    assert transfer.md5_matches(DIGEST, DIGEST.hex().upper())
    assert transfer.md5_matches(DIGEST, f"  {b64}\n")
    other = hashlib.md5(b"other").digest()
    assert not transfer.md5_matches(other, b64)
    assert not transfer.md5_matches(DIGEST, "not base64!")
    assert not transfer.md5_matches(DIGEST, "")


def test_etags_that_are_md5s_tell_a_changed_file() -> None:
    b64 = base64.b64encode(DIGEST).decode()
    assert hashing.etag_from_md5(b64) == f'"{DIGEST.hex()}"'
    assert hashing.etag_from_md5(DIGEST.hex()) == f'"{DIGEST.hex()}"'
    assert hashing.etag_from_md5(None) is None
    assert not hashing.remote_changed(f'"{DIGEST.hex()}"', b64)
    assert not hashing.remote_changed(f'W/"{DIGEST.hex()}"', b64)
    assert hashing.remote_changed(f'"{hashlib.md5(b"x").hexdigest()}"', b64)
    assert not hashing.remote_changed('"abc123-4"', b64)  # a multipart ETag says nothing about the bytes
    assert not hashing.remote_changed(None, b64)


@pytest.mark.parametrize(
    "name",
    ["a", "media/images/p_1_ab.png", "ünïcode/名前.txt", ".hidden", "a..b", "x" * 255, "/".join(["y" * 255] * 5)],
)
def test_names_a_file_system_holds(name: str) -> None:
    assert transfer.name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:x", "absolute"),
        ("a\\b", "backslash"),
        ("a//b", "empty, '.' or '..'"),
        ("./a", "empty, '.' or '..'"),
        ("a/../b", "empty, '.' or '..'"),
        ("a/", "empty, '.' or '..'"),
        ("x" * 256, "longer than 255 bytes"),
        ("é" * 128, "longer than 255 bytes"),
        ("a\x00b", "U+0000"),
        ("a\x1b[2J", "U+001B"),
        ("a\x7f", "U+007F"),
        ("a\x9bb", "U+009B"),
        ("report\u202etxt.exe", "U+202E"),
        ("a\u2066b", "U+2066"),
        ("a\u200fb", "U+200F"),
        ("a\u2028b", "U+2028"),
        ("a\udc80", "U+DC80"),
    ],
)
def test_names_that_are_refused_and_why(name: str, why: str) -> None:
    problem = transfer.name_problem(name)
    assert problem is not None and why in problem


def test_safe_name_escapes_what_would_change_the_display() -> None:
    assert safe_name("report\u202etxt.exe") == "report\\u202etxt.exe"
    assert safe_name("bell\x07\x1b[2J") == "bell\\x07\\x1b[2J"
    assert safe_name("csi\x9b") == "csi\\x9b"
    assert safe_name("ünïcode/名前 ok.txt") == "ünïcode/名前 ok.txt"  # printable text is left alone


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_300, "1.3 kB"),
        (5_400_000, "5.4 MB"),
        (3 * 10**9, "3.0 GB"),
        (2 * 10**15, "2000.0 TB"),
    ],
)
def test_human_size_uses_decimal_units(size: int, shown: str) -> None:
    assert human_size(size) == shown
