"""The client library against the real daemon (subprocess, tiny ONNX model, loopback ZeroMQ)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from running_daemon import RunningDaemon, daemon_process, free_port

from clients.client import AsyncDetectorClient, AsyncStream, DaemonReplyError, DetectorClient

SETTLE_S = 0.2  # a ZeroMQ subscription needs a moment to reach the PUB socket


@pytest.fixture(scope="module")
def daemon(tiny_model: tuple[Path, Path]) -> Iterator[RunningDaemon]:
    with daemon_process(tiny_model[0]) as running:
        yield running


def speechlike(seconds: float, rate_hz: int) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


async def test_async_round_trip(daemon: RunningDaemon) -> None:
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        assert await client.ping() < 1.0
        results = client.subscribe(["rt-1"], timeout_s=10, until_closed=True)
        await asyncio.sleep(SETTLE_S)
        stream = await client.open_stream("rt-1", encoding="mulaw", sample_rate_hz=8000, metadata={"call_id": "42"})
        assert stream.info.model_id == "tiny-gru"
        assert stream.info.hop_ms == pytest.approx(100.0)
        audio = speechlike(1.5, 8000)
        assert await stream.send(audio[:5000]) == 31  # 20 ms = 160 samples; 40 samples wait for the next call
        assert await stream.send(audio[5000:]) == 44
        await stream.close()
        messages = [m async for m in results]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "opened" and kinds[-1] == "closed"
    hops = [m for m in messages if m["type"] == "result"]
    assert [m["seq"] for m in hops] == list(range(15))  # 1.5 s in 100 ms hops
    assert all(m["metadata"] == {"call_id": "42"} for m in hops)
    assert all(0.0 <= m["p_spoof"] <= 1.0 and m["latency_ms"] >= 0 for m in hops)
    summary = messages[-1]["summary"]
    assert messages[-1]["reason"] == "client"
    assert summary["hops"] == 15 and summary["audio_s"] == pytest.approx(1.5)
    assert summary["gaps_filled"] == 0 and summary["duplicates_dropped"] == 0


async def test_bytes_payloads_and_partial_tail(daemon: RunningDaemon) -> None:
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        results = client.subscribe(["rt-bytes"], timeout_s=10, until_closed=True)
        await asyncio.sleep(SETTLE_S)
        stream = await client.open_stream("rt-bytes", encoding="pcm_s16le", sample_rate_hz=16000)
        pcm = (speechlike(1.0, 16000) * 32767).astype("<i2").tobytes()
        for start in range(0, len(pcm), 1234):  # odd sizes, not even whole samples
            await stream.send(pcm[start : start + 1234])
        await stream.send(np.zeros(50, dtype=np.int16))  # int16 samples, a 3 ms tail
        await stream.close()
        assert stream.next_seq == 51  # 50 whole 20 ms frames + the padded tail
        summary = [m async for m in results][-1]["summary"]
    assert summary["hops"] == 10


async def test_daemon_errors_raise_typed_exceptions(daemon: RunningDaemon) -> None:
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as owner, \
            AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as intruder:
        stream = await owner.open_stream("owned", sample_rate_hz=8000)
        with pytest.raises(DaemonReplyError) as duplicate:
            await intruder.open_stream("owned", sample_rate_hz=8000)
        assert duplicate.value.code == "stream_exists" and duplicate.value.ref == "open"

        foreign = AsyncStream(intruder, stream.info, stream.format, frame_ms=20)
        await foreign.send(np.zeros(160, dtype=np.float32))  # rejected asynchronously...
        await asyncio.sleep(0.3)
        with pytest.raises(DaemonReplyError) as rejected:  # ...and raised on the stream's next call
            await foreign.send(np.zeros(160, dtype=np.float32))
        assert rejected.value.code == "stream_owned_by_other" and rejected.value.seq == 0

        with pytest.raises(DaemonReplyError) as unknown:
            await owner.close_stream("never-opened")
        assert unknown.value.code == "unknown_stream"
        await stream.close()


async def test_no_daemon_times_out_with_the_endpoint_in_the_message() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    async with AsyncDetectorClient(endpoint, timeout_s=0.3) as client:
        with pytest.raises(TimeoutError, match=endpoint):
            await client.ping()


async def test_close_without_linger_drops_queued_messages_at_once() -> None:
    """After losing the daemon, closing must not block the event loop on undeliverable audio."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = AsyncDetectorClient(endpoint, timeout_s=0.2)
    with pytest.raises(TimeoutError):
        await client.ping()  # the ping stays queued for a peer that never comes
    started = time.monotonic()
    await client.close(linger_ms=0)
    assert time.monotonic() - started < 0.5  # the default linger would hold it for 2 s


