"""Audio on the wire: the encodings, rates and channel counts a sender may declare (`AudioFormat`).

Adapters decode their transport at the edge (`pcm.py`, `g711.py`) into the stream API's
`AudioChunk`s (daemon/stream_api.py): mono float32 samples at the stream's source rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Encoding = Literal["pcm_s16le", "pcm_f32le", "mulaw", "alaw"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000
MAX_CHANNELS = 2
_BYTES_PER_SAMPLE = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}


@dataclass(frozen=True)
class AudioFormat:
    encoding: Encoding
    sample_rate_hz: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if not MIN_SAMPLE_RATE_HZ <= self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise ValueError(
                f"sample rate must be {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz, got {self.sample_rate_hz}"
            )
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")

    @property
    def bytes_per_sample(self) -> int:
        return _BYTES_PER_SAMPLE[self.encoding]

    @property
    def bytes_per_frame(self) -> int:
        return self.bytes_per_sample * self.channels
