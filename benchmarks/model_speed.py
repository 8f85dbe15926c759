"""CPU cost of the streaming detector in onnxruntime: ms of one core per hop per stream.

    python benchmarks/model_speed.py [--model FILE.onnx] [--features logpow] [--seconds 3]

Without --model it exports a freshly initialized model of the default config (the cost
does not depend on the weights). One intra-op thread, one inter-op thread, sequential
execution: the figure is the cost on one core. Prints one line per batch size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streaming_models.model_format import AUDIO_INPUT, METADATA_KEY, ModelMetadata


def export_fresh(features: str, out: Path) -> None:
    import torch

    from streaming_models.export import build_metadata, export_onnx
    from streaming_models.model import ModelConfig, StreamingDetector

    torch.manual_seed(0)
    model = StreamingDetector(ModelConfig(features=features)).eval()
    export_onnx(model, build_metadata(model, {"policy": "untrained"}), out)


def measure(session: ort.InferenceSession, meta: ModelMetadata, batch: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    feeds = {AUDIO_INPUT: (0.1 * rng.standard_normal((batch, meta.hop_samples))).astype(np.float32)}
    feeds.update({s.input_name: np.zeros((batch, *s.shape), np.float32) for s in meta.states})
    for _ in range(5):
        session.run(None, feeds)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        outs = session.run(None, feeds)
        feeds.update({s.input_name: o for s, o in zip(meta.states, outs[1:], strict=True)})
        calls += 1
    return (time.perf_counter() - start) / calls / batch * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model; default: fresh default config")
    parser.add_argument("--features", default="logpow", help="feature kind for the fresh model")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per batch size")
    args = parser.parse_args()
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
        for batch in (1, 16, 64):
            ms = measure(session, meta, batch, args.seconds)
            streams = 1000.0 / (ms * 1000.0 / meta.hop_ms)  # real-time streams one core carries
            print(f"batch {batch:3d}: {ms:.4f} ms/hop/stream  ({streams:.0f} real-time streams/core)")


if __name__ == "__main__":
    main()
