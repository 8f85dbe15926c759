"""ZeroMQ ingest survives hostile input and its own failures (issue 22, fix 1): every bad message
gets an error reply and a refusal count, and a receive loop that dies anyway is restarted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from daemon_harness import Client, running_daemon

from daemon.ingest.zmq import ZmqIngest
from daemon.wire.frames import AudioFormat
from daemon.wire.zmq_messages import (
    AudioBatchMessage,
    AudioMessage,
    ErrorReply,
    OpenedReply,
    OpenMessage,
    PingMessage,
    PongReply,
)

F16 = AudioFormat("pcm_f32le", 16000, 1)


@pytest.fixture
def context() -> Any:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


def _ingest(daemon: Any) -> ZmqIngest:
    return next(a for a in daemon.adapters if isinstance(a, ZmqIngest))


@pytest.mark.parametrize("frame", [
    b"[" * 1000 + b"]" * 1000,  # RecursionError in json.loads: used to end ZeroMQ ingest for good
    b"1" * 5000,  # ValueError (int digits limit), not a JSONDecodeError
    b'{"v":1,"type":"open","stream_id":"x","encoding":"mulaw","sample_rate_hz":1e400}',
])
async def test_hostile_json_gets_bad_json_and_ingest_keeps_answering(
        tiny_model: tuple[Path, Path], context: Any, frame: bytes) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        before = daemon.refusals.count("zmq", "bad_json")
        for _ in range(3):
            reply = await client.request([frame])
            assert isinstance(reply, ErrorReply) and reply.code == "bad_json", reply
        assert daemon.refusals.count("zmq", "bad_json") == before + 3
        assert isinstance(await client.request(PingMessage().to_frames()), PongReply)
        assert isinstance(await client.request(OpenMessage("after", F16).to_frames()), OpenedReply)
        assert _ingest(daemon).restarts == 0
        client.close()


async def test_oversized_metadata_key_is_refused(tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        client = Client(context, daemon.state.endpoints["ingest"])
        reply = await client.request(OpenMessage("big", F16, {"k" * 20000: "v"}).to_frames())
        assert isinstance(reply, ErrorReply) and reply.code == "bad_field" and "metadata key" in reply.message
        assert daemon.hub is not None and "big" not in daemon.hub.registry
        client.close()


async def test_a_failure_inside_one_message_is_internal_error_not_the_end(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        ingest = _ingest(daemon)
        client = Client(context, daemon.state.endpoints["ingest"])
        original = ingest._handle

        async def broken_open(identity: bytes, body: Any, user: str = "") -> None:
            if b'"open"' in body[0]:
                raise RuntimeError("injected adapter bug")
            await original(identity, body, user)

        monkeypatch.setattr(ingest, "_handle", broken_open)
        reply = await client.request(OpenMessage("boom", F16).to_frames())
        assert isinstance(reply, ErrorReply) and reply.code == "internal_error"
        assert isinstance(await client.request(PingMessage().to_frames()), PongReply)
        assert ingest.restarts == 0
        client.close()


async def test_a_dead_receive_loop_is_restarted_and_logged(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        ingest = _ingest(daemon)
        client = Client(context, daemon.state.endpoints["ingest"])
        assert isinstance(await client.request(PingMessage().to_frames()), PongReply)
        original = ingest._drain
        kills = 0

        async def dying_drain(drain: Any) -> int:
            nonlocal kills
            if kills < 2:  # kill the loop twice on purpose, outside any one message's handling
                kills += 1
                raise RuntimeError("injected receive loop failure")
            return await original(drain)

        monkeypatch.setattr(ingest, "_drain", dying_drain)
        reply = await client.request(PingMessage().to_frames(), timeout=5.0)
        assert isinstance(reply, PongReply)  # the message that hit the dead loop is still answered
        assert ingest.restarts == 2 and kills == 2
        assert isinstance(await client.request(OpenMessage("alive", F16).to_frames()), OpenedReply)
        client.close()


async def test_a_failure_on_one_batch_entry_is_internal_error_for_that_entry_only(
        tiny_model: tuple[Path, Path], context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        ingest = _ingest(daemon)
        client = Client(context, daemon.state.endpoints["ingest"])
        ulaw = AudioFormat("mulaw", 8000, 1)
        for stream_id in ("fine-1", "broken", "fine-2"):
            assert isinstance(await client.request(OpenMessage(stream_id, ulaw).to_frames()), OpenedReply)
        broken = ingest._streams["broken"].handle

        async def failing_push(chunk: Any) -> None:
            raise RuntimeError("injected push bug")

        monkeypatch.setattr(broken, "push", failing_push)
        before = daemon.refusals.count("zmq", "internal_error")
        entries = [AudioMessage(stream_id, 0, b"\xff" * 160) for stream_id in ("fine-1", "broken", "fine-2")]
        await client.send(AudioBatchMessage(entries).to_frames())
        reply = await client.reply()
        assert isinstance(reply, ErrorReply)
        assert (reply.code, reply.ref, reply.stream_id, reply.seq, reply.index) == (
            "internal_error", "audio_batch", "broken", 0, 1)
        assert isinstance(await client.request(PingMessage().to_frames()), PongReply)  # no other reply came
        assert daemon.refusals.count("zmq", "internal_error") == before + 1
        for stream_id in ("fine-1", "fine-2"):
            assert ingest._streams[stream_id].handle.buffer.counters.samples_in == 160  # type: ignore[attr-defined]
        assert ingest.restarts == 0
        client.close()
