"""Validation of the names clients choose: file paths, run ids, project names, user names."""

from __future__ import annotations

import re

MAX_FILE_NAME_BYTES = 1024

_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RUN_OR_PROJECT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DRIVE = re.compile(r"[A-Za-z]:")


class InvalidName(ValueError):
    """A name was refused; the message says why, in words fit for the client."""


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def validate_file_name(name: object) -> str:
    """Return `name` if it is a clean relative POSIX path inside a run, else raise InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName("file name must be a non-empty string")
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise InvalidName(f"file name is longer than {MAX_FILE_NAME_BYTES} bytes")
    if _has_control(name):
        raise InvalidName("file name contains a NUL or control character")
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
