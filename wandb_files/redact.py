"""Keep secrets out of logs: API keys and the signatures of signed URLs.

The transport's libraries log at DEBUG level what they send and receive (gql: request and response bodies, which
hold signed `directUrl`s; urllib3: request lines, which hold upload tokens). Redaction happens where each record
is made: a log record factory rewrites the records of those loggers and of all their children before any
filter or handler sees them. (A filter on a logger would not do: Python runs a logger's filters only for
records logged on that very logger, not for those its children propagate to it.)
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_PATTERNS = [
    # Basic credentials, e.g. an Authorization header echoed in a log line.
    (re.compile(r"(Basic\s+)[A-Za-z0-9+/=]{8,}"), r"\1<redacted>"),
    # Our server's signed tokens: /blobs/<token>, /uploads/<token>.
    (re.compile(r"(/(?:blobs|uploads)/)[A-Za-z0-9_.~%=-]+"), r"\1<redacted>"),
    # Presigned S3/GCS/Azure URLs: the signature and credential parameters.
    (
        re.compile(r"((?:X-Amz-|X-Goog-)?(?:Signature|Credential|Security-Token)|sig|token)=[^&\s\"']+", re.I),
        r"\1=<redacted>",
    ),
]

#: The loggers (with their children) that see URLs and bodies: ours, gql's transports, urllib3.
LOGGERS = ("wandb_files", "gql.transport", "urllib3")

_installed = threading.Lock()


def redact(text: str) -> str:
    """`text` with API keys and URL signatures replaced by ``<redacted>``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _watched(name: str) -> bool:
    return any(name == logger or name.startswith(logger + ".") for logger in LOGGERS)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Rewrite a record's message with `redact` (formatted once, then kept without arguments)."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is logging's to report, not ours
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    return record


class RedactingFilter(logging.Filter):
    """Rewrites records with `redact_record`, for a handler of your own; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install() -> None:
    """Make every record of `LOGGERS` and their children redacted as it is created (idempotent).

    The factory in place before is kept and called first, so other libraries' factories still work.
    """
    with _installed:
        current = logging.getLogRecordFactory()
        if getattr(current, "_wandb_files_redacting", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record: logging.LogRecord = current(*args, **kwargs)
            return redact_record(record) if _watched(record.name) else record

        factory._wandb_files_redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
