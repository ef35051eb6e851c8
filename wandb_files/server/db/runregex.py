"""The `$regex` subset run filters accept: checked once, then written for RE2 (SQLite) and for PostgreSQL's `~`,
so both databases answer alike.

The subset is what RE2 (W&B's engine) and PostgreSQL's advanced regular expressions agree on, with the class
escapes spelled out as RE2 defines them (`\\d` is `[0-9]`, `\\w` is `[0-9A-Za-z_]`, `\\s` is `[\\t\\n\\f\\r ]`)
so no locale changes them. docs/run-filters.md lists what is refused and what differs.

On SQLite the patterns run in RE2 (google-re2), not Python's `re`: RE2 takes time linear in the text, where a
backtracking engine can take exponential time on a pattern such as `(a+)+$` while holding the GIL, which would
stall every request of the process. PostgreSQL's engine is not a backtracking one either.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

#: Longest pattern accepted, in characters.
MAX_REGEX = 1_000
#: Largest bound of a {m,n} repetition (PostgreSQL's limit).
MAX_REPEAT = 255

_DIGIT = "0-9"
_WORD = "0-9A-Za-z_"
_SPACE = "\\t\\n\\f\\r "
_CLASS_ESCAPES = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_PLAIN_ESCAPES = set("ntrfv")
_BRACE = re.compile(r"\{(\d{1,4})(?:(,)(\d{0,4}))?\}")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


class RegexNotSupported(ValueError):
    """A pattern outside the supported subset, or not a valid regular expression."""


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> tuple[str, str]:
    """Check `pattern` is in the subset; return it written for RE2 (on SQLite) and for PostgreSQL.

    Args:
        pattern: The `$regex` operand (RE2 syntax, searched anywhere in the value).

    Returns:
        (re2_pattern, postgres_pattern). The RE2 one carries its flags inline ("(?s)…").

    Raises:
        RegexNotSupported: the pattern is too long, uses something outside the subset, or is invalid.
    """
    if len(pattern) > MAX_REGEX:
        raise RegexNotSupported(f"a pattern may have at most {MAX_REGEX} characters")
    if "\x00" in pattern:
        raise RegexNotSupported("a pattern cannot hold a NUL character")
    r2: list[str] = []
    pg: list[str] = []
    flags = "s"
    i = 0
    if pattern.startswith("(?i)"):
        flags, i = "si", 4
        pg.append("(?i)")
    n = len(pattern)
    depth = 0
    can_repeat = False  # whether the previous item is something a quantifier may follow

    def both(text: str) -> None:
        r2.append(text)
        pg.append(text)

    while i < n:
        c = pattern[i]
        if c == "\\":
            escaped, i = _escape(pattern, i, in_class=False)
            r2.append(escaped[0])
            pg.append(escaped[1])
            can_repeat = escaped[0] not in ("\\b", "\\B")
        elif c == "[":
            cls, i = _char_class(pattern, i)
            both(cls)
            can_repeat = True
        elif c == "(":
            if pattern.startswith("(?:", i):
                both("(?:")
                i += 3
            elif pattern.startswith("(?", i):
                raise RegexNotSupported(_group_problem(pattern, i))
            else:
                both("(")
                i += 1
            depth += 1
            can_repeat = False
        elif c == ")":
            if depth == 0:
                raise RegexNotSupported(f"unbalanced ')' at position {i}")
            depth -= 1
            both(")")
            i += 1
            can_repeat = True
        elif c in "*+?{":
            if c == "{":
                match = _BRACE.match(pattern, i)
                if match is None:
                    raise RegexNotSupported(f"a literal '{{' must be written \\{{ (position {i})")
                low = int(match.group(1))
                high = low if match.group(2) is None else int(match.group(3) or MAX_REPEAT)
                if max(low, high) > MAX_REPEAT or low > high:
                    raise RegexNotSupported(f"repetition bounds must be 0 <= m <= n <= {MAX_REPEAT}: {match.group()}")
                token, end = match.group(), match.end()
            else:
                token, end = c, i + 1
            if not can_repeat:
                raise RegexNotSupported(f"nothing to repeat at position {i}")
            both(token)
            i = end
            if i < n and pattern[i] == "?":
                both("?")  # lazy: the same matches (filters only ask whether the value matches)
                i += 1
            if i < n and pattern[i] in "*+?{":
                raise RegexNotSupported(f"a quantifier cannot follow another (possessive or repeated) at position {i}")
            can_repeat = False
        elif c == "$":
            # \z: the end of the text whatever the flags, as RE2's $ without (?m) and ARE's $ are.
            r2.append("\\z")
            pg.append("$")
            i += 1
            can_repeat = False
        elif c == "^":
            both("^")
            i += 1
            can_repeat = False
        elif c == "}":
            raise RegexNotSupported(f"a literal '}}' must be written \\}} (position {i})")
        else:
            both(c)
            i += 1
            can_repeat = True
    if depth:
        raise RegexNotSupported("unbalanced '(': missing ')'")
    re2_pattern = f"(?{flags})" + "".join(r2)
    try:
        _compiled(re2_pattern)
    except re2.error as exc:
        raise RegexNotSupported(f"invalid regular expression: {exc}") from None
    return re2_pattern, "".join(pg)


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[tuple[str, str], int]:
    """The (RE2, PostgreSQL) spelling of the escape at `pattern[i]` (a backslash) and the index after it."""
    if i + 1 >= len(pattern):
        raise RegexNotSupported("the pattern ends with a lone backslash")
    d = pattern[i + 1]
    if d in _CLASS_ESCAPES:
        body = _CLASS_ESCAPES[d]
        text = body if in_class else f"[{body}]"
        return (text, text), i + 2
    if d in "DWS":
        if in_class:
            raise RegexNotSupported(f"\\{d} is not supported inside [...]")
        text = f"[^{_CLASS_ESCAPES[d.lower()]}]"
        return (text, text), i + 2
    if d in "bB":
        if in_class:
            raise RegexNotSupported("\\b is not supported inside [...]")
        # ARE spells word boundaries \y and \Y (its \b is a backspace).
        return (f"\\{d}", "\\y" if d == "b" else "\\Y"), i + 2
    if d in _PLAIN_ESCAPES:
        return (f"\\{d}", f"\\{d}"), i + 2
    if d == "x":
        hex2 = _HEX2.match(pattern, i + 2)
        if hex2 is None:
            raise RegexNotSupported("\\x must be followed by exactly two hex digits")
        if int(hex2.group(), 16) == 0:
            raise RegexNotSupported("a pattern cannot hold a NUL character")
        # ARE's \x takes every hex digit that follows; \u takes exactly four.
        return (f"\\x{hex2.group()}", f"\\u00{hex2.group()}"), i + 4
    if d.isdigit():
        raise RegexNotSupported("backreferences (\\1 ...) are not supported")
    if d.isascii() and not d.isalnum():
        return (f"\\{d}", f"\\{d}"), i + 2
    raise RegexNotSupported(f"the escape \\{d} is not supported")


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The bracket expression starting at `pattern[i]` ("["), spelled for both engines, and the index after it."""
    out = ["["]
    j = i + 1
    n = len(pattern)
    if j < n and pattern[j] == "^":
        out.append("^")
        j += 1
    first = True
    while True:
        if j >= n:
            raise RegexNotSupported(f"unterminated '[' at position {i}")
        c = pattern[j]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        if c == "\\":
            (text, other), j = _escape(pattern, j, in_class=True)
            if text != other:
                raise RegexNotSupported("\\x escapes are not supported inside [...]")
            out.append(text)
        elif c == "[":
            if j + 1 < n and pattern[j + 1] in ":=.":
                raise RegexNotSupported("POSIX classes such as [:alpha:] are not supported")
            out.append("\\[")
            j += 1
        elif c in "]&~|":
            out.append("\\" + c)  # a leading ], and &~| as plain literals (escaped: no engine reads them otherwise)
            j += 1
        else:
            out.append(c)
            j += 1
        first = False


@functools.lru_cache(maxsize=256)
def _compiled(re2_pattern: str) -> Any:
    return re2.compile(re2_pattern)


def sqlite_regexp(re2_pattern: str | None, value: object) -> int:
    """SQLite's `wf_regexp(pattern, value)`: 1 when the translated pattern is found in the text value, else 0."""
    if re2_pattern is None or not isinstance(value, str):
        return 0
    # As UTF-8 bytes, RE2's own text: given a str, google-re2 also works out character offsets for the match.
    return 1 if _compiled(re2_pattern).search(value.encode("utf-8", "surrogatepass")) is not None else 0


_GROUP_KINDS = (
    ("(?<=", "lookbehind"),
    ("(?<!", "lookbehind"),
    ("(?=", "lookahead"),
    ("(?!", "lookahead"),
    ("(?P<", "named groups"),
    ("(?<", "named groups"),
    ("(?P=", "backreferences"),
    ("(?>", "atomic groups"),
    ("(?#", "comments"),
)


def _group_problem(pattern: str, i: int) -> str:
    for prefix, what in _GROUP_KINDS:
        if pattern.startswith(prefix, i):
            return f"{what} ({prefix}...) are not supported"
    return "inline flags are supported only as (?i) at the very start of the pattern"
