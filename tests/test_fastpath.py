"""The compiled per-message path of StreamBuffer (`_fastpath.c`) gives the Python path's hops.

Every scenario runs twice, compiled and pure Python, step by step: the same hops (index, start
sample, count, the message that completes each), the same counters and buffered samples after
every call, samples within 1e-6 of each other and within soxr's 1e-5 (the FIR's own bound).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from streaming_models.runtime import fastpath
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.resample import FIR_TOLERANCE, polyphase_taps

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_RATE = 16000
HOP = 1600
COMPILED_RATES = (8000, 16000)  # the FIR (x2) and equal rates: what the extension runs
SOXR_RATES = (11025, 22050, 24000, 32000, 44100, 48000)  # soxr's streaming resampler: always Python

needs_extension = pytest.mark.skipif(fastpath.load_extension() is None,
                                     reason="the compiled extension is not built (see test_extension_is_built)")


def _noise(seconds: float, rate: int, seed: int) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).uniform(-0.9, 0.9, int(seconds * rate)).astype(np.float32)


def _state(buffer: StreamBuffer) -> tuple[Any, ...]:
    c = buffer.counters
    return (buffer.buffered_samples, c.gaps_filled, c.samples_filled, c.duplicates_dropped,
            c.samples_dropped_overflow, c.samples_in, c.samples_out, c.hops_cut, c.samples_unscored)


def _script(rate: int, seed: int, seconds: float = 3.0) -> list[tuple[str, Any, Any]]:
    """A stream's life: messages of live sizes (10 ms .. 1 s, odd lengths too), sequence gaps,
    duplicates, reorders, pops skipped for a while (so the cap drops audio), then the end."""
    rng = np.random.default_rng(seed)
    signal = _noise(seconds, rate, seed)
    steps: list[tuple[str, Any, Any]] = []
    offset, seq = 0, 0
    sizes = [rate // 50, rate // 100, rate // 50 + 7, rate // 25, rate, 1, rate // 50 - 3]
    while offset < len(signal):
        size = int(sizes[rng.integers(len(sizes))])
        chunk = signal[offset:offset + size]
        offset += size
        roll = rng.random()
        if roll < 0.06:
            seq += int(rng.integers(2, 6))  # lost messages: a gap filled with silence
        elif roll < 0.1 and seq > 1:
            steps.append(("push", chunk, seq - 2))  # a late duplicate: dropped
        steps.append(("push", chunk, seq))
        seq += 1
        if rng.random() < 0.8:
            steps.append(("pop", None, None))
    steps.append(("flush", None, None))
    steps.append(("pop", None, None))
    return steps


def _run(script: list[tuple[str, Any, Any]], rate: int, compiled: bool, max_buffered_s: float = 0.5,
         sequenced: bool = True) -> tuple[list[Any], list[Any], list[npt.NDArray[np.float32]]]:
    buffer = StreamBuffer(rate, MODEL_RATE, HOP, max_buffered_s=max_buffered_s, compiled=compiled)
    assert buffer.compiled is compiled
    spans, states, audio = [], [], []
    for step, (kind, chunk, seq) in enumerate(script):
        if kind == "push":
            buffer.push(chunk, seq if sequenced else None)
        elif kind == "pop":
            for index, start, hop in buffer.pop_hop_spans():
                spans.append((step, index, start))
                audio.append(hop)
        else:
            buffer.flush()
        states.append(_state(buffer))
    return spans, states, audio


@needs_extension
@pytest.mark.parametrize("rate", COMPILED_RATES)
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("max_buffered_s", [0.5, 30.0])
@pytest.mark.parametrize("sequenced", [True, False])
def test_compiled_path_gives_the_python_paths_hops(rate: int, seed: int, max_buffered_s: float,
                                                   sequenced: bool) -> None:
    script = _script(rate, seed)
    python = _run(script, rate, compiled=False, max_buffered_s=max_buffered_s, sequenced=sequenced)
    compiled = _run(script, rate, compiled=True, max_buffered_s=max_buffered_s, sequenced=sequenced)
    assert compiled[0] == python[0]  # hop boundaries, indices, the step completing each
    assert compiled[1] == python[1]  # counters and buffered samples after every step
    assert python[0], "the script cut no hops"
    if max_buffered_s == 0.5:
        assert python[1][-1][4] > 0, "the script never reached the cap"
    for got, expected in zip(compiled[2], python[2], strict=True):
        assert got.shape == (HOP,) and got.dtype == np.float32
        assert float(np.abs(got - expected).max()) <= 1e-6


@needs_extension
@pytest.mark.parametrize("rate", COMPILED_RATES)
def test_compiled_hops_equal_soxr_within_its_bound(rate: int) -> None:
    signal = _noise(2.0, rate, seed=9)
    buffer = StreamBuffer(rate, MODEL_RATE, HOP, max_buffered_s=30, compiled=True)
    for m, offset in enumerate(range(0, len(signal), rate // 50)):
        buffer.push(signal[offset:offset + rate // 50], m)
    buffer.flush()
    streamed = np.concatenate(buffer.pop_hops())
    whole = soxr.resample(signal, rate, MODEL_RATE, quality="HQ")
    assert len(streamed) == len(whole) // HOP * HOP
    assert float(np.abs(streamed - whole[:len(streamed)]).max()) <= FIR_TOLERANCE


@needs_extension
def test_each_hop_completes_on_the_same_message_as_in_python() -> None:
    signal = _noise(4.0, 8000, seed=4)
    done: list[list[tuple[int, int]]] = []
    for compiled in (True, False):
        buffer = StreamBuffer(8000, MODEL_RATE, HOP, max_buffered_s=30, compiled=compiled)
        completions = []
        for m in range(len(signal) // 160):
            buffer.push(signal[m * 160:(m + 1) * 160], m)
            completions += [(m, index) for index, _, _ in buffer.pop_hop_spans()]
        done.append(completions)
    assert done[0] == done[1]
    assert len(done[0]) == 39  # 4 s of 100 ms hops; the last waits for the filter's look-ahead


@needs_extension
@pytest.mark.parametrize("rate", SOXR_RATES)
def test_rates_needing_soxr_run_the_python_path(rate: int) -> None:
    assert not StreamBuffer(rate, MODEL_RATE, HOP).compiled
    with pytest.raises(ValueError, match="soxr"):
        StreamBuffer(rate, MODEL_RATE, HOP, compiled=True)
    assert not StreamBuffer(8000, MODEL_RATE, HOP, low_delay=False).compiled  # soxr asked for


@pytest.mark.parametrize("rate", COMPILED_RATES + SOXR_RATES)
def test_every_rate_cuts_the_same_hops_whichever_path_is_chosen(rate: int) -> None:
    """Automatic choice (compiled where it applies and is built) against forced Python."""
    script = _script(rate, seed=5, seconds=2.0)
    chosen = StreamBuffer(rate, MODEL_RATE, HOP).compiled
    automatic = _run(script, rate, compiled=chosen)
    python = _run(script, rate, compiled=False)
    assert automatic[0] == python[0] and automatic[1] == python[1]
    for got, expected in zip(automatic[2], python[2], strict=True):
        assert float(np.abs(got - expected).max()) <= 1e-6


@needs_extension
@pytest.mark.parametrize("rate", COMPILED_RATES)
def test_end_of_stream_is_the_same(rate: int) -> None:
    for compiled in (True, False):
        buffer = StreamBuffer(rate, MODEL_RATE, HOP, compiled=compiled)
        buffer.push(np.zeros(rate // 10 + 3, dtype=np.float32))
        buffer.flush()
        out = buffer.counters.samples_out
        buffer.flush()  # idempotent
        assert buffer.counters.samples_out == out == round((rate // 10 + 3) * MODEL_RATE / rate)
        assert buffer.counters.samples_unscored == out % HOP
        assert len(buffer.pop_hops()) == out // HOP
        with pytest.raises(ValueError, match="after flush"):
            buffer.push(np.zeros(80, dtype=np.float32))
    # a stream that ends before its first sample: nothing out
    for compiled in (True, False):
        empty = StreamBuffer(rate, MODEL_RATE, HOP, compiled=compiled)
        empty.flush()
        assert empty.counters.samples_out == 0 and empty.pop_hops() == []


@needs_extension
def test_compiled_path_takes_any_float32_view_and_refuses_other_shapes() -> None:
    signal = _noise(0.5, 8000, seed=6)
    strided = np.repeat(signal, 2)[::2]  # a non-contiguous view of the same samples
    results = []
    for samples in (signal, strided, signal.astype(">f4"), signal.astype(np.float64)):
        buffer = StreamBuffer(8000, MODEL_RATE, 400, compiled=True)
        buffer.push(samples)
        results.append(np.concatenate(buffer.pop_hops()))
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])
    with pytest.raises(ValueError, match="mono 1-D"):
        StreamBuffer(8000, MODEL_RATE, HOP, compiled=True).push(np.zeros((2, 80), dtype=np.float32))


def test_the_environment_variable_forces_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fastpath.FORCE_PYTHON_ENV, "1")
    fastpath.ingest_path.cache_clear()
    try:
        path = fastpath.ingest_path()
        assert not path.compiled and fastpath.FORCE_PYTHON_ENV in path.reason
        assert not StreamBuffer(8000, MODEL_RATE, HOP).compiled
        assert StreamBuffer(8000, MODEL_RATE, HOP, compiled=False).compiled is False
    finally:
        fastpath.ingest_path.cache_clear()
    monkeypatch.delenv(fastpath.FORCE_PYTHON_ENV)
    assert fastpath.ingest_path().compiled is (fastpath.load_extension() is not None)
    fastpath.ingest_path.cache_clear()


def test_the_choice_is_logged_once_with_its_reason() -> None:
    code = ("from streaming_models.runtime.hops import StreamBuffer\n"
            "for _ in range(3): StreamBuffer(8000, 16000, 1600)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), fastpath.FORCE_PYTHON_ENV: "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "ingest_path" in line]
    assert len(lines) == 1 and "path=python" in lines[0] and fastpath.FORCE_PYTHON_ENV in lines[0], lines


def test_extension_is_built() -> None:
    """Where a C compiler and Python's headers exist, the install builds the extension (setup.py);
    if this fails, reinstall (`pip install -e .`, or `make setup`)."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("cc") is None or not headers.is_file():
        pytest.skip("no C compiler or Python headers here: the pure-Python path runs")
    assert fastpath.load_extension() is not None, (
        "streaming_models/runtime/_fastpath.c is not built; run `pip install -e .` (or "
        "`python setup.py build_ext --inplace`) again")


