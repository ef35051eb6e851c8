"""The MIME type stored with a file, guessed from its name the same way on every machine.

`mimetypes.guess_type` consults the machine's own tables (/etc/mime.types and others), so the same name
got different types on different hosts (`.pt` became application/vnd.snesdev-page-table on Debian). This
module uses a `mimetypes.MimeTypes` built from Python's built-in table only, plus a few registered types
common in ML runs that the built-in table of older Pythons lacks.
"""

from __future__ import annotations

import mimetypes

DEFAULT_MIMETYPE = "application/octet-stream"

# IANA-registered types the built-in table lacks (in some Python versions). Unregistered types such as
# JSON Lines' application/jsonl are deliberately absent: such files are application/octet-stream.
_EXTRA_TYPES = {
    ".yaml": "application/yaml",  # RFC 9512
    ".yml": "application/yaml",
    ".md": "text/markdown",  # RFC 7763
    ".markdown": "text/markdown",
    ".webp": "image/webp",  # RFC 9649
    ".log": "text/plain",  # logs are text; the built-in table has no entry
}

# filenames=() : the built-in table only; no system files are read into this instance.
_TYPES = mimetypes.MimeTypes(filenames=())
for _ext, _type in _EXTRA_TYPES.items():
    _TYPES.add_type(_type, _ext, strict=True)


def guess_mimetype(name: str) -> str:
    """The MIME type for a file name, independent of the machine; application/octet-stream if unknown."""
    return _TYPES.guess_type(name, strict=True)[0] or DEFAULT_MIMETYPE
