from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from daemon.batcher import Batcher, BatcherClosed
from daemon.stream_api import StreamClosedError
from streaming_models.runtime.backend import Backend
from streaming_models.runtime.model_format import ModelMetadata, StateSpec

HOP = 4


class SummingBackend:
    """In-memory fake: the state is the running sum of a stream's audio; p_spoof reports it,
    p_codec the batch size. A row holding NaN makes the whole call fail."""

    def __init__(self) -> None:
        self.metadata = ModelMetadata("fake", 16000, HOP, (StateSpec("s_in", "s_out", (1,)),))
        self.calls: list[int] = []

    def initial_states(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, 1), dtype=np.float32)]

    def run(self, audio: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if np.isnan(audio).any():
            raise ValueError("NaN in the batch")
        self.calls.append(len(audio))
        new = states[0] + audio.sum(axis=1, keepdims=True)
        probs = np.concatenate([new, np.full_like(new, len(audio))], axis=1)
        return probs.astype(np.float32), [new]


def _hop(value: float) -> np.ndarray:
    return np.full(HOP, value / HOP, dtype=np.float32)


@pytest.fixture
async def make_batcher() -> AsyncIterator[Callable[..., Batcher]]:
    tasks = []

    def make(max_batch: int = 64, max_wait_ms: float = 5.0, backend: Backend | None = None) -> Batcher:
        batcher = Batcher(backend or SummingBackend(), max_batch, max_wait_ms)
        tasks.append(asyncio.create_task(batcher.run_batches()))
        return batcher

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_batch_runs_when_max_batch_is_reached(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_batch=4, max_wait_ms=10_000)
    slots = [batcher.open_slot(f"s{i}") for i in range(4)]
    started = time.monotonic()
    probs = await asyncio.wait_for(asyncio.gather(*(batcher.submit(s, _hop(1)) for s in slots)), 5)
    assert time.monotonic() - started < 2.0  # far below the 10 s deadline
    assert list(batcher.stats.recent_batch_sizes) == [4]
    assert [p[1] for p in probs] == [4, 4, 4, 4]


async def test_batch_runs_at_the_deadline(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_batch=64, max_wait_ms=80)
    slots = [batcher.open_slot(f"s{i}") for i in range(2)]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(s, _hop(1)) for s in slots)), 5)
    elapsed = time.monotonic() - started
    assert 0.07 <= elapsed < 2.0
    assert list(batcher.stats.recent_batch_sizes) == [2]


async def test_state_is_carried_per_stream(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_batch=8, max_wait_ms=1)
    a, b = batcher.open_slot("a"), batcher.open_slot("b")
    for step in range(3):
        pa, pb = await asyncio.gather(batcher.submit(a, _hop(1)), batcher.submit(b, _hop(10)))
        assert pa[0] == pytest.approx(step + 1)
        assert pb[0] == pytest.approx(10 * (step + 1))
    assert a.states is not None and float(a.states[0][0, 0]) == pytest.approx(3)


async def test_one_stream_never_appears_twice_in_a_batch(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_batch=8, max_wait_ms=20)
    a, b = batcher.open_slot("a"), batcher.open_slot("b")
    results = await asyncio.gather(*(batcher.submit(a, _hop(1)) for _ in range(3)), batcher.submit(b, _hop(5)))
    assert [float(p[0]) for p in results] == pytest.approx([1, 2, 3, 5])  # a's hops in order
    assert sorted(batcher.stats.recent_batch_sizes) == [1, 1, 2]


async def test_state_is_freed_on_close(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_wait_ms=1)
    a = batcher.open_slot("a")
    await batcher.submit(a, _hop(1))
    assert a.states is not None
    batcher.release(a)
    assert a.states is None
    with pytest.raises(StreamClosedError):
        await batcher.submit(a, _hop(1))


async def test_release_during_a_batch_does_not_resurrect_the_state(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_wait_ms=30)
    a = batcher.open_slot("a")
    pending = asyncio.create_task(batcher.submit(a, _hop(1)))
    await asyncio.sleep(0)
    batcher.release(a)
    with pytest.raises(StreamClosedError):
        await pending
    assert a.states is None


async def test_one_streams_error_does_not_fail_the_others(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_batch=3, max_wait_ms=1000)
    good1, bad, good2 = (batcher.open_slot(n) for n in ("good1", "bad", "good2"))
    outcomes = await asyncio.gather(
        batcher.submit(good1, _hop(1)), batcher.submit(bad, _hop(float("nan"))), batcher.submit(good2, _hop(2)),
        return_exceptions=True)
    assert isinstance(outcomes[1], ValueError)
    assert float(outcomes[0][0]) == pytest.approx(1)  # type: ignore[index]
    assert float(outcomes[2][0]) == pytest.approx(2)  # type: ignore[index]
    # the failed batch did not advance anyone's state; the next hop continues from 1
    assert float((await batcher.submit(good1, _hop(1)))[0]) == pytest.approx(2)
    assert bad.states is None


async def test_wrong_hop_size_is_refused_at_submit(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher()
    with pytest.raises(ValueError, match="hop"):
        await batcher.submit(batcher.open_slot("a"), np.zeros(HOP + 1, dtype=np.float32))


async def test_close_fails_queued_hops(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(max_wait_ms=10_000)
    pending = asyncio.create_task(batcher.submit(batcher.open_slot("a"), _hop(1)))
    await asyncio.sleep(0.01)
    batcher.close()
    with pytest.raises(BatcherClosed):
        await pending
    with pytest.raises(BatcherClosed):
        await batcher.submit(batcher.open_slot("b"), _hop(1))


async def test_real_onnx_model_batched_equals_sequential(tiny_model, make_batcher) -> None:  # type: ignore[no-untyped-def]
    from streaming_models.runtime.onnx_backend import OnnxBackend

    backend = OnnxBackend(tiny_model[0], providers=["CPUExecutionProvider"])
    hop = backend.metadata.hop_samples
    rng = np.random.default_rng(1)
    audio = {name: (0.2 * rng.standard_normal((3, hop))).astype(np.float32) * (i + 1)
             for i, name in enumerate(("a", "b", "c"))}
    expected = {}
    for name, hops in audio.items():  # one stream at a time, state threaded by hand
        states = backend.initial_states(1)
        rows = []
        for h in hops:
            probs, states = backend.run(h[None], states)
            rows.append(probs[0])
        expected[name] = np.stack(rows)
    batcher = make_batcher(max_batch=3, max_wait_ms=50, backend=backend)
    slots = {name: batcher.open_slot(name) for name in audio}
    for step in range(3):
        got = await asyncio.gather(*(batcher.submit(slots[n], audio[n][step]) for n in audio))
        for name, probs in zip(audio, got, strict=True):
            np.testing.assert_allclose(probs, expected[name][step], atol=1e-5)
    assert max(batcher.stats.recent_batch_sizes) == 3
