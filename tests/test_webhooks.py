"""Per-call webhooks: decision changes POSTed in order to a local aiohttp server; a failing or
hanging webhook is retried with backoff, then given up, without stalling its stream or other
calls; and end to end, a Twilio call whose <Stream> parameter names the webhook."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
from aiohttp import web
from telephony_harness import http_base, running_daemon, speechlike

from daemon.config import WebhooksConfig
from daemon.stream_api import AudioChunk, StreamSpec
from daemon.webhooks import WebhookSender
from daemon.wire.g711 import encode_mulaw


class ScriptedHandle:
    """A stream whose events are a fixed script (results with the given decisions, then closed)."""

    def __init__(self, stream_id: str, decisions: list[str]) -> None:
        self.spec = StreamSpec(stream_id, 8000, "test", {"call_id": f"call-{stream_id}"})
        self.decisions = decisions
        self.consumed = asyncio.Event()  # set when the watcher has read the whole script

    @property
    def stream_id(self) -> str:
        return self.spec.stream_id

    async def push(self, chunk: AudioChunk) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    async def close(self, reason: str = "client") -> None:  # pragma: no cover - not used
        raise NotImplementedError

    async def events(self) -> AsyncIterator[Mapping[str, Any]]:
        for seq, decision in enumerate(self.decisions):
            yield {"type": "result", "stream_id": self.stream_id, "seq": seq, "t_end_s": 0.1 * (seq + 1),
                   "decision": decision, "p_spoof_smooth": 0.5, "p_codec_smooth": 0.1, "model_id": "m",
                   "metadata": dict(self.spec.metadata)}
        self.consumed.set()
        yield {"type": "closed", "stream_id": self.stream_id, "reason": "client", "summary": {}}


class HookServer:
    """/ok records and answers 204; /fail answers 500; /hang never answers in time."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {"ok": [], "fail": [], "hang": []}
        self.arrived_at: dict[str, list[float]] = {"ok": [], "fail": [], "hang": []}
        self.app = web.Application()
        self.app.router.add_post("/endless", self.endless)
        self.app.router.add_post("/{kind}", self.handle)
        self.endless_bytes = 0
        self.runner = web.AppRunner(self.app)
        self.base = ""
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.received[kind].append(await request.json())
        self.arrived_at[kind].append(time.monotonic())
        if kind == "fail":
            return web.Response(status=500)
        if kind == "hang":  # answers only when the test ends (long after the sender's timeout)
            await self.release.wait()
        return web.Response(status=204)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        """200, then a body that never ends (a hostile or broken webhook)."""
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while self.endless_bytes < 1 << 30:
                await response.write(chunk)
                self.endless_bytes += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def __aenter__(self) -> Self:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
async def hooks() -> AsyncIterator[HookServer]:
    async with HookServer() as server:
        yield server


