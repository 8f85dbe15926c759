"""Telephone and VoIP codecs through ffmpeg and sox: encode, decode, realign, back to 16 kHz.

Narrowband codecs run at 8 kHz (the input is resampled with soxr first, as a telephone
front end would), wideband ones at 16 kHz. Each codec's decoder delay was measured by
cross-correlation on the shipped clips (benchmarks/transforms.py prints it) and is removed,
so the output lines up with the input; tests check the alignment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streaming_models.data.transforms.base import (
    SAMPLE_RATE_HZ,
    Objective,
    TransformKind,
    TransformUnavailable,
    check_audio,
    find_binary,
    fit_length,
    resample,
)
from streaming_models.data.transforms.engines import (
    engine_listing,
    from_f32le,
    run_engine,
    to_f32le,
)

FFMPEG_PACKAGE = "ffmpeg"
SOX_PACKAGE = "sox"
SOX_AMR_PACKAGE = "libsox-fmt-all"

G726_BITRATES_K = (16, 24, 32, 40)
OPUS_BITRATE_RANGE_K = (6, 24)
MP3_BITRATES_K = (8, 16, 24, 32, 40, 48, 56, 64)
# AMR-NB modes; sox selects them with -C 0..7
AMR_NB_MODES_K = ("4.75", "5.15", "5.9", "6.7", "7.4", "7.95", "10.2", "12.2")
# codec2 modes -> measured decoder delay at 8 kHz (parametric codec: envelope alignment)
CODEC2_DELAYS = {"3200": 120, "2400": 120, "1600": 120, "1400": 120, "1300": 120, "1200": 120,
                 "700C": 200}
MP3_DELAY_SAMPLES = 1105  # LAME encoder delay (576) + decoder delay (529), no gapless tag on a pipe
G722_DELAY_SAMPLES = 22  # QMF analysis + synthesis filters
AMR_NB_DELAY_SAMPLES = 39


class FfmpegCodec:
    """One codec through `ffmpeg`: f32le PCM -> container bytes -> f32le PCM."""

    kind: TransformKind = "telephony"
    codec_objective: Objective = "compression"

    def __init__(self, name: str, codec_family: str, rate_hz: int, encoder: str,
                 encode_args: Sequence[str], container: str, decode_args: Sequence[str] = (),
                 delay_samples: int = 0, ffmpeg: str = "ffmpeg") -> None:
        self.name = name
        self.codec_family = codec_family
        self.rate_hz = rate_hz
        self.encoder = encoder
        self.encode_args = tuple(encode_args)
        self.container = container
        self.decode_args = tuple(decode_args)  # demuxer options for raw formats (rate, code size)
        self.delay_samples = delay_samples
        self.ffmpeg = ffmpeg
        self._checked = False  # `ffmpeg -encoders` costs ~0.1 s: ask once per instance

    def check_available(self) -> None:
        if self._checked:
            return
        binary = find_binary(self.ffmpeg, FFMPEG_PACKAGE)
        encoders = engine_listing([binary, "-hide_banner", "-encoders"], FFMPEG_PACKAGE)
        if f" {self.encoder} " not in encoders:
            raise TransformUnavailable(
                f"{binary} has no {self.encoder!r} encoder: install the Debian package "
                f"{FFMPEG_PACKAGE!r} (Debian's build has libopus, libgsm, libmp3lame, libcodec2)"
            )
        self._checked = True

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        native = resample(audio, SAMPLE_RATE_HZ, self.rate_hz)
        pcm = ["-f", "f32le", "-ar", str(self.rate_hz), "-ac", "1"]
        quiet = [self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error"]
        encoded = run_engine([*quiet, *pcm, "-i", "pipe:0", *self.encode_args, "-f", self.container,
                              "pipe:1"], to_f32le(native), FFMPEG_PACKAGE)
        decoded = from_f32le(run_engine([*quiet, "-f", self.container, *self.decode_args, "-i", "pipe:0",
                                         *pcm, "pipe:1"], encoded, FFMPEG_PACKAGE))
        decoded = fit_length(decoded, len(native), self.delay_samples)
        return fit_length(resample(decoded, self.rate_hz, SAMPLE_RATE_HZ), len(audio))

    def __repr__(self) -> str:
        return f"FfmpegCodec({self.name!r})"


class SoxAmrNb:
    """AMR-NB through sox's libsox-fmt-all (ffmpeg has only the decoder)."""

    kind: TransformKind = "telephony"
    codec_family = "amr-nb"
    codec_objective: Objective = "compression"
    rate_hz = 8000
    delay_samples = AMR_NB_DELAY_SAMPLES

    def __init__(self, mode_k: str, sox: str = "sox") -> None:
        if mode_k not in AMR_NB_MODES_K:
            raise ValueError(f"AMR-NB mode must be one of {AMR_NB_MODES_K} (kbit/s), got {mode_k!r}")
        self.name = f"amr-nb@{mode_k}k"
        self.compression = AMR_NB_MODES_K.index(mode_k)
        self.sox = sox
        self._checked = False

    def check_available(self) -> None:
        if self._checked:
            return
        binary = find_binary(self.sox, SOX_PACKAGE)
        formats = engine_listing([binary, "-h"], SOX_PACKAGE)
        if "amr-nb" not in formats:
            raise TransformUnavailable(
                f"{binary} cannot write AMR-NB: install the Debian package {SOX_AMR_PACKAGE!r}"
            )
        self._checked = True

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        native = resample(audio, SAMPLE_RATE_HZ, self.rate_hz)
        pcm = ["-t", "f32", "-r", str(self.rate_hz), "-c", "1"]
        encoded = run_engine([self.sox, "-q", *pcm, "-", "-t", "amr-nb", "-C", str(self.compression), "-"],
                             to_f32le(native), SOX_AMR_PACKAGE)
        decoded = from_f32le(run_engine([self.sox, "-q", "-t", "amr-nb", "-", *pcm, "-"], encoded,
                                        SOX_AMR_PACKAGE))
        decoded = fit_length(decoded, len(native), self.delay_samples)
        return fit_length(resample(decoded, self.rate_hz, SAMPLE_RATE_HZ), len(audio))

    def __repr__(self) -> str:
        return f"SoxAmrNb({self.name!r})"