@pytest.mark.slow
def test_buffer_tests_pass_on_the_forced_python_path() -> None:
    """The existing StreamBuffer tests, with the compiled path forced off in their process."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), fastpath.FORCE_PYTHON_ENV: "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_daemon_streams.py", "tests/test_resample.py"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@needs_extension
def test_compiled_buffers_give_memory_back_after_a_spike() -> None:
    """A 1 s message or a long gap grows the C arrays; the next steady messages shrink them again."""
    buffer = StreamBuffer(8000, MODEL_RATE, HOP, max_buffered_s=5.0, compiled=True)
    cutter = buffer._cutter  # the compiled state, only to read what it holds
    signal = _noise(1.0, 8000, seed=8)
    for m in range(10):
        buffer.push(signal[m * 160:(m + 1) * 160], m)
        buffer.pop_hops()
    assert cutter.allocated_bytes < 16_000
    buffer.push(np.tile(signal, 4), 10)  # 4 s in one message
    buffer.push(signal[:160], 10**6)  # and a gap filled with 5 s of silence
    assert cutter.allocated_bytes > 400_000
    buffer.pop_hops()
    for m in range(10):
        buffer.push(signal[m * 160:(m + 1) * 160], 10**6 + 1 + m)
        buffer.pop_hops()
    assert cutter.allocated_bytes < 24_000  # what a stream of 20 ms messages needs, and a little room


@needs_extension
@pytest.mark.parametrize("sizes", [[160], [1, 7, 33, 80, 159, 161, 8000], [9, 41, 300]])
def test_every_fir_kernel_gives_the_same_bits(sizes: list[int]) -> None:
    """The kernel chosen at import (AVX2 on most x86-64) against the portable one, over message
    sizes that reach each of their blocks (32 outputs, 8, single)."""
    extension = fastpath.load_extension()
    assert extension is not None
    taps, half = polyphase_taps(8000, 2, "HQ")
    reversed_taps = np.ascontiguousarray(taps[:, ::-1]).tobytes()
    signal = _noise(3.0, 8000, seed=11)
    outputs = []
    for portable in (True, False):
        cutter = extension.HopCutter(reversed_taps, 2, half, HOP, 10 * MODEL_RATE, portable=portable)
        offset, i = 0, 0
        while offset < len(signal):
            cutter.push(signal[offset:offset + sizes[i % len(sizes)]])
            offset += sizes[i % len(sizes)]
            i += 1
        cutter.flush()
        out = np.empty(cutter.buffered // HOP * HOP, dtype=np.float32)
        cutter.take(out)
        outputs.append(out)
    assert len(outputs[0]) == 48000 // HOP * HOP  # 3 s at 16 kHz, the last partial hop left
    np.testing.assert_array_equal(outputs[0], outputs[1])


@needs_extension
@pytest.mark.parametrize(("rate", "model_rate"), [(8000, 24000), (16000, 48000), (24000, 24000)])
def test_other_integer_ratios_give_the_python_paths_hops(rate: int, model_rate: int) -> None:
    """A model at another rate: the FIR x3 (where it reproduces soxr) and equal rates."""
    signal = _noise(2.0, rate, seed=12)
    runs = []
    for compiled in (True, False):
        buffer = StreamBuffer(rate, model_rate, 1200, max_buffered_s=0.2, compiled=compiled)
        steps = []
        for m, offset in enumerate(range(0, len(signal), rate // 40)):
            buffer.push(signal[offset:offset + rate // 40], m)
            if m % 3:
                steps.append([(i, s, a) for i, s, a in buffer.pop_hop_spans()])
            steps.append(_state(buffer))
        buffer.flush()
        steps.append([(i, s, a) for i, s, a in buffer.pop_hop_spans()])
        steps.append(_state(buffer))
        runs.append(steps)
    for got, expected in zip(*runs, strict=True):
        if isinstance(expected, tuple):
            assert got == expected
            continue
        assert [(i, s) for i, s, _ in got] == [(i, s) for i, s, _ in expected]
        for (_, _, a), (_, _, b) in zip(got, expected, strict=True):
            assert float(np.abs(a - b).max()) <= 1e-6


@needs_extension
def test_the_extension_refuses_misuse() -> None:
    extension = fastpath.load_extension()
    assert extension is not None
    bare = extension.HopCutter.__new__(extension.HopCutter)
    with pytest.raises(ValueError, match="not initialised"):
        bare.push(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="not initialised"):
        bare.take(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="taps"):
        extension.HopCutter(np.ones(3, dtype=np.float32).tobytes(), 1, 0, 4, 8)
    cutter = extension.HopCutter(np.ones(1, dtype=np.float32).tobytes(), 1, 0, 4, 8)
    cutter.push(np.arange(8, dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        cutter.push(np.zeros(3, dtype=np.float64))
    with pytest.raises(ValueError, match="complete hops"):
        cutter.take(np.zeros(2, dtype=np.float64))  # 16 bytes, but not float32
    with pytest.raises(ValueError, match="complete hops"):
        cutter.take(np.zeros(12, dtype=np.float32))  # three hops, two complete
    out = np.zeros(8, dtype=np.float32)
    assert cutter.take(out) == 0
    np.testing.assert_array_equal(out, np.arange(8))
