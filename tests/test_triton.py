"""The Triton tier: the repository `spoofwatch export --triton` writes, and the triton backend
against real Triton servers on loopback (tests/triton_server.py; skipped without `make triton-env`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from triton_server import RunningTriton, find_triton, free_port, running_triton

from streaming_models.runtime.errors import BackendError
from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
)
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer, StreamState
from streaming_models.triton_repository import parse_instances, read_onnx_metadata, write_repository

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "streaming_models" / "default_model" / "spoofwatch-default.onnx"


def parse_config(path: Path) -> dict:
    """config.pbtxt read back through Triton's own ModelConfig protobuf, as JSON."""
    from google.protobuf import json_format, text_format

    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def graph_tensors(onnx_path: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The graph's inputs and outputs, name -> per-stream dims (the batch dimension dropped)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for tensor in (*session.get_inputs(), *session.get_outputs()):
        assert tensor.type == "tensor(float)" and tensor.shape[0] == "batch", tensor
    return ({t.name: list(t.shape[1:]) for t in session.get_inputs()},
            {t.name: list(t.shape[1:]) for t in session.get_outputs()})


def test_repository_config_declares_every_graph_tensor(tmp_path: Path) -> None:
    meta = read_onnx_metadata(MODEL)
    model_dir = write_repository(MODEL, meta, tmp_path, max_batch_size=48, max_queue_delay_ms=7.5,
                                 instances=(("gpu", 2), ("cpu", 3)))
    assert (model_dir / "1" / "model.onnx").read_bytes() == MODEL.read_bytes()
    config = parse_config(model_dir / "config.pbtxt")
    inputs, outputs = graph_tensors(MODEL)
    assert config["name"] == "spoofwatch" and config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 48
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 7500
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_GPU", 2), ("KIND_CPU", 3)]
    assert {t["name"]: [int(d) for d in t["dims"]] for t in config["input"]} == inputs
    assert {t["name"]: [int(d) for d in t["dims"]] for t in config["output"]} == outputs
    assert all(t["data_type"] == "TYPE_FP32" for t in config["input"] + config["output"])
    assert config["input"][0]["name"] == AUDIO_INPUT and config["output"][0]["name"] == LOGITS_OUTPUT
    # every state is an input and an output, so the server keeps nothing between hops
    assert len(config["input"]) == len(config["output"]) == len(meta.states) + 1
    stored = ModelMetadata.from_json(config["parameters"][METADATA_KEY]["string_value"])
    assert stored == meta


def test_python_backend_repository_carries_its_model(tmp_path: Path) -> None:
    meta = read_onnx_metadata(MODEL)
    model_dir = write_repository(MODEL, meta, tmp_path, instances=(("cpu", 1),), backend="python")
    assert parse_config(model_dir / "config.pbtxt")["backend"] == "python"
    source = (model_dir / "1" / "model.py").read_text()
    compile(source, "model.py", "exec")
    assert "class TritonPythonModel" in source


def test_export_cli_takes_batching_from_the_daemon_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streaming_models.export import main

    daemon_toml = tmp_path / "daemon.toml"
    daemon_toml.write_text("[batching]\nmax_batch = 128\nmax_wait_ms = 12.5\n")
    assert main(["--out", str(MODEL), "--triton", str(tmp_path / "repo"), "--triton-instances", "cpu:2",
                 "--daemon-config", str(daemon_toml)]) == 0
    report = json.loads(capsys.readouterr().out)
    config = parse_config(Path(report["triton_model"]) / "config.pbtxt")
    assert config["max_batch_size"] == 128
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 12500
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 2)]