def g711(law: str, ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    if law not in ("mulaw", "alaw"):
        raise ValueError(f"G.711 law must be 'mulaw' or 'alaw', got {law!r}")
    return FfmpegCodec(f"g711-{law}", "g711", 8000, f"pcm_{law}", ["-c:a", f"pcm_{law}"], law,
                       decode_args=["-ar", "8000", "-ac", "1"], ffmpeg=ffmpeg)


def gsm(ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    return FfmpegCodec("gsm", "gsm", 8000, "libgsm", ["-c:a", "libgsm"], "gsm", ffmpeg=ffmpeg)


def g722(ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    return FfmpegCodec("g722", "g722", 16000, "g722", ["-c:a", "g722"], "g722",
                       delay_samples=G722_DELAY_SAMPLES, ffmpeg=ffmpeg)


def g726(bitrate_k: int, ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    if bitrate_k not in G726_BITRATES_K:
        raise ValueError(f"G.726 bitrate must be one of {G726_BITRATES_K} kbit/s, got {bitrate_k}")
    return FfmpegCodec(f"g726@{bitrate_k}k", "g726", 8000, "g726",
                       ["-c:a", "g726", "-b:a", f"{bitrate_k}k"], "g726",
                       decode_args=["-ar", "8000", "-code_size", str(bitrate_k // 8)], ffmpeg=ffmpeg)


def opus(bitrate_k: int, ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    low, high = OPUS_BITRATE_RANGE_K
    if not low <= bitrate_k <= high:
        raise ValueError(f"Opus bitrate must be {low}..{high} kbit/s, got {bitrate_k}")
    # the Ogg pre-skip header lets the decoder drop the encoder delay itself
    return FfmpegCodec(f"opus@{bitrate_k}k", "opus", 16000, "libopus",
                       ["-c:a", "libopus", "-b:a", f"{bitrate_k}k", "-application", "voip"], "ogg",
                       ffmpeg=ffmpeg)


def mp3(bitrate_k: int, ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    if bitrate_k not in MP3_BITRATES_K:
        raise ValueError(f"MP3 bitrate must be one of {MP3_BITRATES_K} kbit/s, got {bitrate_k}")
    return FfmpegCodec(f"mp3@{bitrate_k}k", "mp3", 16000, "libmp3lame",
                       ["-c:a", "libmp3lame", "-b:a", f"{bitrate_k}k"], "mp3",
                       delay_samples=MP3_DELAY_SAMPLES, ffmpeg=ffmpeg)


def codec2(mode: str, ffmpeg: str = "ffmpeg") -> FfmpegCodec:
    if mode not in CODEC2_DELAYS:
        raise ValueError(f"codec2 mode must be one of {tuple(CODEC2_DELAYS)}, got {mode!r}")
    return FfmpegCodec(f"codec2@{mode}", "codec2", 8000, "libcodec2",
                       ["-c:a", "libcodec2", "-mode", mode], "codec2",
                       delay_samples=CODEC2_DELAYS[mode], ffmpeg=ffmpeg)


def amr_nb(mode_k: str, sox: str = "sox") -> SoxAmrNb:
    return SoxAmrNb(mode_k, sox=sox)
