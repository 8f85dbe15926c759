"""Prototype for docs/architecture.md, option 4: the per-message audio path compiled, one call per tick.

What a gateway's `audio_batch` costs the daemon per stream-message in µ-law decode and the
low-delay FIR upsampler (8 -> 16 kHz, soxr's HQ taps), done (a) as the daemon does it today,
`decode_payload` + `StreamBuffer.push` + `pop_hop_spans` per message, and (b) by one C function
(compiled here with gcc -O3 -march=native, no fast-math) that decodes and filters every stream's 20 ms in one
call, keeping each stream's filter history in a C-side array. It also checks that (b) produces
the same samples as `SoxrFirUpsampler` fed the same messages. Hop cutting and everything after
it are not in (b): this measures what compiling the per-sample work would save, not a daemon.

    python benchmarks/ingest_c_prototype.py [--streams 1000] [--seconds 5]

The prototype that led to the built path: StreamBuffer's compiled per-message path
(streaming_models/runtime/_fastpath.c); `benchmarks/ingest_cost.py --paths` measures that one.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from daemon.wire import g711
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import decode_payload, encode_samples
from streaming_models.runtime.hops import StreamBuffer
from streaming_models.runtime.resample import SoxrFirUpsampler, polyphase_taps

FORMAT = AudioFormat("mulaw", 8000, 1)
MESSAGE = 160  # 20 ms at 8 kHz
RATIO = 2

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* For each stream s: decode n mu-law codes, append them to its history (hist_len[s] <= 2K
   samples kept from earlier calls), and write the FIR output of every input whose 2K+1
   neighbourhood is complete: out[s][R*i + p] = sum_j window[i + j] * rtaps[p][j]. */
void ulaw_fir_batch(int nstreams, int n, const uint8_t *codes, const float *table,
                    float *hist, int *hist_len, const float *rtaps, int R, int K,
                    float *out, int *out_len) {
    const int L = 2 * K + 1, H = 2 * K;
    float window[H + n];
    for (int s = 0; s < nstreams; s++) {
        int h = hist_len[s];
        memcpy(window, hist + (long)s * H, sizeof(float) * h);
        const uint8_t *c = codes + (long)s * n;
        for (int i = 0; i < n; i++) window[h + i] = table[c[i]];
        int total = h + n, ready = total - H;
        float *o = out + (long)s * n * R;
        if (ready <= 0) {
            memcpy(hist + (long)s * H, window, sizeof(float) * total);
            hist_len[s] = total;
            out_len[s] = 0;
            continue;
        }
        float acc[ready];
        for (int p = 0; p < R; p++) {
            const float *t = rtaps + (long)p * L;
            for (int i = 0; i < ready; i++) acc[i] = 0.0f;
            for (int j = 0; j < L; j++) {  /* the inner loop runs along the outputs: vectorised */
                const float tap = t[j], *w = window + j;
                for (int i = 0; i < ready; i++) acc[i] += w[i] * tap;
            }
            for (int i = 0; i < ready; i++) o[(long)i * R + p] = acc[i];
        }
        memcpy(hist + (long)s * H, window + ready, sizeof(float) * H);
        hist_len[s] = H;
        out_len[s] = ready * R;
    }
}
"""


