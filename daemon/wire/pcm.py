"""Payload bytes <-> mono float32 samples for every `AudioFormat` (decode, downmix, encode).

Stdlib + numpy only: the daemon decodes with it, the clients encode with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from daemon.wire import g711
from daemon.wire.frames import AudioFormat

MIN_PAYLOAD_S = 0.010
MAX_PAYLOAD_S = 1.0


class PayloadError(ValueError):
    """A payload that does not fit its stream's format; the message says why."""


def payload_frames(payload: bytes, fmt: AudioFormat) -> int:
    """Frames (samples per channel) in `payload`; raises `PayloadError` unless it is a whole
    number of frames lasting 10 ms .. 1 s."""
    if len(payload) % fmt.bytes_per_frame:
        raise PayloadError(
            f"payload of {len(payload)} bytes is not a multiple of the frame size "
            f"{fmt.bytes_per_frame} ({fmt.encoding}, {fmt.channels} channel(s))"
        )
    frames = len(payload) // fmt.bytes_per_frame
    low = -(-fmt.sample_rate_hz // 100)  # ceil(10 ms); integer math, this runs per message
    high = fmt.sample_rate_hz  # 1 s
    if not low <= frames <= high:
        raise PayloadError(
            f"payload holds {frames} frames = {1000 * frames / fmt.sample_rate_hz:.1f} ms; "
            f"allowed {MIN_PAYLOAD_S * 1000:.0f} ms .. {MAX_PAYLOAD_S * 1000:.0f} ms "
            f"({low}..{high} frames at {fmt.sample_rate_hz} Hz)"
        )
    return frames


def decode_payload(payload: bytes, fmt: AudioFormat) -> npt.NDArray[np.float32]:
    """Validated payload -> mono float32 at the stream's rate (stereo is averaged)."""
    payload_frames(payload, fmt)
    if fmt.encoding == "pcm_s16le":
        samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) * np.float32(1.0 / 32768.0)
    elif fmt.encoding == "pcm_f32le":
        samples = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise PayloadError("pcm_f32le payload contains NaN or infinite samples")
    else:
        samples = g711.decode_mulaw(payload) if fmt.encoding == "mulaw" else g711.decode_alaw(payload)
        if fmt.channels == 1:
            return samples  # a fresh contiguous float32 array from the table lookup
    if fmt.channels == 2:
        samples = samples.reshape(-1, 2).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode_payloads(
    items: Sequence[tuple[bytes, AudioFormat]],
) -> list[npt.NDArray[np.float32] | PayloadError]:
    """`decode_payload` of many payloads at once (an `audio_batch` message): per item the same
    samples, or the `PayloadError` it would raise. Mono G.711 payloads, a gateway's usual traffic,
    are decoded by one table lookup per law for all of them; each result is a view of that array
    (`StreamBuffer` copies what it keeps)."""
    out: list[npt.NDArray[np.float32] | PayloadError] = []
    laws: dict[str, list[int]] = {}
    for index, (payload, fmt) in enumerate(items):
        try:
            if fmt.channels == 1 and fmt.encoding in ("mulaw", "alaw"):
                payload_frames(payload, fmt)
                laws.setdefault(fmt.encoding, []).append(index)
                out.append(_EMPTY)  # filled below
            else:
                out.append(decode_payload(payload, fmt))
        except PayloadError as exc:
            out.append(exc)
    for law, indices in laws.items():
        joined = b"".join([items[i][0] for i in indices])
        samples = g711.decode_mulaw(joined) if law == "mulaw" else g711.decode_alaw(joined)
        start = 0
        for i in indices:
            end = start + len(items[i][0])
            out[i] = samples[start:end]
            start = end
    return out


_EMPTY: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)


def encode_samples(samples: npt.ArrayLike, fmt: AudioFormat) -> bytes:
    """float samples [n] (mono) or [n, channels] in [-1, 1] -> payload bytes of `fmt`."""
    x = np.asarray(samples, dtype=np.float32)
    expected_channels = 1 if x.ndim == 1 else x.shape[1]
    if expected_channels != fmt.channels:
        raise ValueError(f"samples have {expected_channels} channel(s), format has {fmt.channels}")
    flat = x.reshape(-1)  # interleaved
    if fmt.encoding == "pcm_s16le":
        return np.clip(np.round(flat * 32768.0), -32768, 32767).astype("<i2").tobytes()
    if fmt.encoding == "pcm_f32le":
        return flat.astype("<f4").tobytes()
    if fmt.encoding == "mulaw":
        return g711.encode_mulaw(flat)
    return g711.encode_alaw(flat)
