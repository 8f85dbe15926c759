"""Twilio Media Streams ingest end to end: a client that sends what Twilio's <Connect><Stream>
sends (connected, start, media with base64 8 kHz µ-law per track, mark, stop; per Twilio's
"WebSocket Messages" reference) to the real daemon; results carry the callSid on the PUB
socket. Malformed messages close only their own WebSocket."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from telephony_harness import collecting, http_base, running_daemon, speechlike

from daemon.app import Daemon
from daemon.wire.g711 import encode_mulaw

CHUNK_BYTES = 160  # Twilio sends 20 ms of 8 kHz µ-law per media message


class TwilioLikeStream:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_sid: str, call_sid: str) -> None:
        self.ws, self.stream_sid, self.call_sid = ws, stream_sid, call_sid
        self.sequence = 0
        self.chunks = {"inbound": 0, "outbound": 0}

    async def send(self, event: str, **body: Any) -> None:
        self.sequence += 1
        await self.ws.send_str(json.dumps({"event": event, "sequenceNumber": str(self.sequence),
                                           "streamSid": self.stream_sid, **body}))

    async def start(self, tracks: list[str], params: dict[str, str]) -> None:
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send("start", start={
            "streamSid": self.stream_sid, "accountSid": "AC0123", "callSid": self.call_sid, "tracks": tracks,
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})

    async def media(self, track: str, samples: np.ndarray, skip_chunks: tuple[int, ...] = ()) -> None:
        payload = encode_mulaw(samples)
        for start in range(0, len(payload), CHUNK_BYTES):
            self.chunks[track] += 1
            if self.chunks[track] in skip_chunks:
                continue  # lost on the way
            await self.send("media", media={
                "track": track, "chunk": str(self.chunks[track]), "timestamp": str(20 * self.chunks[track]),
                "payload": base64.b64encode(payload[start:start + CHUNK_BYTES]).decode()})

    async def stop(self) -> None:
        await self.send("mark", mark={"name": "end-of-prompt"})
        await self.send("stop", stop={"accountSid": "AC0123", "callSid": self.call_sid})


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path]) -> AsyncIterator[Daemon]:
    async with running_daemon(tiny_model[0], audiosocket={"enabled": False}) as app:
        yield app


async def test_inbound_and_outbound_tracks_are_two_streams_of_one_call(daemon: Daemon) -> None:
    url = http_base(daemon) + "/twilio"
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            call = TwilioLikeStream(ws, "MZ0001", "CA0001")
            await call.start(["inbound", "outbound"], {"agent": "a1", "queue": "sales"})
            caller, agent = speechlike(2.0, 8000, 150, seed=1), speechlike(2.0, 8000, 220, seed=2)
            for part in range(4):  # interleaved per 0.5 s, like a live call
                window = slice(part * 4000, (part + 1) * 4000)
                await call.media("inbound", caller[window], skip_chunks=(30,) if part == 1 else ())
                await call.media("outbound", agent[window])
            await call.stop()
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1000
        inbound = await pub.closed("MZ0001:inbound")
        outbound = await pub.closed("MZ0001:outbound")

    for track, closed in (("inbound", inbound), ("outbound", outbound)):
        stream_id = f"MZ0001:{track}"
        opened = pub.of(stream_id, "opened")[0]
        assert opened["transport"] == "twilio" and opened["sample_rate_hz"] == 8000
        results = pub.of(stream_id, "result")
        assert len(results) >= 15
        assert all(r["metadata"]["call_id"] == "CA0001" and r["metadata"]["track"] == track
                   and r["metadata"]["stream_sid"] == "MZ0001" and r["metadata"]["param.agent"] == "a1"
                   for r in results)
        assert closed["reason"] == "client"
        assert closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)
    # the lost inbound chunk was filled with 20 ms of silence and counted
    assert inbound["summary"]["gaps_filled"] == 1 and inbound["summary"]["samples_filled"] == 160
    assert outbound["summary"]["gaps_filled"] == 0
    # the two tracks carry different audio, so they are scored as different streams
    assert [r["p_spoof"] for r in pub.of("MZ0001:inbound", "result")] != \
        [r["p_spoof"] for r in pub.of("MZ0001:outbound", "result")]


def start_message(stream_sid: str) -> str:
    return json.dumps({"event": "start", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "callSid": "CA-bad", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def media_message(stream_sid: str, payload: str, track: str = "inbound") -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"track": track, "chunk": "1", "timestamp": "0", "payload": payload}})


GOOD_PAYLOAD = base64.b64encode(bytes(160)).decode()
# name -> messages a broken peer sends (str = text, bytes = binary), after which the daemon must close
BAD_SESSIONS: dict[str, list[str | bytes]] = {
    "broken JSON": ['{"event": "start", "start": {'],
    "media before start": [media_message("MZbad1", GOOD_PAYLOAD)],
    "wrong base64": [start_message("MZbad2"), media_message("MZbad2", GOOD_PAYLOAD),
                     media_message("MZbad2", "not*base64!")],
    "unknown event": [start_message("MZbad3"), '{"event": "teleport"}'],
    "binary frame": [start_message("MZbad4"), b"\x00\x01\x02"],
    "track not started": [start_message("MZbad5"), media_message("MZbad5", GOOD_PAYLOAD, track="outbound")],
    "unsupported encoding": [json.dumps({"event": "start", "streamSid": "MZbad6", "start": {
        "streamSid": "MZbad6", "callSid": "CA", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-opus", "sampleRate": 48000, "channels": 1}}})],
}


async def test_malformed_messages_close_only_that_websocket(daemon: Daemon) -> None:
    url = http_base(daemon) + "/twilio"
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as good_ws:
            good = TwilioLikeStream(good_ws, "MZgood", "CAgood")
            await good.start(["inbound"], {})
            audio = speechlike(2.0, 8000)
            await good.media("inbound", audio[:8000])
            for name, messages in BAD_SESSIONS.items():
                async with session.ws_connect(url) as bad:
                    for message in messages:
                        await (bad.send_str(message) if isinstance(message, str) else bad.send_bytes(message))
                    reply = await asyncio.wait_for(bad.receive(), 5)
                    assert reply.type == aiohttp.WSMsgType.CLOSE, name
                    assert bad.close_code not in (None, 1000), name
            await good.media("inbound", audio[8000:])
            await good.stop()
        closed = await pub.closed("MZgood:inbound")
        await pub.closed("MZbad2:inbound")  # its stream opened at its first (good) media message

    assert closed["reason"] == "client"
    assert closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)
    assert pub.of("MZbad2:inbound", "closed")[0]["reason"] == "error"
    assert not pub.of("MZbad1:inbound", "opened")  # media before start never opened a stream


async def test_telnyx_spelling_and_alaw(daemon: Daemon) -> None:
    """Telnyx sends the same events with snake_case fields and PCMU/PCMA encodings."""
    url = http_base(daemon) + "/twilio"
    async with collecting(daemon) as pub, aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"event": "connected", "version": "1.0.0"}))
            await ws.send_str(json.dumps({"event": "start", "sequence_number": "1", "stream_id": "tx-1", "start": {
                "call_control_id": "v3:cc-1", "media_format": {"encoding": "PCMA", "sample_rate": 8000,
                                                               "channels": 1}}}))
            from daemon.wire.g711 import encode_alaw
            payload = encode_alaw(speechlike(1.0, 8000))
            for i in range(0, len(payload), CHUNK_BYTES):
                await ws.send_str(json.dumps({"event": "media", "stream_id": "tx-1", "media": {
                    "track": "inbound", "chunk": str(i // CHUNK_BYTES + 1), "timestamp": "0",
                    "payload": base64.b64encode(payload[i:i + CHUNK_BYTES]).decode()}}))
            await ws.send_str(json.dumps({"event": "stop", "stream_id": "tx-1"}))
        closed = await pub.closed("tx-1:inbound")
    assert closed["reason"] == "client" and closed["summary"]["audio_s"] == pytest.approx(1.0, abs=0.05)
    assert pub.of("tx-1:inbound", "result")[0]["metadata"]["call_id"] == "v3:cc-1"


async def test_connection_limit_and_plain_http(tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], audiosocket={"enabled": False}, audiofork={"enabled": False},
                              twilio={"max_connections": 1}) as daemon:
        url = http_base(daemon) + "/twilio"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as plain:
                assert plain.status == 426  # not a WebSocket upgrade
            async with session.ws_connect(url) as first:
                before = daemon.refusals.count("twilio", "too_many_connections")
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url)
                assert refused.value.status == 503
                assert daemon.refusals.count("twilio", "too_many_connections") == before + 1
                await first.send_str(json.dumps({"event": "connected"}))
            # the slot is free again once the first connection is gone
            for _ in range(50):
                try:
                    async with session.ws_connect(url):
                        break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("the connection slot was never released")
