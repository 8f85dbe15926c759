"""A stored audio file (bytes) -> mono float32 at 16 kHz, with its native rate and lossy history.

wav, flac, ogg and mp3 decode through libsndfile; m4a (AAC) and anything libsndfile refuses go
through ffmpeg on a pipe.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

TARGET_RATE_HZ = 16000
_LOSSY = {".mp3": "mp3", ".ogg": "vorbis", ".m4a": "aac"}


class DecodeError(ValueError):
    """The file cannot be decoded; the message says why."""


@dataclass(frozen=True)
class Decoded:
    audio: np.ndarray  # float32 mono at TARGET_RATE_HZ
    native_rate_hz: int
    native_format: str  # "wav/PCM_16", "mp3", ...
    lossy: str  # "none", "mp3", "vorbis", "opus", "aac"
    native_channels: int


def decode(data: bytes, suffix: str) -> Decoded:
    suffix = suffix.lower()
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels, subtype, container = f.samplerate, f.channels, f.subtype, f.format
            audio = f.read(dtype="float32", always_2d=True)
        native_format = f"{container.lower()}/{subtype}"
        lossy = "opus" if subtype == "OPUS" else "vorbis" if subtype == "VORBIS" else \
            "mp3" if container == "MP3" or subtype.startswith("MPEG") else "none"
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        audio, rate, channels = _ffmpeg_decode(data, exc)
        native_format, lossy = suffix.lstrip(".") or "unknown", _LOSSY.get(suffix, "unknown")
    if audio.shape[0] == 0:
        raise DecodeError("no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DecodeError("non-finite samples")
    if rate != TARGET_RATE_HZ:
        mono = soxr.resample(mono, rate, TARGET_RATE_HZ, quality="HQ")
    return Decoded(np.ascontiguousarray(mono, dtype=np.float32), int(rate), native_format, lossy, int(channels))


def _ffmpeg_decode(data: bytes, first_error: Exception) -> tuple[np.ndarray, int, int]:
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                            "stream=sample_rate,channels", "-of", "csv=p=0", "-i", "pipe:0"],
                           input=data, capture_output=True, check=False)
    fields = probe.stdout.decode().strip().split(",")
    if probe.returncode != 0 or len(fields) < 2:
        raise DecodeError(f"neither libsndfile ({first_error}) nor ffmpeg can read it: "
                          f"{probe.stderr.decode(errors='replace').strip()[:200]}")
    rate, channels = int(fields[0]), int(fields[1])
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
                         input=data, capture_output=True, check=False)
    if out.returncode != 0:
        raise DecodeError(f"ffmpeg: {out.stderr.decode(errors='replace').strip()[:200]}")
    audio = np.frombuffer(out.stdout, dtype=np.float32).reshape(-1, channels)
    return audio, rate, channels
