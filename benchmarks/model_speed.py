"""CPU cost of the streaming detector in onnxruntime: ms of one core per hop per stream.

    python benchmarks/model_speed.py [--model FILE.onnx] [--features logpow] [--seconds 3]
    python benchmarks/model_speed.py --model FILE.onnx --compare [--batches 1,16,64,128,256] [--rounds 2]

Without --model it exports a freshly initialized model of the default config (the cost
does not depend on the weights). One intra-op thread, one inter-op thread, sequential
execution: the figure is the cost on one core. Prints one line per batch size.

`--compare` times ways of running the same model, interleaved (each round runs every variant
at every batch size, so a busy machine hits them alike), and checks each one's scores
against the file as shipped: the largest |difference| in p_spoof/p_codec over 30 hops of 16
streams with their states carried. Variants: the shipped file (the daemon's settings:
ORT_ENABLE_ALL at load); no graph optimization; the graph optimized by onnxruntime and saved
(`optimized_model_filepath`, loaded again); denormals flushed to zero; two intra-op threads;
int8 dynamic quantization; weights rounded to float16 (stored as float32: the least any fp16
path would change).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streaming_models.runtime.model_format import AUDIO_INPUT, METADATA_KEY, ModelMetadata


def export_fresh(features: str, out: Path) -> None:
    import torch

    from streaming_models.export import build_metadata, export_onnx
    from streaming_models.model import ModelConfig, StreamingDetector

    torch.manual_seed(0)
    model = StreamingDetector(ModelConfig(features=features)).eval()
    export_onnx(model, build_metadata(model, {"policy": "untrained"}), out)


def measure(session: ort.InferenceSession, meta: ModelMetadata, batch: int, seconds: float) -> float:
    """ms of CPU (this process, all threads) per hop per stream: on a shared machine CPU time
    barely moves with other load, unlike wall time."""
    rng = np.random.default_rng(0)
    feeds = {AUDIO_INPUT: (0.1 * rng.standard_normal((batch, meta.hop_samples))).astype(np.float32)}
    feeds.update({s.input_name: np.zeros((batch, *s.shape), np.float32) for s in meta.states})
    for _ in range(5):
        session.run(None, feeds)
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        outs = session.run(None, feeds)
        feeds.update({s.input_name: o for s, o in zip(meta.states, outs[1:], strict=True)})
        calls += 1
    return (time.process_time() - cpu_start) / calls / batch * 1000.0


def session_options(threads: int = 1, level: str = "all", denormal_zero: bool = False,
                    save_to: Path | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if denormal_zero:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
    return opts


def speechlike_hops(meta: ModelMetadata, streams: int, hops: int) -> np.ndarray:
    """[hops, streams, hop_samples]: harmonics with a wandering pitch, a syllable envelope, noise
    and a stretch of silence (so log floors and small states both occur)."""
    rng = np.random.default_rng(1)
    n = hops * meta.hop_samples
    t = np.arange(n) / meta.sample_rate_hz
    out = np.empty((streams, n), np.float32)
    for i in range(streams):
        pitch = 110 + 60 * rng.uniform() + 25 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6))
        phase = 2 * np.pi * np.cumsum(pitch) / meta.sample_rate_hz
        voiced = sum(np.sin(k * phase) / k for k in range(1, 15))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)) ** 2
        out[i] = 0.15 * voiced * envelope + 0.01 * rng.standard_normal(n)
        out[i, 5 * meta.hop_samples:7 * meta.hop_samples] = 0.0
    return out.reshape(streams, hops, meta.hop_samples).transpose(1, 0, 2).copy()


def stream_scores(session: ort.InferenceSession, meta: ModelMetadata, audio: np.ndarray) -> np.ndarray:
    """p_spoof/p_codec [hops, streams, 2] for `audio` [hops, streams, hop], states carried."""
    streams = audio.shape[1]
    states = {s.input_name: np.zeros((streams, *s.shape), np.float32) for s in meta.states}
    out = []
    for hop in audio:
        logits, *new = session.run(None, {AUDIO_INPUT: hop, **states})
        states = {s.input_name: o for s, o in zip(meta.states, new, strict=True)}
        out.append(1.0 / (1.0 + np.exp(-logits[:, :2].astype(np.float64))))
    return np.stack(out)


def build_variants(path: Path, tmp: Path) -> dict[str, tuple[Path, ort.SessionOptions]]:
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    saved = tmp / "optimized.onnx"
    started = time.perf_counter()
    ort.InferenceSession(str(path), session_options(level="extended", save_to=saved),
                         providers=["CPUExecutionProvider"])
    print(f"saved the onnxruntime-optimized graph (ORT_ENABLE_EXTENDED) in {time.perf_counter() - started:.2f} s")
    int8 = tmp / "int8.onnx"
    quantize_dynamic(str(path), str(int8), weight_type=QuantType.QInt8)
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16).astype(np.float32), init.name))
    fp16w = tmp / "fp16-weights.onnx"
    onnx.save(proto, str(fp16w))
    return {
        "shipped (daemon settings)": (path, session_options()),
        "no graph optimization": (path, session_options(level="none")),
        "saved optimized graph": (saved, session_options()),
        "denormals as zero": (path, session_options(denormal_zero=True)),
        "2 intra-op threads": (path, session_options(threads=2)),
        "int8 dynamic quantization": (int8, session_options()),
        "float16-rounded weights": (fp16w, session_options()),
    }


def compare(path: Path, batches: list[int], seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        variants = build_variants(path, Path(tmp_name))
        sessions: dict[str, ort.InferenceSession] = {}
        for name, (file, opts) in variants.items():
            started = time.perf_counter()
            sessions[name] = ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])
            print(f"{name:28s} session created in {1000 * (time.perf_counter() - started):.0f} ms")
    meta = ModelMetadata.from_json(sessions["shipped (daemon settings)"].get_modelmeta().custom_metadata_map[METADATA_KEY])
    audio = speechlike_hops(meta, streams=16, hops=30)
    reference = stream_scores(sessions["shipped (daemon settings)"], meta, audio)
    print(f"model {meta.model_id}  onnxruntime {ort.__version__}; scores over {audio.shape[0]} hops x "
          f"{audio.shape[1]} streams against the shipped file")
    for name, session in sessions.items():
        diff = float(np.abs(stream_scores(session, meta, audio) - reference).max())
        verdict = "same scores (<= 1e-4)" if diff <= 1e-4 else "SCORES CHANGE (> 1e-4)"
        print(f"{name:28s} max |delta p| {diff:.2e}  {verdict}")
    timings: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for batch in batches:
            for name, session in sessions.items():
                timings.setdefault((name, batch), []).append(measure(session, meta, batch, seconds))
    print("ms of CPU per hop per stream (process CPU time, all threads; one line per variant; "
          "each batch: the rounds' values, best first)")
    for name in sessions:
        cells = [f"b{b}: " + "/".join(f"{v:.4f}" for v in sorted(timings[(name, b)])) for b in batches]
        print(f"{name:28s} " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model; default: fresh default config")
    parser.add_argument("--features", default="logpow", help="feature kind for the fresh model")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per batch size")
    parser.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--compare", action="store_true", help="time and score-check the variants (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="--compare: interleaved rounds")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.compare:
        if args.model is None:
            parser.error("--compare needs --model (a trained model: the score check needs real weights)")
        compare(args.model, batches, args.seconds, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or Path(tmp) / "model.onnx"
        if args.model is None:
            export_fresh(args.features, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        print(f"model {meta.model_id}  hop {meta.hop_ms:.0f} ms  onnxruntime {ort.__version__}  1 thread")
        for batch in batches:
            ms = measure(session, meta, batch, args.seconds)
            streams = 1000.0 / (ms * 1000.0 / meta.hop_ms)  # real-time streams one core carries
            print(f"batch {batch:3d}: {ms:.4f} ms/hop/stream  ({streams:.0f} real-time streams/core)")


if __name__ == "__main__":
    main()
