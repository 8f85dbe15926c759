"""The daemon end to end over real loopback ZeroMQ sockets with a tiny real ONNX model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, Subscriber, is_event, running_daemon, wait_subscribed

from daemon.config import DecisionConfig
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import decode_payload, encode_samples
from daemon.wire.zmq_messages import (
    AudioBatchMessage,
    AudioMessage,
    ClosedReply,
    CloseMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    PingMessage,
    PongReply,
)
from streaming_models.runtime.default_model import packaged_model_path
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.onnx_backend import OnnxBackend

HOP = 1600  # tiny model: 100 ms at 16 kHz
F16 = AudioFormat("pcm_f32le", 16000, 1)


def _speechlike(frames: int, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    mono = envelope * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(frames))
    x = mono.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _chunks(fmt: AudioFormat, samples: np.ndarray, frames_per_chunk: int) -> list[bytes]:
    return [encode_samples(samples[i:i + frames_per_chunk], fmt) for i in range(0, len(samples), frames_per_chunk)]


@pytest.fixture
def context() -> Any:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


async def _pong(client: Client) -> None:
    """Every earlier message of this client has been handled once the pong is back."""
    assert isinstance(await client.request(PingMessage().to_frames()), PongReply)


async def test_two_formats_at_once_results_in_order_one_per_hop(tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        sub = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, sub, F16)
        ulaw = AudioFormat("mulaw", 8000, 1)
        stereo = AudioFormat("pcm_f32le", 48000, 2)
        ulaw_chunks = _chunks(ulaw, _speechlike(103 * 160, 8000), 160)  # 20 ms chunks
        stereo_chunks = _chunks(stereo, _speechlike(15 * 4800, 48000, channels=2, seed=1), 4800)  # 100 ms
        opened = await client.request(OpenMessage("ulaw-8k", ulaw, {"call_id": "c1"}).to_frames())
        assert opened == OpenedReply("ulaw-8k", "tiny-gru", 100.0)
        assert isinstance(await client.request(OpenMessage("f32-48k", stereo).to_frames()), OpenedReply)
        for seq in range(len(ulaw_chunks)):
            await client.send(AudioMessage("ulaw-8k", seq, ulaw_chunks[seq]).to_frames())
            if seq % 7 == 0 and seq // 7 < len(stereo_chunks):
                await client.send(AudioMessage("f32-48k", seq // 7, stereo_chunks[seq // 7]).to_frames())
        await _pong(client)  # no error reply came before the pong
        for stream_id in ("ulaw-8k", "f32-48k"):
            assert await client.request(CloseMessage(stream_id).to_frames()) == ClosedReply(stream_id)
        for stream_id in ("ulaw-8k", "f32-48k"):
            await sub.until(is_event(stream_id, "closed"))

        expected = {"ulaw-8k": (103 * 160 * 2) // HOP, "f32-48k": round(15 * 4800 / 3) // HOP}
        assert expected == {"ulaw-8k": 20, "f32-48k": 15}
        for stream_id, hops in expected.items():
            results = sub.of(stream_id, "result")
            assert [r["seq"] for r in results] == list(range(hops))
            assert [r["t_start_s"] for r in results] == pytest.approx([0.1 * i for i in range(hops)])
            assert all(r["latency_ms"] >= 0 and r["model_id"] == "tiny-gru" for r in results)
            assert all(r["decision"] in ("bonafide", "spoof", "codec", "undecided") for r in results)
            assert all(0 < r["p_spoof"] < 1 and 0 < r["p_codec"] < 1 for r in results)
            (closed,) = sub.of(stream_id, "closed")
            assert closed["reason"] == "client"
            assert closed["summary"]["hops"] == hops
            assert closed["summary"]["results_dropped"] == 0
            assert sub.of(stream_id, "opened")[0]["transport"] == "zmq"
        assert sub.of("ulaw-8k", "result")[0]["metadata"] == {"call_id": "c1"}
        assert sub.of("ulaw-8k", "closed")[0]["summary"]["audio_s"] == pytest.approx(103 * 160 / 8000)

        # live scores equal an offline run through StreamBuffer + OnnxBackend (same code path)
        backend = OnnxBackend(tiny_model[0], providers=["CPUExecutionProvider"])
        buffer = StreamBuffer(8000, 16000, HOP, max_buffered_s=60)
        for chunk in ulaw_chunks:
            buffer.push(decode_payload(chunk, ulaw))
        buffer.flush()
        states = backend.initial_states(1)
        offline = []
        for hop in buffer.pop_hops():
            probs, states = backend.run(hop[None], states)
            offline.append(probs[0])
        live = [(r["p_spoof"], r["p_codec"]) for r in sub.of("ulaw-8k", "result")]
        np.testing.assert_allclose(np.array(live), np.array(offline), atol=1e-5)
        client.close()
        sub.close()


def _header(**fields: Any) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


async def test_every_malformed_message_gets_its_error_and_others_are_unaffected(
        tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0], streams={"max_streams": 4}) as daemon:
        good = Client(context, daemon.state.endpoints["ingest"])
        bad = Client(context, daemon.state.endpoints["ingest"])
        sub = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(good, sub, F16)
        audio = _chunks(F16, _speechlike(16000, 16000), 1600)  # 10 hops
        assert isinstance(await good.request(OpenMessage("good", F16).to_frames()), OpenedReply)
        assert isinstance(await bad.request(OpenMessage("bad-own", AudioFormat("pcm_s16le", 16000)).to_frames()),
                          OpenedReply)
        s16 = b"\x00\x00"
        cases: list[tuple[list[bytes], str]] = [
            ([b"{nope"], "bad_json"),
            ([b"[1]"], "bad_json"),
            ([_header(type="ping")[:-1] + b',"v":2}'], "bad_version"),
            ([json.dumps({"type": "ping"}).encode()], "missing_field"),
            ([_header(type="teleport")], "unknown_type"),
            ([_header(type="open", encoding="mulaw", sample_rate_hz=8000)], "missing_field"),
            ([_header(type="open", stream_id="x", encoding="opus", sample_rate_hz=8000)], "bad_field"),
            ([_header(type="open", stream_id="x", encoding="mulaw", sample_rate_hz=96000)], "bad_field"),
            ([_header(type="open", stream_id="x", encoding="mulaw", sample_rate_hz=8000, channels=6)], "bad_field"),
            ([_header(type="audio", stream_id="nobody", seq=0), s16 * 160], "unknown_stream"),
            ([_header(type="close", stream_id="nobody")], "unknown_stream"),
            (OpenMessage("good", F16).to_frames(), "stream_exists"),
            (AudioMessage("good", 99, audio[0]).to_frames(), "stream_owned_by_other"),
            (CloseMessage("good").to_frames(), "stream_owned_by_other"),
            ([_header(type="audio", stream_id="bad-own", seq=0), s16 * 160 + b"\x00"], "bad_payload"),
            ([_header(type="audio", stream_id="bad-own", seq=0), s16 * 100], "bad_payload"),  # 6 ms
            ([_header(type="audio", stream_id="bad-own", seq=0), s16 * 16001], "bad_payload"),  # > 1 s
            ([_header(type="audio", stream_id="bad-own", seq=0)], "bad_payload"),
            ([_header(type="audio", stream_id="bad-own", seq="zero"), s16 * 160], "bad_field"),
            ([_header(type="audio", stream_id="bad-own"), s16 * 160], "missing_field"),
        ]
        for i, (frames, code) in enumerate(cases):
            if i < len(audio):
                await good.send(AudioMessage("good", i, audio[i]).to_frames())
            reply = await bad.request(frames)
            assert isinstance(reply, ErrorReply), (frames, reply)
            assert reply.code == code, (frames, reply)
            assert reply.message
        for stream_id in ("fill-1", "fill-2"):
            assert isinstance(await bad.request(OpenMessage(stream_id, F16).to_frames()), OpenedReply)
        too_many = await bad.request(OpenMessage("fifth", F16).to_frames())
        assert isinstance(too_many, ErrorReply) and too_many.code == "too_many_streams"
        assert daemon.hub is not None
        daemon.hub.stop_accepting()
        assert (await bad.request(CloseMessage("fill-1").to_frames())) == ClosedReply("fill-1")
        late = await bad.request(OpenMessage("late", F16).to_frames())
        assert isinstance(late, ErrorReply) and late.code == "server_shutting_down"

        await _pong(good)  # the good client got no error at all
        assert await good.request(CloseMessage("good").to_frames()) == ClosedReply("good")
        await sub.until(lambda m: m["stream_id"] == "good" and m["type"] == "closed")
        assert [r["seq"] for r in sub.of("good", "result")] == list(range(10))
        assert sub.of("good", "closed")[0]["summary"]["gaps_filled"] == 0
        good.close()
        bad.close()
        sub.close()


async def test_gaps_are_filled_and_duplicates_dropped(tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        sub = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, sub, F16)
        fmt = AudioFormat("pcm_s16le", 16000)
        chunks = _chunks(fmt, _speechlike(20 * 800, 16000), 800)  # 50 ms each
        await client.request(OpenMessage("lossy", fmt).to_frames())
        for seq in (0, 1, 2, 5, 5, 3, 6, 7, 8, 9, 10, 10, 14, 15):  # gaps 3-4 and 11-13
            await client.send(AudioMessage("lossy", seq, chunks[seq]).to_frames())
        await _pong(client)
        await client.request(CloseMessage("lossy").to_frames())
        closed = await sub.until(lambda m: m["stream_id"] == "lossy" and m["type"] == "closed")
        summary = closed["summary"]
        assert summary["gaps_filled"] == 2
        assert summary["samples_filled"] == (2 + 3) * 800
        assert summary["duplicates_dropped"] == 3  # 5 again, 3 (late), 10 again
        total = (16 - 0) * 800  # seq 0..15 covered by audio or silence
        assert summary["hops"] == total // HOP == len(sub.of("lossy", "result"))
        client.close()
        sub.close()


async def test_vanished_client_is_closed_after_idle_timeout_with_summary(
        tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0], streams={"idle_timeout_s": 0.4}) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        sub = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, sub, F16)
        await client.request(OpenMessage("ghost", F16, {"call_id": "g"}).to_frames())
        for seq, chunk in enumerate(_chunks(F16, _speechlike(8000, 16000), 1600)):
            await client.send(AudioMessage("ghost", seq, chunk).to_frames())
        await _pong(client)
        client.close()  # the client disappears without `close`
        loop = asyncio.get_running_loop()
        started = loop.time()
        closed = await sub.until(lambda m: m["stream_id"] == "ghost" and m["type"] == "closed", timeout=5)
        assert loop.time() - started >= 0.2
        assert closed["reason"] == "idle"
        assert closed["summary"]["hops"] == 5
        assert [r["seq"] for r in sub.of("ghost", "result")] == list(range(5))
        assert daemon.hub is not None and "ghost" not in daemon.hub.registry
        other = Client(context, daemon.state.endpoints["ingest"])
        reply = await other.request(AudioMessage("ghost", 5, _chunks(F16, _speechlike(1600, 16000), 1600)[0]).to_frames())
        assert isinstance(reply, ErrorReply) and reply.code == "unknown_stream"
        other.close()
        sub.close()


async def test_slow_subscriber_never_blocks_ingest_and_drops_are_counted(
        tiny_model: tuple[Path, Path], context: Any) -> None:
    # pub_count_drops = true: the daemon counts drops, at the cost of shared fate per topic
    # (tests/test_publisher_isolation.py covers the default, where a stuck subscriber costs others nothing)
    async with running_daemon(tiny_model[0], zmq={"pub_hwm": 2, "pub_sndbuf_bytes": 16384, "pub_count_drops": True},
                              streams={"max_buffered_s": 60}) as daemon:
        assert daemon.hub is not None and daemon.publisher is not None
        client = Client(context, daemon.state.endpoints["ingest"])
        calm_sub = Subscriber(context, daemon.state.endpoints["pub"], topic=b"calm")
        await wait_subscribed(client, calm_sub, F16, prefix="calm")
        stuck = context.socket(zmq.SUB)  # subscribes to the flood and never reads
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.LINGER, 0)
        stuck.subscribe(b"flood")
        stuck.connect(daemon.state.endpoints["pub"])
        await asyncio.sleep(0.2)
        big_metadata = {f"k{i}": "x" * 500 for i in range(8)}  # ~4 kB per result message (the metadata limit)
        await client.request(OpenMessage("flood", F16, big_metadata).to_frames())
        await client.request(OpenMessage("calm", F16).to_frames())
        flood_stream = daemon.hub.registry.get("flood")
        assert flood_stream is not None
        flood_events = flood_stream.events()
        flood_audio = _chunks(F16, _speechlike(20 * 16000, 16000), 16000)  # 20 s in 1 s messages
        calm_audio = _chunks(F16, _speechlike(2 * 16000, 16000, seed=3), 1600)
        for seq, chunk in enumerate(flood_audio):
            await client.send(AudioMessage("flood", seq, chunk).to_frames())
            if seq < len(calm_audio):
                await client.send(AudioMessage("calm", seq, calm_audio[seq]).to_frames())
        started = asyncio.get_running_loop().time()
        await _pong(client)
        assert asyncio.get_running_loop().time() - started < 2.0  # ingest still answers promptly
        await client.request(CloseMessage("flood").to_frames(), timeout=20)
        await client.request(CloseMessage("calm").to_frames())
        await calm_sub.until(lambda m: m["stream_id"] == "calm" and m["type"] == "closed")
        assert [r["seq"] for r in calm_sub.of("calm", "result")] == list(range(20))  # nothing lost here
        flood_messages = [m async for m in flood_events]
        summary = flood_messages[-1]["summary"]
        assert summary["hops"] == 200  # every hop was scored: ingest was never held up
        assert summary["samples_dropped_overflow"] == 0
        assert summary["results_dropped"] > 0
        assert daemon.publisher.dropped >= summary["results_dropped"]
        assert len([m for m in flood_messages if m["type"] == "result"]) == 200
        stuck.close()
        client.close()
        calm_sub.close()



async def test_decisions_use_the_models_operating_thresholds_unless_configured() -> None:
    shipped = packaged_model_path()  # carries its thresholds
    model_threshold = float(OnnxBackend(shipped, providers=["CPUExecutionProvider"]).metadata.operating_thresholds["spoof"])
    assert model_threshold != DecisionConfig().spoof_enter
    async with running_daemon(shipped) as daemon:
        assert daemon.hub is not None
        used = daemon.hub.decision_config
        assert used.spoof_enter == pytest.approx(model_threshold)
        assert used.spoof_exit == pytest.approx(model_threshold - 0.3)  # the default gap, 0.7 - 0.4
    async with running_daemon(shipped, decision={"thresholds": "config", "spoof_enter": 0.8}) as daemon:
        assert daemon.hub is not None
        assert daemon.hub.decision_config.spoof_enter == 0.8


async def test_audio_batch_scores_like_single_messages_and_refuses_bad_entries_alone(
        tiny_model: tuple[Path, Path], context: Any) -> None:
    """Two streams fed by audio_batch messages and two twins fed the same audio one message per
    frame get the same results; an entry for an unknown stream, another connection's stream, a
    bad payload or a bad seq gets its own error (with its index) and the other entries go on."""
    ulaw = AudioFormat("mulaw", 8000, 1)
    async with running_daemon(tiny_model[0]) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        other = Client(context, daemon.state.endpoints["ingest"])
        sub = Subscriber(context, daemon.state.endpoints["pub"])
        await wait_subscribed(client, sub, F16)
        audio = {name: _chunks(ulaw, _speechlike(50 * 160, 8000, seed=seed), 160)
                 for seed, name in enumerate(("a", "b"))}
        for stream_id in ("batch-a", "batch-b", "single-a", "single-b"):
            assert isinstance(await client.request(OpenMessage(stream_id, ulaw).to_frames()), OpenedReply)
        assert isinstance(await other.request(OpenMessage("foreign", ulaw).to_frames()), OpenedReply)
        for seq in range(50):
            await client.send(AudioMessage("single-a", seq, audio["a"][seq]).to_frames())
            await client.send(AudioMessage("single-b", seq, audio["b"][seq]).to_frames())
            await client.send(AudioBatchMessage([AudioMessage("batch-a", seq, audio["a"][seq]),
                                                 AudioMessage("batch-b", seq, audio["b"][seq])]).to_frames())
        await _pong(client)  # no error reply came before the pong
        bad = AudioBatchMessage([AudioMessage("batch-a", 50, audio["a"][0]), AudioMessage("nobody", 0, audio["a"][0]),
                                 AudioMessage("foreign", 0, audio["a"][0]), AudioMessage("batch-b", 50, b"\x00" * 7),
                                 AudioMessage("batch-b", 51, audio["b"][0])]).to_frames()
        bad[0] = bad[0].replace(b'"seqs":[50,0,0,50,51]', b'"seqs":[50,0,0,50,-1]')
        await client.send(bad)
        replies = [await client.reply() for _ in range(4)]
        assert all(isinstance(r, ErrorReply) and r.ref == "audio_batch" for r in replies)
        assert [(r.index, r.code, r.stream_id) for r in replies if isinstance(r, ErrorReply)] == [
            (1, "unknown_stream", "nobody"), (2, "stream_owned_by_other", "foreign"), (3, "bad_payload", "batch-b"),
            (4, "bad_field", "batch-b")]
        for stream_id in ("batch-a", "batch-b", "single-a", "single-b"):
            assert await client.request(CloseMessage(stream_id).to_frames()) == ClosedReply(stream_id)
            await sub.until(is_event(stream_id, "closed"))
        for name in ("a", "b"):
            single, batched = sub.of(f"single-{name}", "result"), sub.of(f"batch-{name}", "result")
            assert [r["seq"] for r in batched] == list(range(10))
            assert [(r["p_spoof"], r["p_codec"]) for r in batched] == [(r["p_spoof"], r["p_codec"]) for r in single]
        assert sub.of("batch-a", "closed")[0]["summary"]["audio_s"] == pytest.approx(51 * 160 / 8000)
        client.close()
        other.close()
        sub.close()
