"""How the SDK and the CLI show sizes and names to a person: one `human_size`, one `safe_name`."""

from __future__ import annotations

import re

#: Characters that would change what a terminal or a page shows: C0 and C1 controls (ESC sequences, CSI
#: U+009B), DEL, bidirectional embeddings, overrides, isolates and marks (``report\u202etxt.exe`` would
#: show as ``reportexe.txt``), the line and paragraph separators, and lone surrogates (not text at all).
#: One kB, as `human_size`, the progress bars (tqdm's ``unit_divisor``) and the CLI's MB/s count it: decimal units.
BYTE_UNIT = 1000
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def safe_name(name: str) -> str:
    """`name` with every character of `UNSAFE_CHARACTERS` written as an escape (``\\u202e``), for display.

    >>> safe_name("report\\u202etxt.exe")
    'report\\\\u202etxt.exe'
    """
    return UNSAFE_CHARACTERS.sub(
        lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) > 0xFF else f"\\x{ord(m.group()):02x}", name
    )


def human_size(size: int) -> str:
    """``512 B``, ``1.2 kB``, ``3.4 GB``: decimal (SI) units, as the progress bars and summaries use."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < BYTE_UNIT or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= BYTE_UNIT
    raise AssertionError("unreachable")  # pragma: no cover
