"""Name patterns: the shell-style globs of the CLI as the SQL LIKE patterns the server filters with."""

from __future__ import annotations


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
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
