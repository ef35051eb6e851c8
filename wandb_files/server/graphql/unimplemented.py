"""Clear answers to the parts of W&B this server does not implement (artifacts, sweeps, launch, reports).

The wandb SDK asks for them as it logs (a `wandb.Table` is saved as an artifact too, say). Their documents do
not validate against our schema, and graphql-core's "Cannot query field 'artifact' on type 'Project'" says
nothing of why; the answer names the feature instead. The HTTP status stays 400: neither client retries it,
and the run goes on with its files.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import error_body

NOT_IMPLEMENTED = "NOT_IMPLEMENTED"

# A field or type name in graphql-core's validation messages -> the W&B feature it belongs to.
_FEATURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"artifact", re.IGNORECASE), "artifacts"),
    (re.compile(r"sweep", re.IGNORECASE), "sweeps"),
    (re.compile(r"runqueue|launch", re.IGNORECASE), "launch (run queues)"),
    (re.compile(r"report|upsertview", re.IGNORECASE), "reports"),
    (re.compile(r"alert", re.IGNORECASE), "alerts"),
)
_NAMED = re.compile(r"(?:Cannot query field|Unknown type|Unknown argument) '([^']+)'")


def explain_unimplemented(body: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    """A NOT_IMPLEMENTED answer in place of `result`'s validation errors when they name a W&B feature this
    server does not have; None when they do not (the errors are then the client's own mistakes).

    Args:
        body: The request body (for its operationName).
        result: The GraphQL result with validation errors.

    Returns:
        The answer to send instead, or None.
    """
    for error in result.get("errors") or []:
        match = _NAMED.match(str(error.get("message", "")))
        if match is None:
            continue
        for pattern, feature in _FEATURES:
            if pattern.search(match.group(1)):
                operation = body.get("operationName") or "this request"
                return error_body(
                    NOT_IMPLEMENTED,
                    f"wandb-files server does not implement {feature} ({operation}); it keeps runs and their files",
                )
    return None
