"""One count of refused inputs per (transport, reason), and one log line per refusal.

Every ingress calls `refuse()` when it turns an input down (an error reply, a close code,
an HTTP 4xx), so operators can see from the logs, and later from metrics, what is being
refused and how often. The counter is process-wide, like a metrics registry.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REFUSED: Counter[tuple[str, str]] = Counter()


def refuse(transport: str, reason: str, **fields: Any) -> int:
    """Count one refused input and log it (`input_refused`); returns the new count of its reason."""
    REFUSED[(transport, reason)] += 1
    count = REFUSED[(transport, reason)]
    log.info("input_refused", transport=transport, reason=reason, count=count, **fields)
    return count


def refused(transport: str, reason: str) -> int:
    return REFUSED[(transport, reason)]
