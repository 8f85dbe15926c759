"""Keep a long-running loop alive: a loop that raises is logged and started again.

An ingest receive loop must never die of one bad message; its adapter catches what it
knows, and `Supervisor` is the last line: anything that still escapes is logged with its
traceback (`task_restarted`, with the count) and the loop restarts after a short backoff
(doubling from `initial_delay_s` to `max_delay_s`, back to the start after a long healthy
run). Cancellation is never caught: stopping the task stops the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

HEALTHY_RUN_S = 5.0


class Supervisor:
    def __init__(self, name: str, run: Callable[[], Awaitable[None]], *, initial_delay_s: float = 0.05,
                 max_delay_s: float = 2.0) -> None:
        self.name = name
        self._run = run
        self._initial_delay_s = initial_delay_s
        self._max_delay_s = max_delay_s
        self.restarts = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._initial_delay_s
        while True:
            started = loop.time()
            try:
                await self._run()
                error = "returned"  # a receive loop never returns on its own
            except Exception as exc:  # the point: nothing may end the loop
                error = repr(exc)[:300]
                log.exception("task_died", task=self.name)
            if loop.time() - started >= HEALTHY_RUN_S:
                delay = self._initial_delay_s
            self.restarts += 1
            log.error("task_restarted", task=self.name, restarts=self.restarts, error=error,
                      delay_s=round(delay, 3))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay_s)