def sender(**overrides: Any) -> WebhookSender:
    settings: dict[str, Any] = {"timeout_s": 0.3, "max_attempts": 3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    return WebhookSender(WebhooksConfig(**{**settings, **overrides}))


async def test_decision_changes_are_posted_in_order(hooks: HookServer) -> None:
    webhooks = sender()
    await webhooks.start()
    handle = ScriptedHandle("s1", ["undecided", "undecided", "bonafide", "bonafide", "spoof", "spoof", "bonafide"])
    webhooks.watch(handle, hooks.base + "/ok")
    await webhooks.stop()  # waits for pending deliveries (bounded by one timeout)
    posts = hooks.received["ok"]
    assert [(p["previous_decision"], p["decision"]) for p in posts] == [
        ("undecided", "bonafide"), ("bonafide", "spoof"), ("spoof", "bonafide")]
    assert posts[1]["seq"] == 4 and posts[1]["type"] == "decision"
    assert all(p["metadata"] == {"call_id": "call-s1"} and p["stream_id"] == "s1" for p in posts)
    assert webhooks.counters.sent == 3 and webhooks.counters.failed == 0


async def test_failing_and_hanging_webhooks_are_retried_then_given_up_without_stalling(hooks: HookServer) -> None:
    webhooks = sender()
    await webhooks.start()
    failing = ScriptedHandle("f", ["spoof"])
    hanging = ScriptedHandle("h", ["spoof"])
    healthy = ScriptedHandle("ok", ["bonafide", "spoof", "bonafide"])
    started = time.monotonic()
    webhooks.watch(failing, hooks.base + "/fail")
    webhooks.watch(hanging, hooks.base + "/hang")
    webhooks.watch(healthy, hooks.base + "/ok")
    # the streams' events are consumed at once: delivery never holds up the event feed
    await asyncio.wait_for(asyncio.gather(failing.consumed.wait(), hanging.consumed.wait(),
                                          healthy.consumed.wait()), 0.5)
    # the healthy call's notifications arrive while the others are still failing
    while len(hooks.received["ok"]) < 3:
        await asyncio.sleep(0.01)
    assert max(hooks.arrived_at["ok"]) - started < 0.3
    while webhooks.counters.failed < 2:
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    # 3 attempts each, with backoff 0.05 s then 0.1 s; the hanging one times out after 0.3 s per attempt
    assert len(hooks.received["fail"]) == 3 and len(hooks.received["hang"]) == 3
    assert elapsed < 3 * 0.3 + 0.15 + 1.0
    counters = webhooks.counters
    assert (counters.sent, counters.failed, counters.retries) == (3, 2, 4)
    gaps = [b - a for a, b in zip(hooks.arrived_at["fail"], hooks.arrived_at["fail"][1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # exponential backoff
    await webhooks.stop()


async def test_an_endless_answer_is_not_read_into_memory(hooks: HookServer) -> None:
    """The sender used to read the whole answer body (response.read()), so a webhook that
    answers 200 with an endless body held the call's delivery for the full timeout and grew memory."""
    webhooks = sender(timeout_s=5.0, max_attempts=1)
    await webhooks.start()
    webhooks.watch(ScriptedHandle("endless", ["spoof"]), hooks.base + "/endless")
    started = time.monotonic()
    while webhooks.counters.sent + webhooks.counters.failed < 1:
        await asyncio.sleep(0.01)
    assert webhooks.counters.sent == 1 and time.monotonic() - started < 2.0
    await webhooks.stop()


async def test_a_full_queue_drops_and_counts(hooks: HookServer) -> None:
    webhooks = sender(queue_size=1, timeout_s=0.2, max_attempts=1)
    await webhooks.start()
    flapping = ScriptedHandle("flap", ["spoof", "bonafide"] * 10)  # 20 changes into a hanging webhook
    webhooks.watch(flapping, hooks.base + "/hang")
    await asyncio.wait_for(flapping.consumed.wait(), 0.5)
    await webhooks.stop()
    assert webhooks.counters.dropped >= 15  # one in flight, one queued, the rest dropped
    assert webhooks.counters.sent == 0


async def test_twilio_call_with_webhook_parameter(tiny_model: tuple[Path, Path], hooks: HookServer) -> None:
    allowed = hooks.base + "/"
    async with running_daemon(
            tiny_model[0], audiosocket={"enabled": False}, audiofork={"enabled": False},
            twilio={"webhook_parameter": "spoofwatch_webhook"},
            webhooks={"allowed_url_prefixes": [allowed], "timeout_s": 1.0},
            decision={"min_hops": 2, "spoof_enter": 0.0, "spoof_exit": 0.0}) as daemon:  # every call -> spoof
        async with aiohttp.ClientSession() as session:
            for stream_sid, url in (("MZhook", hooks.base + "/ok"), ("MZevil", "http://203.0.113.9/steal")):
                async with session.ws_connect(http_base(daemon) + "/twilio") as ws:
                    await ws.send_str(json.dumps({"event": "start", "streamSid": stream_sid, "start": {
                        "streamSid": stream_sid, "callSid": "CA-" + stream_sid, "tracks": ["inbound"],
                        "customParameters": {"spoofwatch_webhook": url, "agent": "a7"},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
                    payload = encode_mulaw(speechlike(1.0, 8000))
                    for i in range(0, len(payload), 160):
                        await ws.send_str(json.dumps({"event": "media", "streamSid": stream_sid, "media": {
                            "track": "inbound", "chunk": str(i // 160 + 1), "timestamp": "0",
                            "payload": base64.b64encode(payload[i:i + 160]).decode()}}))
                    await ws.send_str(json.dumps({"event": "stop", "streamSid": stream_sid}))
                    await ws.receive()
        await daemon.shutdown()  # webhooks stop last: pending notifications are delivered
    posts = hooks.received["ok"]
    assert len(posts) == 1
    assert posts[0]["decision"] == "spoof" and posts[0]["previous_decision"] == "undecided"
    assert posts[0]["stream_id"] == "MZhook:inbound"
    assert posts[0]["metadata"]["call_id"] == "CA-MZhook" and posts[0]["metadata"]["param.agent"] == "a7"
    assert "param.spoofwatch_webhook" not in posts[0]["metadata"]
    # the URL outside webhooks.allowed_url_prefixes was refused: nothing else was posted anywhere
    assert sum(len(v) for v in hooks.received.values()) == 1
