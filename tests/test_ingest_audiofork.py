"""mod_audio_fork / jambonz `listen` ingest end to end: clients that send what the public docs
describe (one JSON text preamble, then binary 16-bit little-endian PCM frames; jambonz uses
the `audio.jambonz.org` subprotocol and puts callSid/sampleRate/mixType in the preamble,
mod_audio_fork sends the metadata given to `uuid_audio_fork ... start`), to the real daemon."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from telephony_harness import collecting, http_base, running_daemon, speechlike, to_int16_bytes

from daemon.app import Daemon


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path]) -> AsyncIterator[Daemon]:
    async with running_daemon(tiny_model[0], audiosocket={"enabled": False}, twilio={"enabled": False}) as app:
        yield app


async def send_frames(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, frame_bytes: int) -> None:
    for start in range(0, len(pcm), frame_bytes):
        await ws.send_bytes(pcm[start:start + frame_bytes])


async def test_jambonz_mono_16k(daemon: Daemon) -> None:
    url = http_base(daemon) + "/audiofork"
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=("audio.jambonz.org",)) as ws:
            assert ws.protocol == "audio.jambonz.org"
            await ws.send_str(json.dumps({
                "callSid": "jb-call-1", "direction": "inbound", "from": "+15551230000", "to": "+15559870000",
                "sampleRate": 16000, "mixType": "mono", "metadata": {"campaign": "renewals"}}))
            await send_frames(ws, to_int16_bytes(speechlike(2.0, 16000)), 640)  # 20 ms at 16 kHz
            await ws.send_str(json.dumps({"event": "dtmf", "dtmf": "5", "duration": 160}))  # ignored
        closed = await pub.closed("jb-call-1")

    opened = pub.of("jb-call-1", "opened")[0]
    assert opened["transport"] == "audiofork" and opened["sample_rate_hz"] == 16000
    results = pub.of("jb-call-1", "result")
    assert len(results) >= 15
    meta = results[0]["metadata"]
    assert meta["call_id"] == "jb-call-1" and meta["from"] == "+15551230000" and meta["meta.campaign"] == "renewals"
    assert closed["reason"] == "client" and closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)


async def test_mod_audio_fork_stereo_8k_is_two_streams(daemon: Daemon) -> None:
    # uuid_audio_fork <uuid> start ws://.../audiofork?sample_rate=8000&mix_type=stereo stereo 8k {"uuid": ...}
    url = http_base(daemon) + "/audiofork?sample_rate=8000&mix_type=stereo"
    caller, callee = speechlike(2.0, 8000, 140, seed=3), 0.3 * speechlike(2.0, 8000, 260, seed=4)
    interleaved = to_int16_bytes(np.stack([caller, callee], axis=1).reshape(-1))
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=("audio.drachtio.org",)) as ws:
            await ws.send_str(json.dumps({"uuid": "fs-7f3a", "caller_id_number": "1001"}))
            await send_frames(ws, interleaved, 640)  # 20 ms of 8 kHz stereo
        caller_closed = await pub.closed("fs-7f3a:caller")
        callee_closed = await pub.closed("fs-7f3a:callee")

    for track, closed in (("caller", caller_closed), ("callee", callee_closed)):
        results = pub.of(f"fs-7f3a:{track}", "result")
        assert len(results) >= 15
        assert results[0]["metadata"]["call_id"] == "fs-7f3a" and results[0]["metadata"]["track"] == track
        assert results[0]["metadata"]["caller_id_number"] == "1001"
        assert closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)
    assert [r["p_spoof"] for r in pub.of("fs-7f3a:caller", "result")] != \
        [r["p_spoof"] for r in pub.of("fs-7f3a:callee", "result")]


# name -> (URL query, messages); the daemon must close the connection after them
BAD_SESSIONS: dict[str, tuple[str, list[str | bytes]]] = {
    "audio before the preamble": ("", [bytes(320)]),
    "broken JSON preamble": ("", ['{"callSid": "x"']),
    "preamble not an object": ("", ["[1, 2]"]),
    "odd frame length": ("", [json.dumps({"callSid": "bad-odd"}), bytes(320), bytes(321)]),
    "stereo frame not whole": ("?mix_type=stereo", [json.dumps({"callSid": "bad-st"}), bytes(322)]),
    "bad sample rate": ("", [json.dumps({"callSid": "bad-rate", "sampleRate": "fast"})]),
    "rate out of range": ("", [json.dumps({"callSid": "bad-rate2", "sampleRate": 96000})]),
    "unknown mix type": ("", [json.dumps({"callSid": "bad-mix", "mixType": "surround"})]),
    "broken JSON later": ("", [json.dumps({"callSid": "bad-late"}), bytes(320), "{not json"]),
}


async def test_malformed_input_closes_only_that_websocket(daemon: Daemon) -> None:
    base = http_base(daemon) + "/audiofork"
    pcm = to_int16_bytes(speechlike(2.0, 8000))
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(base) as good:
            await good.send_str(json.dumps({"callSid": "good-1", "sampleRate": 8000}))
            await send_frames(good, pcm[:16000], 320)
            for name, (query, messages) in BAD_SESSIONS.items():
                async with session.ws_connect(base + query) as bad:
                    for message in messages:
                        await (bad.send_str(message) if isinstance(message, str) else bad.send_bytes(message))
                    reply = await asyncio.wait_for(bad.receive(), 5)
                    assert reply.type == aiohttp.WSMsgType.CLOSE, name
                    assert bad.close_code not in (None, 1000), name
            await send_frames(good, pcm[16000:], 320)
        closed = await pub.closed("good-1")
        for opened_before_violation in ("bad-odd", "bad-late", "bad-st:caller", "bad-st:callee"):
            await pub.closed(opened_before_violation)

    assert closed["reason"] == "client" and closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)
    assert pub.of("bad-odd", "closed")[0]["reason"] == "error"
    assert not pub.of("bad-rate", "opened") and not pub.of("bad-mix", "opened")