def test_repository_module_runs_without_torch(tmp_path: Path) -> None:
    """`python -m streaming_models.triton_repository` is what the daemon image (no torch) runs."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; from streaming_models.triton_repository import main; "
            f"sys.exit(main(['--out', {str(tmp_path)!r}, '--instances', 'cpu:1', '--max-batch', '4096']))")
    # from another folder: the default model is found as package data
    run = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    config = parse_config(tmp_path / "spoofwatch" / "config.pbtxt")
    assert config["instance_group"][0]["kind"] == "KIND_CPU" and config["max_batch_size"] == 4096
    assert (tmp_path / "spoofwatch" / "1" / "model.onnx").read_bytes() == MODEL.read_bytes()


def test_export_batching_defaults_are_the_daemons() -> None:
    from daemon.config import BatchingConfig
    from streaming_models.triton_repository import daemon_batching

    assert daemon_batching(None) == (BatchingConfig().max_batch, BatchingConfig().max_wait_ms)


@pytest.mark.parametrize("text,expected", [("gpu", (("gpu", 1),)), ("gpu:1,cpu:2", (("gpu", 1), ("cpu", 2)))])
def test_parse_instances(text: str, expected: tuple) -> None:
    assert parse_instances(text) == expected


@pytest.mark.parametrize("text", ["", "tpu:1", "cpu:0", "cpu:x"])
def test_parse_instances_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instances(text)


# ---- against real Triton servers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningTriton, RunningTriton]]:
    """Two Triton servers serving the default model through the Python backend (CPU instances)."""
    pytest.importorskip("tritonclient.grpc")
    dist = find_triton()
    if isinstance(dist, str):
        pytest.skip(dist)
    base = tmp_path_factory.mktemp("triton")
    repository = base / "repository"
    write_repository(MODEL, read_onnx_metadata(MODEL), repository, instances=(("cpu", 1),), backend="python")
    (base / "a").mkdir()
    (base / "b").mkdir()
    with running_triton(dist, repository, base / "a") as first, running_triton(dist, repository, base / "b") as second:
        yield first, second


def speechlike_hops(streams: int, hops: int, hop_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(hops * hop_samples) / 16000.0
    audio = np.stack([0.2 * np.sin(2 * np.pi * (120 + 40 * s) * t) * (1 + np.sin(2 * np.pi * 3 * t))
                      + 0.02 * rng.standard_normal(t.size) for s in range(streams)]).astype(np.float32)
    return audio.reshape(streams, hops, hop_samples)


def score_in_turns(scorer: HopScorer, audio: np.ndarray, hops: range,
                   states: list[StreamState | None]) -> np.ndarray:
    """Each hop of every stream through `score_hops` with the streams' carried states; [streams, hops, 2]."""
    out = []
    for h in hops:
        probs, new_states = scorer.score_hops(audio[:, h], states)
        states[:] = new_states
        out.append(probs)
    return np.stack(out, axis=1)


def test_triton_scores_equal_in_process_with_carried_states(triton_pair: tuple[RunningTriton, RunningTriton]) -> None:
    from streaming_models.runtime.triton_backend import TritonBackend

    local = OnnxBackend(MODEL, providers=["CPUExecutionProvider"])
    remote = TritonBackend(endpoints=[triton_pair[0].grpc_endpoint, triton_pair[1].grpc_endpoint], timeout_s=10)
    assert remote.metadata == local.metadata  # read from the served model's config
    audio = speechlike_hops(5, 8, local.metadata.hop_samples, seed=3)
    local_states: list[StreamState | None] = [None] * 5
    remote_states: list[StreamState | None] = [None] * 5
    expected = score_in_turns(HopScorer(local), audio, range(8), local_states)
    got = score_in_turns(HopScorer(remote), audio, range(8), remote_states)
    assert np.abs(got - expected).max() <= 1e-5
    assert expected[:, -1].std() > 0  # the streams differ, so a mixed-up row would show
    for mine, theirs in zip(local_states, remote_states, strict=True):
        assert mine is not None and theirs is not None
        assert max(float(np.abs(a - b).max()) for a, b in zip(mine, theirs, strict=True)) <= 1e-5
    remote.close()


def test_triton_down_is_a_clear_error() -> None:
    pytest.importorskip("tritonclient.grpc")
    from streaming_models.runtime.triton_backend import TritonBackend

    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=f"Triton is not reachable.*{nobody}"):
        TritonBackend(endpoints=[nobody], timeout_s=0.5)


def test_serve_with_triton_down_fails_at_start_naming_the_endpoint() -> None:
    pytest.importorskip("tritonclient.grpc")
    import subprocess
    import sys

    nobody = f"127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "clients.cli", "serve", "--model.backend", "triton",
         "--model.triton-endpoints", json.dumps([nobody]), "--model.triton-timeout-s", "0.5",
         "--model.path", "no-local-model-needed.onnx", "--webrtc.enabled", "false"],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert "Triton is not reachable" in run.stderr and nobody in run.stderr


def test_daemon_config_builds_the_triton_backend(triton_pair: tuple[RunningTriton, RunningTriton]) -> None:
    from daemon.app import build_backend
    from daemon.config import build_config

    endpoints = [triton_pair[0].grpc_endpoint, triton_pair[1].grpc_endpoint]
    config = build_config({"model": {"backend": "triton", "triton_endpoints": endpoints, "triton_retries": 1,
                                     "triton_fallback": True, "providers": ["CPUExecutionProvider"]}})
    backend = build_backend(config, MODEL)
    assert type(backend).__name__ == "TritonBackend"
    assert backend.endpoints == tuple(endpoints) and backend.fallback is not None  # type: ignore[attr-defined]
    assert backend.metadata == read_onnx_metadata(MODEL)


