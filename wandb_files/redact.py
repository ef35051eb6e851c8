"""Keep secrets out of logs: API keys and the signatures of signed URLs.

The transport's libraries log at DEBUG level what they send and receive (gql: request and response bodies, which
hold signed `directUrl`s; urllib3: request lines, which hold upload tokens). A filter on those loggers rewrites
each record before any handler sees it, so turning on debug logging never leaks a credential.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    # Basic credentials, e.g. an Authorization header echoed in a log line.
    (re.compile(r"(Basic\s+)[A-Za-z0-9+/=]{8,}"), r"\1<redacted>"),
    # Our server's signed tokens: /blobs/<token>, /uploads/<token>.
    (re.compile(r"(/(?:blobs|uploads)/)[A-Za-z0-9_.~%=-]+"), r"\1<redacted>"),
    # Presigned S3/GCS/Azure URLs: the signature and credential parameters.
    (re.compile(r"((?:X-Amz-|X-Goog-)?(?:Signature|Credential|Security-Token)|sig|token)=[^&\s\"']+", re.I),
     r"\1=<redacted>"),
]

#: The loggers that see URLs and bodies: ours, gql's transport, urllib3's connection pool.
LOGGERS = ("wandb_files", "gql.transport.requests", "urllib3.connectionpool")


def redact(text: str) -> str:
    """`text` with API keys and URL signatures replaced by ``<redacted>``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message with `redact` (it never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install() -> None:
    """Put one `RedactingFilter` on each logger in `LOGGERS` (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
