"""What the per-stream resampler costs: hop latency, CPU, and the model's output.

A telephone stream arrives as 20 ms messages at 8 kHz; the daemon resamples it to the
model rate with a streaming soxr resampler per stream (`streams.resample_quality`). soxr
compensates its filter delay by holding output back, and releases it in blocks, so a hop
is complete some time after the message carrying its last sample. `streaming_models/runtime/resample.py` can
instead apply soxr's filter directly for integer upsampling (`streams.low_delay_resampling`).
Per variant (soxr quality, soxr stream or direct FIR) this prints:

- hop completion delay: for each hop, (message that completed it) - (message carrying its
  last input sample), in ms, p50 / p99 / max, when the resampler is fed once per message;
- CPU per message (push + pop through `StreamBuffer`, 100 streams interleaved, microseconds);
- the model's outputs against soxr's HQ stream (HQ is what the training audio was resampled with):
  per-hop |p_spoof - p_spoof(HQ)| and |p_codec - p_codec(HQ)| (mean, p99, max) and the share of
  hops whose 0.5-threshold verdict differs, over real 8 kHz telephone-band speech (shared
  data `speech/fsdd`) and dev-eval clips taken down to 8 kHz µ-law.

    python benchmarks/resampler.py [--files 40] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from daemon.wire import g711
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import encode_samples
from streaming_models.audio_io import load_audio
from streaming_models.paths import shared_data_dir
from streaming_models.runtime.default_model import packaged_model_path
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.scorer import HopScorer

# (soxr quality, direct FIR for integer upsampling: streams.low_delay_resampling)
VARIANTS = (("HQ", False), ("HQ", True), ("MQ", False), ("LQ", False), ("QQ", False))
SOURCE_RATE_HZ = 8000
MESSAGE_SAMPLES = 160  # 20 ms at 8 kHz
TELEPHONE = AudioFormat("mulaw", SOURCE_RATE_HZ, 1)




def telephone_clips(count: int) -> list[npt.NDArray[np.float32]]:
    """Half real 8 kHz speech (fsdd digits, concatenated to ~4 s clips), half dev-eval clips
    (bona fide and spoofed) taken to 8 kHz µ-law, as a phone call would deliver them."""
    root = shared_data_dir()
    fsdd = sorted((root / "speech/fsdd").rglob("*.wav"))
    dev = sorted(p for p in (root / "dev-eval").rglob("*") if p.suffix in (".wav", ".flac"))
    if not fsdd or not dev:
        raise SystemExit(f"shared data not found under {root} (set SPOOFWATCH_SHARED_DATA)")
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count // 2):
        picks = rng.choice(len(fsdd), 8, replace=False)
        clips.append(np.concatenate([load_audio(fsdd[j], SOURCE_RATE_HZ) for j in picks]))
    for j in rng.choice(len(dev), count - count // 2, replace=False):
        clips.append(load_audio(dev[j], SOURCE_RATE_HZ))
    # through µ-law, as the daemon receives them
    return [g711.decode_mulaw(encode_samples(np.clip(c, -1, 1), TELEPHONE)) for c in clips]


def hop_delays_ms(quality: str, low_delay: bool, model_rate_hz: int, hop_samples: int,
                  seconds: float = 20.0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(1)
    signal = (0.1 * rng.standard_normal(int(seconds * SOURCE_RATE_HZ))).astype(np.float32)
    buffer = StreamBuffer(SOURCE_RATE_HZ, model_rate_hz, hop_samples, max_buffered_s=seconds + 1, quality=quality,
                          low_delay=low_delay)
    input_per_hop = hop_samples * SOURCE_RATE_HZ / model_rate_hz
    delays = []
    for m in range(len(signal) // MESSAGE_SAMPLES):
        buffer.push(signal[m * MESSAGE_SAMPLES:(m + 1) * MESSAGE_SAMPLES])
        for index, _, _ in buffer.pop_hop_spans():
            last_input_message = int(np.ceil((index + 1) * input_per_hop / MESSAGE_SAMPLES)) - 1
            delays.append((m - last_input_message) * 20.0)
    return np.asarray(delays[3:])  # skip the start-up hops


def cpu_us_per_message(quality: str, low_delay: bool, model_rate_hz: int, hop_samples: int,
                       streams: int = 100) -> float:
    rng = np.random.default_rng(2)
    messages = [(0.1 * rng.standard_normal(MESSAGE_SAMPLES)).astype(np.float32) for _ in range(50)]
    buffers = [StreamBuffer(SOURCE_RATE_HZ, model_rate_hz, hop_samples, quality=quality, low_delay=low_delay)
               for _ in range(streams)]
    started = time.process_time()
    for m in range(250):  # 5 s per stream, streams interleaved as in the daemon
        for buffer in buffers:
            buffer.push(messages[m % len(messages)])
            buffer.pop_hop_spans()
    return 1e6 * (time.process_time() - started) / (250 * streams)


def score(backend: OnnxBackend, clip: npt.NDArray[np.float32], quality: str, low_delay: bool) -> npt.NDArray[np.float32]:
    meta = backend.metadata
    buffer = StreamBuffer(SOURCE_RATE_HZ, meta.sample_rate_hz, meta.hop_samples,
                          max_buffered_s=len(clip) / SOURCE_RATE_HZ + 1, quality=quality, low_delay=low_delay)
    for offset in range(0, len(clip), MESSAGE_SAMPLES):
        buffer.push(clip[offset:offset + MESSAGE_SAMPLES])
    buffer.flush()
    [probs] = HopScorer(backend).score_streams([buffer.pop_hops()])
    return probs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=packaged_model_path())
    parser.add_argument("--files", type=int, default=40, help="clips for the model-output comparison")
    args = parser.parse_args()
    backend = OnnxBackend(args.model)
    meta = backend.metadata
    print(f"{SOURCE_RATE_HZ} Hz -> {meta.sample_rate_hz} Hz, hop {meta.hop_samples} samples "
          f"({meta.hop_ms:.0f} ms), 20 ms messages; model {meta.model_id}")
    clips = telephone_clips(args.files)
    reference = [score(backend, clip, "HQ", low_delay=False) for clip in clips]
    print(f"model outputs over {len(clips)} clips, {sum(len(r) for r in reference)} hops, against soxr HQ")
    for quality, low_delay in VARIANTS:
        delays = hop_delays_ms(quality, low_delay, meta.sample_rate_hz, meta.hop_samples)
        cpu = cpu_us_per_message(quality, low_delay, meta.sample_rate_hz, meta.hop_samples)
        diffs, flips = [], 0
        for clip, ref in zip(clips, reference, strict=True):
            probs = score(backend, clip, quality, low_delay)
            n = min(len(probs), len(ref))
            diffs.append(np.abs(probs[:n] - ref[:n]))
            flips += int(np.count_nonzero((probs[:n] >= 0.5) != (ref[:n] >= 0.5)))
        d = np.concatenate(diffs)
        name = f"{quality} direct FIR" if low_delay else f"{quality} soxr stream"
        print(f"{name}: hop completion delay ms p50 {np.percentile(delays, 50):.0f} p99 {np.percentile(delays, 99):.0f} "
              f"max {delays.max():.0f}; CPU {cpu:.1f} us/message; "
              f"|dp_spoof| mean {d[:, 0].mean():.4f} p99 {np.percentile(d[:, 0], 99):.4f} max {d[:, 0].max():.4f}; "
              f"|dp_codec| mean {d[:, 1].mean():.4f} p99 {np.percentile(d[:, 1], 99):.4f} max {d[:, 1].max():.4f}; "
              f"verdicts (0.5) changed {100 * flips / (2 * len(d)):.2f} %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