def test_sync_client_round_trip(daemon: RunningDaemon) -> None:
    with DetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        results = client.subscribe(["sync-1"], timeout_s=10, until_closed=True)
        stream = client.open_stream("sync-1", encoding="alaw", sample_rate_hz=8000)
        stream.send(speechlike(0.5, 8000))
        stream.close()
        messages = list(results)
    assert messages[-1]["type"] == "closed"
    assert messages[-1]["summary"]["hops"] == 5
    assert [m["seq"] for m in messages if m["type"] == "result"] == list(range(5))


async def test_gateway_send_batch_sends_many_streams_per_message(daemon: RunningDaemon) -> None:
    ids = [f"gw-{i}" for i in range(3)]
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        results = client.subscribe(ids, timeout_s=10, until_closed=True)
        await asyncio.sleep(SETTLE_S)
        streams = [await client.open_stream(i, encoding="mulaw", sample_rate_hz=8000) for i in ids]
        audio = speechlike(1.0, 8000)
        for k in range(50):  # 20 ms of every stream per call
            frame = audio[160 * k:160 * (k + 1)]
            assert await client.send_batch([(stream, frame) for stream in streams]) == []
        assert [s.next_seq for s in streams] == [50, 50, 50]
        with pytest.raises(ValueError, match="batch entry"):
            await client.send_batch([(streams[0], audio[:10])])  # 1.25 ms: under 10 ms
        for stream in streams:
            await stream.close()
        with pytest.raises(RuntimeError, match="closed"):
            streams[2].batch_entry(audio[:160])
        messages = [m async for m in results]
    for stream_id in ids:
        hops = [m["seq"] for m in messages if m["type"] == "result" and m["stream_id"] == stream_id]
        assert hops == list(range(10))
        (closed,) = [m for m in messages if m["type"] == "closed" and m["stream_id"] == stream_id]
        assert closed["summary"]["gaps_filled"] == 0


async def test_gateway_send_batch_returns_refused_entries(daemon: RunningDaemon) -> None:
    async with AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client, \
            AsyncDetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as other:
        mine = await client.open_stream("gw-err-mine", encoding="mulaw", sample_rate_hz=8000)
        theirs = await other.open_stream("gw-err-theirs", encoding="mulaw", sample_rate_hz=8000)
        frame = speechlike(0.02, 8000)
        # a stream object of another connection: the daemon refuses that entry only
        await client.send_batch([(mine, frame), (AsyncStream(client, theirs.info, theirs.format, 20), frame)])
        await client.ping()  # the error reply arrives before the pong
        errors = await client.send_batch([(mine, frame), (AsyncStream(client, theirs.info, theirs.format, 20), frame)])
        assert [(e.code, e.stream_id, e.ref) for e in errors] == [("stream_owned_by_other", "gw-err-theirs", "audio_batch")]
        await mine.close()
        await theirs.close()


def test_sync_gateway_send_batch(daemon: RunningDaemon) -> None:
    with DetectorClient(daemon.ingest_endpoint, daemon.results_endpoint) as client:
        streams = [client.open_stream(f"gw-sync-{i}", encoding="pcm_s16le", sample_rate_hz=16000) for i in range(2)]
        frame = (speechlike(0.02, 16000) * 32767).astype(np.int16)
        for _ in range(10):
            assert client.send_batch([(stream, frame) for stream in streams]) == []
        assert [s._stream.next_seq for s in streams] == [10, 10]
        for stream in streams:
            stream.close()
