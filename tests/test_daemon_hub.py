"""The hub (StreamHub/StreamHandle implementation) with an in-memory backend and a real PUB socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import zmq

from daemon.batcher import Batcher
from daemon.config import DecisionConfig, StreamsConfig
from daemon.hub import DaemonHub
from daemon.publisher import ResultPublisher
from daemon.stream_api import AudioChunk, StreamClosedError, StreamRejected, StreamSpec
from streaming_models.runtime.model_format import ModelMetadata, StateSpec

HOP = 160


class SlowBackend:
    """Scores every hop 0.25/0.5 after `delay_s` (a stand-in for a busy model)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.metadata = ModelMetadata("fake", 16000, HOP, (StateSpec("s_in", "s_out", (1,)),))
        self.delay_s = delay_s

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, 1), dtype=np.float32)]

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        time.sleep(self.delay_s)
        probs = np.tile(np.array([[0.25, 0.5]], dtype=np.float32), (len(audio), 1))
        return probs, [states[0] + 1]


class LoudAudioFailsBackend(SlowBackend):
    """Fails every model call that holds a hop starting above 0.5 (the batcher then retries hops alone)."""

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if (audio[:, 0] > 0.5).any():
            raise RuntimeError("injected model failure")
        return super().run(audio, states)


@pytest.fixture
async def make_hub() -> AsyncIterator[Any]:
    context = zmq.Context()
    cleanup: list[Any] = []

    def make(delay_s: float = 0.0, backend: SlowBackend | None = None, **streams: Any) -> DaemonHub:
        backend = backend if backend is not None else SlowBackend(delay_s)
        batcher = Batcher(backend, max_batch=8, max_wait_ms=1)
        publisher = ResultPublisher(context, "tcp://127.0.0.1:*", hwm=100)
        hub = DaemonHub(backend.metadata, batcher, publisher, StreamsConfig(**streams), DecisionConfig())
        cleanup.append((asyncio.create_task(batcher.run_batches()), publisher))
        return hub

    yield make
    for task, publisher in cleanup:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        publisher.close()
    context.destroy(linger=0)


def _chunk(samples: int, seq: int | None = None, level: float = 0.1) -> AudioChunk:
    return AudioChunk(np.full(samples, level, dtype=np.float32), seq)


async def test_events_yield_results_then_closed_and_end(make_hub: Any) -> None:
    hub = make_hub()
    stream = await hub.open(StreamSpec("s", 16000, "test", {"call_id": "c"}))
    events = stream.events()
    await stream.push(_chunk(HOP * 3))
    await stream.close("client")
    messages = [m async for m in events]
    # a feed taken after open() still starts with the opened event (the WHIP data channel relies on it)
    assert [m["type"] for m in messages] == ["opened"] + ["result"] * 3 + ["closed"]
    assert messages[1]["metadata"] == {"call_id": "c"}
    assert messages[-1]["summary"]["hops"] == 3
    assert messages[-1]["summary"]["p_spoof_mean"] == pytest.approx(0.25)
    late = [m async for m in stream.events()]  # subscribing after the end still ends
    assert [m["type"] for m in late] == ["opened", "closed"]
    with pytest.raises(StreamClosedError):
        await stream.push(_chunk(HOP))
    await stream.close("client")  # idempotent


async def test_a_consumer_that_never_reads_loses_messages_not_the_end(make_hub: Any) -> None:
    hub = make_hub(events_queue_size=2)
    stream = await hub.open(StreamSpec("s", 16000, "test"))
    events = stream.events()
    await stream.push(_chunk(HOP * 10))
    await stream.close("client")
    messages = [m async for m in events]
    assert messages[-1]["type"] == "closed"
    assert len(messages) == 2
    assert stream.events_dropped == 10  # 9 results, then the opened event made room for closed


async def test_scoring_behind_drops_the_oldest_hops_and_counts_them(make_hub: Any) -> None:
    hub = make_hub(delay_s=0.05, max_buffered_s=0.1)  # cap: 1600 samples = 10 hops
    stream = await hub.open(StreamSpec("s", 16000, "test"))
    events = stream.events()
    for seq in range(10):
        await stream.push(_chunk(HOP * 10, seq))  # 1 s of audio at once; the model needs 0.5 s per 10 hops
    await stream.close("client")
    messages = [m async for m in events]
    summary = messages[-1]["summary"]
    seqs = [m["seq"] for m in messages if m["type"] == "result"]
    assert summary["samples_dropped_overflow"] > 0
    assert summary["hops"] == len(seqs) < 100
    assert summary["samples_dropped_overflow"] == (100 - len(seqs)) * HOP
    assert seqs == sorted(seqs) and seqs[-1] == 99  # the newest audio survives


async def test_admission(make_hub: Any) -> None:
    hub = make_hub(max_streams=1)
    await hub.open(StreamSpec("a", 8000, "test"))
    for spec, code in ((StreamSpec("a", 8000, "test"), "stream_exists"),
                       (StreamSpec("b", 8000, "test"), "too_many_streams"),
                       (StreamSpec("c", 4000, "test"), "bad_field")):
        with pytest.raises(StreamRejected) as info:
            await hub.open(spec)
        assert info.value.code == code
    hub.stop_accepting()
    with pytest.raises(StreamRejected) as info:
        await hub.open(StreamSpec("d", 8000, "test"))
    assert info.value.code == "server_shutting_down"
    await hub.close_all("shutdown")
    assert len(hub.registry) == 0


@pytest.mark.parametrize("metadata", [
    {"k" * 20000: "v"},  # used to be accepted and echoed in every result (issue 22, fix 6)
    {"k": "v" * 513},
    {f"k{i}": "v" for i in range(33)},
    {f"k{i}": "v" * 500 for i in range(9)},
])
async def test_metadata_over_the_shared_limit_is_refused_by_the_hub(make_hub: Any, metadata: dict[str, str]) -> None:
    hub = make_hub()
    with pytest.raises(StreamRejected) as info:
        await hub.open(StreamSpec("meta", 16000, "test", metadata))
    assert info.value.code == "bad_field" and "metadata" in info.value.message
    assert "meta" not in hub.registry


async def test_a_scoring_failure_ends_only_that_stream_with_an_error_event(make_hub: Any) -> None:
    hub = make_hub(backend=LoudAudioFailsBackend())
    bad = await hub.open(StreamSpec("bad", 16000, "test"))
    good = await hub.open(StreamSpec("good", 16000, "test"))
    bad_events, good_events = bad.events(), good.events()
    await good.push(_chunk(HOP * 2))
    await bad.push(_chunk(HOP * 3, level=0.9))
    messages = [m async for m in bad_events]
    assert [m["type"] for m in messages] == ["opened", "error", "closed"]
    assert messages[1]["code"] == "inference_failed" and "injected model failure" in messages[1]["message"]
    assert messages[-1]["reason"] == "error" and messages[-1]["summary"]["hops"] == 0
    assert bad.closed and "bad" not in hub.registry
    assert hub.metrics.registry.get_sample_value("spoofwatch_streams_closed_total", {"reason": "error"}) == 1
    with pytest.raises(StreamClosedError):
        await bad.push(_chunk(HOP))
    assert not good.closed and "good" in hub.registry
    await good.push(_chunk(HOP))
    await good.close("client")
    good_messages = [m async for m in good_events]
    assert [m["type"] for m in good_messages] == ["opened"] + ["result"] * 3 + ["closed"]
    assert good_messages[-1]["reason"] == "client"
