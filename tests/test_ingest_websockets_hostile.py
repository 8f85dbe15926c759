"""Twilio and audio-fork WebSockets refuse hostile JSON with a protocol close, never an unhandled
exception (issue 22, fixes 2 and 3); a stream that had opened ends as `error`, and every refusal
is counted by reason."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telephony_harness import PubCollector, collecting, http_base, running_daemon

from daemon.app import Daemon
from daemon.ingest.twilio import TwilioConnection

NESTED = "[" * 1000 + "]" * 1000
PAYLOAD = base64.b64encode(bytes(160)).decode()


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path]) -> AsyncIterator[Daemon]:
    async with running_daemon(tiny_model[0], audiosocket={"enabled": False}) as app:
        yield app


def twilio_start(sid: str) -> str:
    return json.dumps({"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "callSid": "CA-" + sid, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def twilio_media(sid: str, chunk: str) -> str:
    media = f'{{"track":"inbound","chunk":{chunk},"timestamp":"0","payload":"{PAYLOAD}"}}'
    return f'{{"event":"media","streamSid":"{sid}","media":{media}}}'


async def close_code_after(session: aiohttp.ClientSession, url: str, messages: list[str | bytes]) -> int | None:
    async with session.ws_connect(url) as ws:
        for message in messages:
            await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
        reply = await asyncio.wait_for(ws.receive(), 5)
        assert reply.type == aiohttp.WSMsgType.CLOSE, reply
        return ws.close_code


async def closed_reason(pub: PubCollector, stream_id: str) -> str:
    return str((await pub.closed(stream_id))["reason"])


# name -> (messages, close code, stream that had opened or None, counted reason)
TWILIO_CASES: dict[str, tuple[list[str | bytes], int, str | None, str]] = {
    "nested first": ([NESTED], 1007, None, "json_too_deep"),
    "nested after media": ([twilio_start("MZn"), twilio_media("MZn", '"1"'), NESTED], 1007, "MZn:inbound",
                           "json_too_deep"),
    "chunk Infinity": ([twilio_start("MZi"), twilio_media("MZi", '"1"'), twilio_media("MZi", "Infinity")], 1007,
                       "MZi:inbound", "json_bad_number"),
    "chunk 1e400": ([twilio_start("MZe"), twilio_media("MZe", '"1"'), twilio_media("MZe", "1e400")], 1007,
                    "MZe:inbound", "json_bad_number"),
    "chunk huge float": ([twilio_start("MZf"), twilio_media("MZf", '"1"'), twilio_media("MZf", "1e300")], 1008,
                         "MZf:inbound", "bad_chunk"),
    "chunk inf text": ([twilio_start("MZt"), twilio_media("MZt", '"1"'), twilio_media("MZt", '"inf"')], 1008,
                       "MZt:inbound", "bad_chunk"),
    "chunk negative": ([twilio_start("MZm"), twilio_media("MZm", '"1"'), twilio_media("MZm", "-5")], 1008,
                       "MZm:inbound", "bad_chunk"),
    "huge integer": (['{"event":"media","x":' + "9" * 5000 + "}"], 1007, None, "json_bad_number"),
}


@pytest.mark.parametrize("name", list(TWILIO_CASES))
async def test_twilio_hostile_json_is_a_protocol_close(daemon: Daemon, name: str) -> None:
    messages, code, opened, reason = TWILIO_CASES[name]
    before = daemon.refusals.count("twilio", reason)
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        assert await close_code_after(session, http_base(daemon) + "/twilio", messages) == code
        if opened is not None:
            assert await closed_reason(pub, opened) == "error"
    assert daemon.refusals.count("twilio", reason) == before + 1


AUDIOFORK_CASES: dict[str, tuple[str, list[str | bytes], int, str | None, str]] = {
    "nested preamble": ("", [NESTED], 1007, None, "json_too_deep"),
    "nested after start": ("", [json.dumps({"callSid": "af-n"}), bytes(320), NESTED], 1007, "af-n", "json_too_deep"),
    "rate infk": ("", [json.dumps({"callSid": "af-i", "sampleRate": "infk"})], 1008, None, "bad_rate"),
    "rate 1e400k": ("", [json.dumps({"callSid": "af-e", "sampleRate": "1e400k"})], 1008, None, "bad_rate"),
    "rate nank": ("", [json.dumps({"callSid": "af-a", "sampleRate": "nank"})], 1008, None, "bad_rate"),
    "rate infk in URL": ("?sample_rate=infk", [json.dumps({"callSid": "af-u"})], 1008, None, "bad_rate"),
    "rate Infinity": ("", ['{"callSid": "af-j", "sampleRate": Infinity}'], 1007, None, "json_bad_number"),
}


@pytest.mark.parametrize("name", list(AUDIOFORK_CASES))
async def test_audiofork_hostile_json_and_rates_are_a_protocol_close(daemon: Daemon, name: str) -> None:
    query, messages, code, opened, reason = AUDIOFORK_CASES[name]
    before = daemon.refusals.count("audiofork", reason)
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        assert await close_code_after(session, http_base(daemon) + "/audiofork" + query, messages) == code
        if opened is not None:
            assert await closed_reason(pub, opened) == "error"
    assert daemon.refusals.count("audiofork", reason) == before + 1


async def test_a_bug_while_handling_a_message_closes_1011_and_the_stream_as_error(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TwilioConnection._on_media
    calls = 0

    async def failing_media(self: TwilioConnection, message: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OverflowError("injected")
        await original(self, message)

    monkeypatch.setattr(TwilioConnection, "_on_media", failing_media)
    before = daemon.refusals.count("twilio", "internal_error")
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        messages: list[str | bytes] = [twilio_start("MZbug"), twilio_media("MZbug", '"1"'), twilio_media("MZbug", '"2"')]
        assert await close_code_after(session, http_base(daemon) + "/twilio", messages) == 1011
        assert await closed_reason(pub, "MZbug:inbound") == "error"
    assert daemon.refusals.count("twilio", "internal_error") == before + 1


@pytest.mark.parametrize("path, messages, never_opened", [
    ("/audiofork", [json.dumps({"callSid": "af-big", "k" * 20000: "v"})], "af-big"),
    ("/audiofork", [json.dumps({"callSid": "af-many", **{f"k{i}": "v" for i in range(40)}})], "af-many"),
    ("/twilio", [json.dumps({"event": "start", "streamSid": "MZbig", "start": {
        "streamSid": "MZbig", "callSid": "CA", "tracks": ["inbound"],
        "customParameters": {"p": "v" * 600}}}), twilio_media("MZbig", '"1"')], "MZbig:inbound"),
])
async def test_metadata_over_the_shared_limit_closes_1008(daemon: Daemon, path: str, messages: list[str | bytes],
                                                         never_opened: str) -> None:
    transport = path.strip("/")
    before = daemon.refusals.count(transport, "bad_metadata")
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        assert await close_code_after(session, http_base(daemon) + path, messages) == 1008
        await asyncio.sleep(0.1)
        assert not pub.of(never_opened, "opened")
    assert daemon.refusals.count(transport, "bad_metadata") == before + 1
