"""The load benchmark's hand-formatted headers and percentile helper; model_speed's variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from benchmark_modules import load_benchmark

from daemon.wire.zmq_messages import AudioBatchMessage, AudioMessage, parse_request
from streaming_models.runtime.model_format import METADATA_KEY, ModelMetadata


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
    frames = [load_module.batch_header(ids_json, [42, 0, 7]), *(b"\xff" * 160 for _ in ids)]
    assert parse_request(frames) == AudioBatchMessage([AudioMessage(i, k, b"\xff" * 160)
                                                       for i, k in zip(ids, [42, 0, 7], strict=True)])


def test_percentiles(load_module: ModuleType) -> None:
    assert load_module.percentiles([]) == {}
    figures = load_module.percentiles(list(range(101)))
    assert figures == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def test_model_speed_variants_keep_the_scores_where_they_claim_to(tiny_model: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """The saved onnxruntime-optimized graph and denormal flushing score like the file itself
    (within 1e-4, the bar of issue #23); this is what lets docs/performance.md call them equal."""
    speed = load_benchmark("model_speed")
    variants = speed.build_variants(tiny_model[0], tmp_path)
    sessions = {name: ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
                for name, (file, opts) in variants.items()}
    reference_session = sessions["shipped (daemon settings)"]
    meta = ModelMetadata.from_json(reference_session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    audio = speed.speechlike_hops(meta, streams=3, hops=8)
    reference = speed.stream_scores(reference_session, meta, audio)
    assert reference.shape == (8, 3, 2) and np.all((reference > 0) & (reference < 1))
    for name in ("no graph optimization", "saved optimized graph", "denormals as zero", "2 intra-op threads"):
        assert np.abs(speed.stream_scores(sessions[name], meta, audio) - reference).max() <= 1e-4, name


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_compiled_ingest_prototype_gives_the_daemons_samples(tmp_path: Path) -> None:
    """benchmarks/ingest_c_prototype.py's C decode + FIR equals SoxrFirUpsampler message by message
    (the figure in docs/architecture.md is only worth something if the samples are the same)."""
    proto = load_benchmark("ingest_c_prototype")
    worst = proto.same_samples(proto.payloads_for(3, 20), proto.CompiledBatch(3, tmp_path))
    assert worst <= 1e-5
