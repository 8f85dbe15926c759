"""The load benchmark's hand-formatted audio header and its percentile helper."""

from __future__ import annotations

import json
from types import ModuleType

import pytest
from benchmark_modules import load_benchmark

from daemon.wire.zmq_messages import AudioBatchMessage, AudioMessage, parse_request


@pytest.fixture(scope="module")
def load_module() -> ModuleType:
    return load_benchmark("load")


@pytest.mark.parametrize("stream_id", ["load300-1-2-17", 'quote"and\\slash', "é-unicode"])
def test_audio_header_parses_as_the_protocol_message(load_module: ModuleType, stream_id: str) -> None:
    header = load_module.audio_header(stream_id, 42)
    assert parse_request([header, b"\xff" * 160]) == AudioMessage(stream_id, 42, b"\xff" * 160)


def test_batch_header_parses_as_the_protocol_message(load_module: ModuleType) -> None:
    ids = ["load300-1-2-17", 'quote"and\\slash', "é-unicode"]
    ids_json = json.dumps(ids, separators=(",", ":")).encode()
    frames = [load_module.batch_header(ids_json, len(ids), 42), *(b"\xff" * 160 for _ in ids)]
    assert parse_request(frames) == AudioBatchMessage([AudioMessage(i, 42, b"\xff" * 160) for i in ids])


def test_percentiles(load_module: ModuleType) -> None:
    assert load_module.percentiles([]) == {}
    figures = load_module.percentiles(list(range(101)))
    assert figures == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
