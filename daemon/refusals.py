"""One daemon's count of refused inputs per (transport, reason), and one log line per refusal.

Every ingress calls `refuse()` when it turns an input down (an error reply, a close code,
an HTTP 4xx), so operators can see from the logs and from metrics what is being refused and
how often. The composition root (`daemon.app.Daemon`) creates one `Refusals` and hands it to
each ingress, the HTTP auth middleware, the ZAP authenticator and the metrics collector, so two
daemons in one process (the tests) never share counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Refusals:
    """Counts refused inputs by (transport, reason) and logs each one (`input_refused`)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def refuse(self, transport: str, reason: str, **fields: Any) -> int:
        """Count one refused input and log it; returns the new count of its (transport, reason)."""
        key = (transport, reason)
        self._counts[key] += 1
        count = self._counts[key]
        log.info("input_refused", transport=transport, reason=reason, count=count, **fields)
        return count

    def count(self, transport: str, reason: str) -> int:
        return self._counts[(transport, reason)]

    def counts(self) -> list[tuple[tuple[str, str], int]]:
        """Every (transport, reason) seen so far with its count, sorted."""
        return sorted(self._counts.items())