class CompiledBatch:
    """The C function with its per-stream state (filter history) for `streams` streams."""

    def __init__(self, streams: int, workdir: Path) -> None:
        source, library = workdir / "ulaw_fir.c", workdir / "ulaw_fir.so"
        source.write_text(C_SOURCE)
        subprocess.run(["gcc", "-O3", "-march=native", "-shared", "-fPIC", "-o", str(library),
                        str(source)], check=True)
        self._function = ctypes.CDLL(str(library)).ulaw_fir_batch
        taps, self.half = polyphase_taps(FORMAT.sample_rate_hz, RATIO, "HQ")
        self._rtaps = np.ascontiguousarray(taps[:, ::-1], dtype=np.float32)
        self._table = np.ascontiguousarray(g711._float_table("mulaw"))
        self.streams = streams
        self._hist = np.zeros((streams, 2 * self.half), dtype=np.float32)
        self._hist_len = np.full(streams, self.half, dtype=np.int32)  # K zeros first, as SoxrFirUpsampler
        self.out = np.zeros((streams, MESSAGE * RATIO), dtype=np.float32)
        self.out_len = np.zeros(streams, dtype=np.int32)

    def __call__(self, codes: npt.NDArray[np.uint8]) -> None:
        """codes [streams, MESSAGE] -> self.out / self.out_len."""
        pointer = ctypes.c_void_p
        self._function(ctypes.c_int(self.streams), ctypes.c_int(MESSAGE), pointer(codes.ctypes.data),
                       pointer(self._table.ctypes.data), pointer(self._hist.ctypes.data),
                       pointer(self._hist_len.ctypes.data), pointer(self._rtaps.ctypes.data), ctypes.c_int(RATIO),
                       ctypes.c_int(self.half), pointer(self.out.ctypes.data), pointer(self.out_len.ctypes.data))


def payloads_for(streams: int, messages: int) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal(MESSAGE * messages)).astype(np.float32)
    codes = np.frombuffer(encode_samples(audio, FORMAT), dtype=np.uint8).reshape(messages, MESSAGE)
    return np.ascontiguousarray(np.repeat(codes[:, None, :], streams, axis=1))  # [message, stream, MESSAGE]


def same_samples(codes: npt.NDArray[np.uint8], compiled: CompiledBatch) -> float:
    """Largest |C - SoxrFirUpsampler| over every stream's output, message by message."""
    upsamplers = [SoxrFirUpsampler(FORMAT.sample_rate_hz, RATIO, "HQ") for _ in range(compiled.streams)]
    worst = 0.0
    for tick in codes:
        compiled(tick)
        for s, upsampler in enumerate(upsamplers):
            expected = upsampler.resample_chunk(decode_payload(tick[s].tobytes(), FORMAT))
            got = compiled.out[s, :compiled.out_len[s]]
            assert got.shape == expected.shape, (got.shape, expected.shape)
            worst = max(worst, float(np.abs(got - expected).max()) if got.size else 0.0)
    return worst


def python_path_us(codes: npt.NDArray[np.uint8]) -> float:
    streams = codes.shape[1]
    buffers = [StreamBuffer(FORMAT.sample_rate_hz, 16000, 1600, quality="HQ") for _ in range(streams)]
    payloads = [[tick[s].tobytes() for s in range(streams)] for tick in codes]
    started = time.thread_time()
    for k, tick in enumerate(payloads):
        for s, payload in enumerate(tick):
            buffers[s].push(decode_payload(payload, FORMAT), k)
            buffers[s].pop_hop_spans()
    return 1e6 * (time.thread_time() - started) / (len(payloads) * streams)


def compiled_us(codes: npt.NDArray[np.uint8], workdir: Path) -> float:
    compiled = CompiledBatch(codes.shape[1], workdir)
    started = time.thread_time()
    for tick in codes:
        compiled(tick)
    return 1e6 * (time.thread_time() - started) / (codes.shape[0] * codes.shape[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    codes = payloads_for(args.streams, int(args.seconds * 50))
    with tempfile.TemporaryDirectory() as tmp:
        worst = same_samples(payloads_for(8, 50), CompiledBatch(8, Path(tmp)))
        print(f"C output vs SoxrFirUpsampler: max |difference| {worst:.2e} over 8 streams x 1 s")
        for _ in range(args.rounds):
            python = python_path_us(codes)
            compiled = compiled_us(codes, Path(tmp))
            print(f"{args.streams} streams x {args.seconds:.0f} s: decode + FIR (+ hop cutting) in Python "
                  f"{python:.2f} us per stream-message; one C call per tick {compiled:.2f} us", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
