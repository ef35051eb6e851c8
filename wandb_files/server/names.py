"""Validation of the names clients choose: file paths, run ids, project names, user names."""

from __future__ import annotations

import re

MAX_FILE_NAME_BYTES = 1024
#: The longest path segment common file systems hold (ext4, XFS, APFS, NTFS: 255 bytes or UTF-16 units).
MAX_SEGMENT_BYTES = 255

_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RUN_OR_PROJECT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DRIVE = re.compile(r"[A-Za-z]:")


class InvalidName(ValueError):
    """A name was refused; the message says why, in words fit for the client."""


# C0 and C1 controls, DEL, bidirectional embeddings/overrides/isolates/marks, line and paragraph separators:
# characters that change what a terminal or a page shows (``report\u202etxt.exe`` shows as ``reportexe.txt``),
# and lone surrogates, which are not text at all.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def validate_file_name(name: object) -> str:
    """Return `name` if it is a clean relative POSIX path inside a run, else raise InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName("file name must be a non-empty string")
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise InvalidName(f"file name is longer than {MAX_FILE_NAME_BYTES} bytes")
    unsafe = UNSAFE_CHARACTERS.search(name)
    if unsafe:
        raise InvalidName(
            f"file name contains U+{ord(unsafe.group()):04X}, a control, bidirectional or surrogate character"
        )
    if "\\" in name:
        raise InvalidName("file name contains a backslash")
    if name.startswith("/"):
        raise InvalidName("file name must be relative (no leading '/')")
    if name.endswith("/"):
        raise InvalidName("file name must not end with '/'")
    segments = name.split("/")
    if _DRIVE.match(segments[0]):
        raise InvalidName("file name must not start with a drive letter")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidName("file name has an empty, '.' or '..' path segment")
        if len(segment.encode("utf-8", errors="surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidName(f"a path segment of the file name is longer than {MAX_SEGMENT_BYTES} bytes")
    return name


def validate_run_or_project_name(value: object, field: str) -> str:
    """Return a valid run id or project name, else raise InvalidName naming `field`."""
    if not isinstance(value, str) or not _RUN_OR_PROJECT.fullmatch(value) or value in (".", ".."):
        raise InvalidName(f"{field} must be 1-128 characters of A-Z a-z 0-9 _ . - (and not '.' or '..')")
    return value


def validate_user_name(value: object) -> str:
    """Return a valid user (and entity) name, else raise InvalidName."""
    if not isinstance(value, str) or not _USER_NAME.fullmatch(value):
        raise InvalidName("user name must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def display_name(name: str) -> str:
    """`name` with every control, bidirectional and surrogate character written as a visible escape
    (``\\u202e``, ``\\x1b``), the way the CLI prints names: for pages and messages, never for lookups.

    Args:
        name: Any text (names stored before such characters were refused may hold them).

    Returns:
        The text to show.
    """
    return UNSAFE_CHARACTERS.sub(
        lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) > 0xFF else f"\\x{ord(m.group()):02x}", name
    )
