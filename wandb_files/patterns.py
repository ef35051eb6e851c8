"""Name patterns, the one place that writes and reads SQL LIKE: literal text and prefixes as LIKE patterns, the
shell-style globs of the CLI as the LIKE patterns the server filters with, and LIKE patterns as regular
expressions."""

from __future__ import annotations

import re


def like_escape(text: str) -> str:
    """`text` as a LIKE pattern (backslash as the escape character) that matches only `text` itself.

    >>> like_escape("a_b%")
    'a\\\\_b\\\\%'
    """
    return "".join("\\" + ch if ch in "%_\\" else ch for ch in text)


def like_prefix(prefix: str) -> str | None:
    """The LIKE pattern of every name that starts with `prefix`; None (no pattern: every name) for ``""``."""
    return like_escape(prefix) + "%" if prefix else None


def glob_to_like(glob: str) -> str:
    """The SQL LIKE pattern (backslash as the escape character) that matches what the shell-style `glob` does.

    ``*`` becomes ``%``, ``?`` becomes ``_``; a literal ``%``, ``_`` or ``\\`` in the glob is escaped with a
    backslash so that it matches only itself. ``[...]`` has no LIKE equivalent and is matched literally.

        >>> glob_to_like("media/*_?.png")
        'media/%\\\\__.png'
    """
    out = []
    for ch in glob:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(like_escape(ch))
    return "".join(out)


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression that matches a whole name exactly when the SQL LIKE `pattern` does.

    ``%`` is any run of characters, ``_`` one character, a backslash makes the next character literal; the
    comparison is case-sensitive, as the server's listings are. Use ``fullmatch``.

        >>> like_to_regex("media/%\\\\_1.png").fullmatch("media/images/pred_1.png") is not None
        True
    """
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)
