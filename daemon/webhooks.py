"""Per-call webhooks: an HTTP POST of the decision each time it changes, for gateways that
cannot subscribe to the ZeroMQ PUB socket.

`WebhookSender.watch(handle, url)` follows one stream's events (`StreamHandle.events()`,
bounded by the hub) and queues a `decision` message whenever the decision changes. Each
call has its own small bounded queue and delivery task, so a dead or slow webhook only
delays that call's own notifications; it never blocks the stream, the hub or another
call. Each POST has a timeout; failures (connection errors, timeouts, 5xx, 429) are
retried with exponential backoff up to `max_attempts`, then given up. Every drop
(queue full) and every give-up is counted and logged.

Body (JSON): {"v": 1, "type": "decision", "stream_id", "decision", "previous_decision",
"p_spoof_smooth", "p_codec_smooth", "seq", "t_end_s", "model_id", "metadata"}.

With a signing secret (`auth.webhook_secret`) each POST carries `X-Spoofwatch-Timestamp` and
`X-Spoofwatch-Signature: sha256=<HMAC-SHA256 of "TIMESTAMP.BODY">` (`daemon.auth.verify_webhook`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from daemon.auth import sign_webhook
from daemon.config import WebhooksConfig
from daemon.stream_api import StreamHandle
from daemon.wire.results import PROTOCOL_VERSION

log = structlog.get_logger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
_RETRY_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))


@dataclass
class WebhookCounters:
    sent: int = 0  # POSTs answered 2xx
    retries: int = 0  # attempts after the first
    failed: int = 0  # notifications given up after the last attempt (or a non-retryable status)
    dropped: int = 0  # notifications that found their call's queue full


def decision_message(event: Mapping[str, Any], previous: str) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION, "type": "decision", "stream_id": event["stream_id"],
        "decision": event["decision"], "previous_decision": previous,
        "p_spoof_smooth": event.get("p_spoof_smooth"), "p_codec_smooth": event.get("p_codec_smooth"),
        "seq": event.get("seq"), "t_end_s": event.get("t_end_s"), "model_id": event.get("model_id"),
        "metadata": dict(event.get("metadata") or {}),
    }


def url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """A webhook URL taken from call metadata must start with one of the configured prefixes."""
    return url.startswith(("http://", "https://")) and any(url.startswith(p) for p in prefixes)


class WebhookSender:
    """Owns one aiohttp client session and one watch task per call. `start()` before `watch()`."""

    def __init__(self, config: WebhooksConfig, signing_secret: str = "") -> None:
        self._config = config
        self._secret = signing_secret  # HMAC-SHA256 signature headers on every POST when set
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._requests = asyncio.Semaphore(config.max_concurrent_requests)
        self.counters = WebhookCounters()

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_s))

    async def stop(self) -> None:
        """Give pending notifications one timeout to leave, then cancel; close the session."""
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._config.timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        log.info("webhooks_stopped", **vars(self.counters))

    def allows(self, url: str) -> bool:
        """Whether a call-supplied URL may be used (webhooks.allowed_url_prefixes)."""
        return url_allowed(url, self._config.allowed_url_prefixes)

    def watch(self, handle: StreamHandle, url: str) -> None:
        """Notify `url` of every decision change of `handle`'s stream until it closes."""
        if self._session is None:
            raise RuntimeError("WebhookSender.watch() before start()")
        events = handle.events()  # subscribe now, so no result published from here on is missed
        task = asyncio.create_task(self._run_watch(handle.stream_id, events, url), name=f"webhook:{handle.stream_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_watch(self, stream_id: str, events: AsyncIterator[Mapping[str, Any]], url: str) -> None:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self._config.queue_size)
        deliverer = asyncio.create_task(self._run_delivery(queue, url, stream_id))
        previous = "undecided"
        try:
            async for event in events:
                if event.get("type") != "result" or event.get("decision") == previous:
                    continue
                message = decision_message(event, previous)
                previous = str(event["decision"])
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    self.counters.dropped += 1
                    log.warning("webhook_dropped", stream_id=stream_id, url=url,
                                reason=f"{self._config.queue_size} notifications already waiting")
            await queue.put(None)  # the end marker waits for room; the deliverer always drains
            await deliverer
        finally:
            if not deliverer.done():
                deliverer.cancel()
                await asyncio.gather(deliverer, return_exceptions=True)

    async def _run_delivery(self, queue: asyncio.Queue[dict[str, Any] | None], url: str, stream_id: str) -> None:
        while (message := await queue.get()) is not None:
            await self._post_with_retries(url, message, stream_id)

    async def _post_with_retries(self, url: str, message: Mapping[str, Any], stream_id: str) -> None:
        assert self._session is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        delay = self._config.backoff_initial_s
        for attempt in range(1, self._config.max_attempts + 1):
            if attempt > 1:
                self.counters.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.backoff_max_s)
            try:
                headers = {"Content-Type": "application/json"}
                if self._secret:  # signed per attempt: the timestamp is the time of sending
                    headers.update(sign_webhook(self._secret, body))
                async with self._requests, self._session.post(url, data=body, headers=headers) as response:
                    status = response.status
                    # the answer's body means nothing here: read a bounded prefix, never all of it
                    await response.content.read(MAX_RESPONSE_BYTES)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                retryable = True
            else:
                if 200 <= status < 300:
                    self.counters.sent += 1
                    return
                problem, retryable = f"HTTP {status}", status in _RETRY_STATUS
            log.info("webhook_attempt_failed", stream_id=stream_id, url=url, attempt=attempt, problem=problem)
            if not retryable:
                break
        self.counters.failed += 1
        log.warning("webhook_given_up", stream_id=stream_id, url=url, decision=message.get("decision"),
                    attempts=attempt)
