"""A stored audio file (bytes) -> mono float32 at 16 kHz, with its native rate and lossy history.

wav, flac, ogg and mp3 decode through libsndfile; m4a (AAC) and anything libsndfile refuses go
through ffmpeg (from a temporary file: an MP4 may keep its index at the end).
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

TARGET_RATE_HZ = 16000
_LOSSY_CODECS = ("mp3", "aac", "vorbis", "opus")


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
        audio, rate, channels, codec = _ffmpeg_decode(data, exc)
        native_format = f"ffmpeg/{codec}"
        lossy = codec if codec in _LOSSY_CODECS else "none" if codec.startswith(("pcm", "flac", "alac")) else codec
    if audio.shape[0] == 0:
        raise DecodeError("no samples")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DecodeError("non-finite samples")
    if rate != TARGET_RATE_HZ:
        mono = soxr.resample(mono, rate, TARGET_RATE_HZ, quality="HQ")
    return Decoded(np.ascontiguousarray(mono, dtype=np.float32), int(rate), native_format, lossy, int(channels))


def _ffmpeg_decode(data: bytes, first_error: Exception) -> tuple[np.ndarray, int, int, str]:
    """Samples, rate, channels and the stream's codec name as ffprobe gives it."""
    # a file, not a pipe: an MP4/M4A whose index sits at its end needs seeking
    with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
        tmp.write(data)
        tmp.flush()
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                                "stream=codec_name,sample_rate,channels", "-of", "csv=p=0", tmp.name],
                               capture_output=True, check=False)
        fields = probe.stdout.decode().strip().split(",")
        if probe.returncode != 0 or len(fields) < 3 or not fields[1].isdigit() or not fields[2].isdigit():
            raise DecodeError(f"neither libsndfile ({first_error}) nor ffmpeg can read it: "
                              f"{probe.stderr.decode(errors='replace').strip()[:200]}")
        codec, rate, channels = fields[0], int(fields[1]), int(fields[2])
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", tmp.name, "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"],
                             capture_output=True, check=False)
    if out.returncode != 0:
        raise DecodeError(f"ffmpeg: {out.stderr.decode(errors='replace').strip()[:200]}")
    audio = np.frombuffer(out.stdout, dtype=np.float32).reshape(-1, channels)
    return audio, rate, channels, codec
