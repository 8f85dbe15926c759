"""Asterisk AudioSocket ingest end to end: a client written from the protocol definition
(docs.asterisk.org, Channel-Drivers/AudioSocket) talks to the real daemon over loopback TCP;
results carry the call's UUID on the PUB socket. Malformed input closes only its connection."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from telephony_harness import (
    PubCollector,
    audiosocket_port,
    collecting,
    running_daemon,
    speechlike,
    to_int16_bytes,
)

from daemon.app import Daemon


def frame(kind: int, payload: bytes = b"") -> bytes:
    """Written from the spec, not from the adapter: type byte, big-endian uint16 length, payload."""
    return struct.pack(">BH", kind, len(payload)) + payload


class AsteriskLikeCall:
    """What Asterisk's AudioSocket() sends: the UUID, then 20 ms slin frames, DTMF, hangup."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call_id: uuid.UUID) -> None:
        self.reader, self.writer, self.call_id = reader, writer, call_id

    @classmethod
    async def dial(cls, port: int, call_id: uuid.UUID | None = None) -> AsteriskLikeCall:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, call_id or uuid.uuid4())

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_uuid(self) -> None:
        await self.send(frame(0x01, self.call_id.bytes))

    async def send_audio(self, seconds: float, rate_hz: int = 8000, kind: int = 0x10, pace_s: float = 0.0) -> None:
        pcm = to_int16_bytes(speechlike(seconds, rate_hz))
        step = 2 * rate_hz // 50  # 20 ms: 320 bytes at 8 kHz
        for start in range(0, len(pcm), step):
            await self.send(frame(kind, pcm[start:start + step]))
            if pace_s:
                await asyncio.sleep(pace_s)

    async def hangup(self) -> None:
        await self.send(frame(0x00))
        self.writer.close()

    async def closed_by_daemon(self, timeout: float = 5.0) -> bool:
        """True when the daemon closed the socket (EOF) within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read() == b""
        except (TimeoutError, ConnectionError):
            return False


@pytest.fixture
async def daemon(tiny_model: tuple[Path, Path]) -> AsyncIterator[Daemon]:
    async with running_daemon(tiny_model[0], twilio={"enabled": False}, audiofork={"enabled": False}) as app:
        yield app


async def test_slin_8k_call_results_carry_the_uuid(daemon: Daemon) -> None:
    async with collecting(daemon) as pub:
        call = await AsteriskLikeCall.dial(audiosocket_port(daemon))
        await call.send_uuid()
        await call.send_audio(1.0)
        await call.send(frame(0x03, b"5"))  # DTMF: ignored, counted
        await call.send_audio(1.0)
        await call.hangup()
        stream_id = str(call.call_id)
        closed = await pub.closed(stream_id)

    opened = pub.of(stream_id, "opened")[0]
    assert opened["transport"] == "audiosocket" and opened["sample_rate_hz"] == 8000
    results = pub.of(stream_id, "result")
    assert len(results) >= 15  # 2 s of audio, 100 ms hops of the tiny model (last partial hop unscored)
    assert [r["seq"] for r in results] == list(range(len(results)))
    assert all(r["metadata"]["call_id"] == stream_id for r in results)
    assert closed["reason"] == "client"
    assert closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)


async def test_higher_rate_message_type_opens_at_that_rate(daemon: Daemon) -> None:
    async with collecting(daemon) as pub:
        call = await AsteriskLikeCall.dial(audiosocket_port(daemon))
        await call.send_uuid()
        await call.send_audio(1.0, rate_hz=16000, kind=0x12)  # 0x12 = slin16 in the current spec
        await call.hangup()
        closed = await pub.closed(str(call.call_id))
    assert pub.of(str(call.call_id), "opened")[0]["sample_rate_hz"] == 16000
    assert closed["summary"]["audio_s"] == pytest.approx(1.0, abs=0.05)


def after_audio(tail: bytes) -> Callable[[uuid.UUID], bytes]:
    """A call that starts well (UUID, one 20 ms frame: its stream opens), then sends `tail`."""
    return lambda call_id: frame(0x01, call_id.bytes) + frame(0x10, bytes(320)) + tail


# name -> (bytes the bad peer sends, whether its stream had opened before the violation)
BAD_INPUTS: dict[str, tuple[Callable[[uuid.UUID], bytes], bool]] = {
    "audio before the UUID": (lambda _: frame(0x10, bytes(320)), False),
    "UUID of 15 bytes": (lambda _: frame(0x01, bytes(15)), False),
    "unknown type": (after_audio(frame(0x42, b"xx")), True),
    "odd audio length": (after_audio(frame(0x10, bytes(321))), True),
    "rate above 48 kHz (0x18 = 192 kHz)": (after_audio(frame(0x18, bytes(320))), True),
    "DTMF of 2 bytes": (after_audio(frame(0x03, b"12")), True),
    "truncated message": (after_audio(struct.pack(">BH", 0x10, 320) + bytes(100)), True),
}


async def test_malformed_input_closes_only_that_connection(daemon: Daemon) -> None:
    async with collecting(daemon) as pub:
        good = await AsteriskLikeCall.dial(audiosocket_port(daemon))
        await good.send_uuid()
        good_audio = asyncio.create_task(good.send_audio(2.0, pace_s=0.004))
        bad_ids = []
        for name, (payload, opened) in BAD_INPUTS.items():
            bad = await AsteriskLikeCall.dial(audiosocket_port(daemon))
            await bad.send(payload(bad.call_id))
            if name == "truncated message":
                bad.writer.write_eof()  # the peer goes away mid-frame
            assert await bad.closed_by_daemon(), f"{name}: the daemon kept the connection open"
            if opened:
                bad_ids.append(str(bad.call_id))
        await good_audio
        await good.hangup()
        closed = await pub.closed(str(good.call_id))
        for bad_id in bad_ids:
            await pub.closed(bad_id)

    # the good call was not affected: every hop scored, ended by its own hangup
    assert closed["reason"] == "client"
    assert closed["summary"]["audio_s"] == pytest.approx(2.0, abs=0.05)
    assert len(pub.of(str(good.call_id), "result")) >= 15
    # calls that had opened a stream before breaking the protocol end as errors
    assert {pub.of(b, "closed")[0]["reason"] for b in bad_ids} == {"error"}


async def test_shutdown_ends_open_calls(tiny_model: tuple[Path, Path]) -> None:
    async with running_daemon(tiny_model[0], twilio={"enabled": False}, audiofork={"enabled": False}) as daemon:
        pub = PubCollector(daemon.state.endpoints["pub"])
        await asyncio.sleep(0.3)
        call = await AsteriskLikeCall.dial(audiosocket_port(daemon))
        await call.send_uuid()
        await call.send_audio(0.5)
        await pub.until(lambda ms: any(m["type"] == "result" for m in ms))
        await daemon.shutdown()
        assert await call.closed_by_daemon()
        await pub.closed(str(call.call_id), timeout=2)
        await pub.close()
    assert pub.of(str(call.call_id), "closed")[0]["reason"] == "shutdown"
