"""Jinja2 templates with autoescape, and the filters that make names safe to show and to copy.

Every value reaches a page through autoescape (HTML) after `shown` (control and bidirectional characters as
visible escapes); the copyable snippet is a Python literal made by `python_string`, put in the page as text
(never inside a script), so neither HTML, JavaScript nor Python can be injected through a name.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from ..names import UNSAFE_CHARACTERS, display_name

TEMPLATES = Path(__file__).parent / "templates"


def human_size(size: int) -> str:
    """``512 B``, ``1.2 kB``, ``3.4 GB``: decimal units, as the CLI prints them.

    Args:
        size: Bytes.

    Returns:
        The size for a person.
    """
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def python_string(text: str) -> str:
    """`text` as a double-quoted Python string literal that evaluates back to `text`.

    Backslashes and double quotes are escaped, and so is every character a page or terminal would not show as
    itself (controls, bidirectional overrides, surrogates: ``\\x1b``, ``\\u202e``); other characters stay as
    they are, so a name reads as it does in the listing.

    Args:
        text: Any text.

    Returns:
        The literal, quotes included.
    """

    def escape(ch: str) -> str:
        code = ord(ch)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    body = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + UNSAFE_CHARACTERS.sub(lambda m: escape(m.group()), body) + '"'


def url_path(text: str) -> str:
    """`text` percent-encoded for a URL path (slashes kept).

    Args:
        text: A name.

    Returns:
        The encoded path.
    """
    return quote(text, safe="/")


def utc(value: datetime | None) -> str:
    """A naive UTC datetime as ``2026-12-01 15:13:54``.

    Args:
        value: The time, or None.

    Returns:
        The text ("" for None).
    """
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def make_environment() -> jinja2.Environment:
    """The template environment: the package's templates, autoescape on for every template, strict undefined.

    Returns:
        The environment.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(shown=display_name, size=human_size, python=python_string, urlpath=url_path, utc=utc)
    return env


class Renderer:
    """Renders the package's templates to text."""

    def __init__(self) -> None:
        self._env = make_environment()

    def render(self, template: str, **context: Any) -> str:
        """The page `template` rendered with `context`.

        Args:
            template: A file name in templates/.
            **context: The template's variables.

        Returns:
            The HTML.
        """
        return self._env.get_template(template).render(**context)