async def _daemon_results(backend: object, audio: np.ndarray) -> dict[tuple[str, int], tuple[float, float]]:
    """Streams of `audio` rows through a whole in-process daemon on `backend`; (stream, seq) -> (p_spoof, p_codec)."""
    import zmq
    import zmq.asyncio
    from daemon_harness import Client, Subscriber, is_event, settings, wait_subscribed

    from daemon.app import Daemon
    from daemon.config import build_config
    from daemon.wire.frames import AudioFormat
    from daemon.wire.zmq_messages import AudioMessage, CloseMessage, OpenMessage

    fmt = AudioFormat("pcm_f32le", 16000, 1)
    daemon = Daemon(build_config(settings()), backend)  # type: ignore[arg-type]
    await daemon.start()
    context = zmq.asyncio.Context()
    client = Client(context, daemon.state.endpoints["ingest"])
    subscriber = Subscriber(context, daemon.state.endpoints["pub"])
    try:
        await wait_subscribed(client, subscriber, fmt)
        ids = [f"call-{row}" for row in range(len(audio))]
        for stream_id, samples in zip(ids, audio, strict=True):
            await client.request(OpenMessage(stream_id, fmt).to_frames())
            await client.send(AudioMessage(stream_id, 0, samples.astype(np.float32).tobytes()).to_frames())
        for stream_id in ids:
            await client.request(CloseMessage(stream_id).to_frames())
        for stream_id in ids:
            await subscriber.until(is_event(stream_id, "closed"))
        return {(m["stream_id"], m["seq"]): (m["p_spoof"], m["p_codec"])
                for m in subscriber.messages if m["type"] == "result"}
    finally:
        client.close()
        subscriber.close()
        context.destroy(linger=0)
        await daemon.shutdown()


async def test_a_daemon_on_triton_publishes_the_in_process_scores(
        triton_pair: tuple[RunningTriton, RunningTriton]) -> None:
    """The whole daemon (ingest, batcher, scorer, publisher) on `backend = "triton"`: every result
    equals the same audio's result from a daemon on the onnx backend."""
    from streaming_models.runtime.triton_backend import TritonBackend

    audio = speechlike_hops(4, 10, 1600, seed=9).reshape(4, -1)  # 1 s per stream
    local = await _daemon_results(OnnxBackend(MODEL, providers=["CPUExecutionProvider"]), audio)
    remote = await _daemon_results(TritonBackend(endpoints=[triton_pair[1].grpc_endpoint], timeout_s=10), audio)
    assert len(local) == 40 and remote.keys() == local.keys()
    assert max(abs(a - b) for key in local for a, b in zip(local[key], remote[key], strict=True)) <= 1e-5


def test_overhead_benchmark_prints_both_sides(triton_pair: tuple[RunningTriton, RunningTriton],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark_modules import load_benchmark

    bench = load_benchmark("triton_overhead")
    assert bench.main(["--endpoint", triton_pair[1].grpc_endpoint, "--batches", "1,4", "--calls", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["1"], ["4"])]
    assert [row[0] for row in rows] == ["1", "4"]


def test_failover_to_the_second_endpoint_keeps_every_hop(triton_pair: tuple[RunningTriton, RunningTriton]) -> None:
    """Stops the first server mid-stream, then the second (so it runs last in this module): the
    next hops go to the second one from the states the daemon kept, and the scores stay equal to
    in-process scoring; with both down, an error, or the in-process fallback when configured."""
    from streaming_models.runtime.triton_backend import TritonBackend

    first, second = triton_pair
    local = OnnxBackend(MODEL, providers=["CPUExecutionProvider"])
    remote = TritonBackend(endpoints=[first.grpc_endpoint, second.grpc_endpoint], timeout_s=5, retries=1)
    lonely = TritonBackend(endpoints=[first.grpc_endpoint], timeout_s=5, retries=2)
    audio = speechlike_hops(3, 6, local.metadata.hop_samples, seed=5)
    local_states: list[StreamState | None] = [None] * 3
    remote_states: list[StreamState | None] = [None] * 3
    expected = score_in_turns(HopScorer(local), audio, range(6), local_states)
    before = score_in_turns(HopScorer(remote), audio, range(3), remote_states)
    first.stop()
    after = score_in_turns(HopScorer(remote), audio, range(3, 6), remote_states)
    assert np.abs(np.concatenate([before, after], axis=1) - expected).max() <= 1e-5
    with pytest.raises(BackendError, match="could not score the batch after 3 attempt"):
        HopScorer(lonely).score_hops(audio[:, 0], [None] * 3)
    # with a fallback configured, an outage of every endpoint scores in-process
    fallback = TritonBackend(endpoints=[second.grpc_endpoint], timeout_s=5, retries=0, fallback=local)
    second.stop()
    probs, _ = HopScorer(fallback).score_hops(audio[:, 0], [None] * 3)
    assert np.abs(probs - expected[:, 0]).max() <= 1e-5
