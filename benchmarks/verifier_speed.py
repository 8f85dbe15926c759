"""CPU cost of the second-tier verifier: ms of one core per second of audio per stream.

    python benchmarks/verifier_speed.py [--checkpoint runs/v/ckpt.pt] [--windows 4,8] [--batches 1,8]
                                        [--every 1.0] [--seconds 5] [--torch]

The verifier scores a sliding window of `window` seconds once every `every` seconds, so one
stream costs (time of one window's scoring) / every per second of audio; a batch scores that many
streams' windows in one call. The figure is CPU time of this process (process_time, not wall time:
on a shared machine it barely moves with other load) with one intra-op and one inter-op thread,
ORT_SEQUENTIAL: the cost on one core. The ONNX graph is the one the daemon would run, exported
here from a checkpoint or, without one, from a Whisper tiny.en-shaped verifier with random weights
(the cost does not depend on the weights, so no weights are needed). `--torch` also times the
eager torch model with torch.set_num_threads(1). Budget (issue 21): 50 ms per second of audio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from streaming_models.verifier.model import (
    AUDIO_INPUT,
    Verifier,
    VerifierConfig,
    export_onnx,
    load_checkpoint,
)
from streaming_models.verifier.score import one_core_session
from streaming_models.verifier.whisper_encoder import SAMPLE_RATE_HZ, EncoderDims, WhisperEncoder


def cpu_ms_per_call(run: Callable[[], object], seconds: float, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while calls < 2 or time.perf_counter() - start < seconds:
        run()
        calls += 1
    return (time.process_time() - cpu_start) / calls * 1000.0


def ms_per_audio_second(call_ms: float, batch: int, every_s: float) -> float:
    """One stream's cost per second of its audio: one window scored every `every_s` seconds."""
    return call_ms / batch / every_s


def measure(model: Verifier, session: ort.InferenceSession, window_s: float, batch: int, every_s: float,
            seconds: float, with_torch: bool) -> dict[str, float]:
    audio = (0.1 * np.random.default_rng(0).standard_normal((batch, round(window_s * SAMPLE_RATE_HZ))))
    audio = audio.astype(np.float32)
    row = {"onnx": ms_per_audio_second(cpu_ms_per_call(lambda: session.run(None, {AUDIO_INPUT: audio}), seconds),
                                       batch, every_s)}
    if with_torch:
        tensor = torch.from_numpy(audio)
        with torch.inference_mode():
            row["torch"] = ms_per_audio_second(cpu_ms_per_call(lambda: model(tensor), seconds), batch, every_s)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a verifier checkpoint (default: random tiny.en-shaped)")
    parser.add_argument("--windows", default="4,8", help="window lengths, seconds")
    parser.add_argument("--batches", default="1,8", help="streams scored per call")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two scorings of a stream")
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per cell")
    parser.add_argument("--torch", action="store_true", help="also time eager torch, one thread")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_checkpoint(args.checkpoint)[0] if args.checkpoint else Verifier(WhisperEncoder(EncoderDims()),
                                                                                  VerifierConfig()).eval()
    windows = [float(w) for w in args.windows.split(",")]
    print(f"ms of one core per second of audio per stream, one window scored every {args.every:g} s "
          f"(budget 50 ms)")
    print(f"{'window_s':>8} {'batch':>5} {'onnx':>8}" + (f" {'torch':>8}" if args.torch else ""))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "verifier.onnx"
        export_onnx(model, path, round(windows[0] * SAMPLE_RATE_HZ))
        session = one_core_session(path)
        for window_s in windows:
            for batch in (int(b) for b in args.batches.split(",")):
                row = measure(model, session, window_s, batch, args.every, args.seconds, args.torch)
                print(f"{window_s:>8g} {batch:>5} {row['onnx']:>8.1f}" +
                      (f" {row['torch']:>8.1f}" if args.torch else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
