"""Plain channel effects: band-limiting, gain, additive noise at an SNR, room reverberation, RNNoise."""

from __future__ import annotations

from typing import Any

import numpy as np

from streaming_models.data.transforms.base import (
    SAMPLE_RATE_HZ,
    Objective,
    TransformKind,
    TransformUnavailable,
    check_audio,
    fit_length,
    resample,
)

NOISE_COLOURS = ("white", "pink", "brown", "babble")
BANDLIMIT_RATES_HZ = {"8k": 8000, "11k": 11025, "12k": 12000}
RNNOISE_RATE_HZ = 48000
RNNOISE_DELAY_SAMPLES = 960  # two 10 ms frames at 48 kHz (window overlap + lookahead), measured by benchmarks/transforms.py
INT16_SCALE = 32768.0
REVERB_RT60_RANGE_S = (0.05, 2.0)
REVERB_DRR_DB = 5.0  # a talker about a metre from the microphone in a small room


class _ChannelEffect:
    kind: TransformKind = "channel"
    codec_family = "none"
    codec_objective: Objective = "none"
    name: str

    def check_available(self) -> None:
        """Plain numpy/soxr effects need nothing beyond the base dependencies."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class BandLimit(_ChannelEffect):
    """Down to a narrow rate and back to 16 kHz: drops everything above rate/2."""

    def __init__(self, rate: str = "8k") -> None:
        if rate not in BANDLIMIT_RATES_HZ:
            raise ValueError(f"band-limit rate must be one of {sorted(BANDLIMIT_RATES_HZ)}, got {rate!r}")
        self.name = f"bandlimit@{rate}"
        self.rate_hz = BANDLIMIT_RATES_HZ[rate]

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        narrow = resample(audio, SAMPLE_RATE_HZ, self.rate_hz)
        return fit_length(resample(narrow, self.rate_hz, SAMPLE_RATE_HZ), len(audio))


class Gain(_ChannelEffect):
    """A fixed gain in dB; the result is clipped to [-1, 1] as a 16-bit path would."""

    def __init__(self, gain_db: float) -> None:
        if not -40.0 <= gain_db <= 30.0:
            raise ValueError(f"gain must be within -40..30 dB, got {gain_db}")
        self.gain_db = gain_db
        self.name = f"gain@{gain_db:g}dB"

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        return np.clip(audio * np.float32(10.0 ** (self.gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


class AdditiveNoise(_ChannelEffect):
    """Generated noise added at an SNR over the active (non-silent) part of the signal.

    colour "any" draws the colour from the rng at each call.
    """

    def __init__(self, snr_db: float, colour: str = "any") -> None:
        if colour not in (*NOISE_COLOURS, "any"):
            raise ValueError(f"noise colour must be one of {(*NOISE_COLOURS, 'any')}, got {colour!r}")
        if not -10.0 <= snr_db <= 60.0:
            raise ValueError(f"SNR must be within -10..60 dB, got {snr_db}")
        self.snr_db = snr_db
        self.colour = colour
        prefix = "noise" if colour == "any" else f"noise-{colour}"
        self.name = f"{prefix}@{snr_db:g}dB"

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        colour = self.colour if self.colour != "any" else str(rng.choice(NOISE_COLOURS))
        noise = generate_noise(colour, len(audio), rng)
        signal_power = active_power(audio)
        noise_power = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
        scale = np.sqrt(signal_power / noise_power / 10.0 ** (self.snr_db / 10.0))
        return np.clip(audio + scale * noise, -1.0, 1.0).astype(np.float32)


class Reverb(_ChannelEffect):
    """A synthetic room (`room_impulse_response`) of a given reverberation time, at a fixed
    direct-to-reverberant ratio; the output keeps the input's active level."""

    def __init__(self, rt60_s: float, drr_db: float = REVERB_DRR_DB) -> None:
        if not REVERB_RT60_RANGE_S[0] <= rt60_s <= REVERB_RT60_RANGE_S[1]:
            raise ValueError(f"reverberation time must be within {REVERB_RT60_RANGE_S} s, got {rt60_s}")
        self.rt60_s = rt60_s
        self.drr_db = drr_db
        self.name = f"reverb@{rt60_s:g}s"

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        response = room_impulse_response(self.rt60_s, self.drr_db, rng)
        size = len(audio) + len(response) - 1
        wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(response, size), size)[: len(audio)]
        wet *= np.sqrt(active_power(audio) / active_power(wet))
        return np.clip(wet, -1.0, 1.0).astype(np.float32)


def room_impulse_response(rt60_s: float, drr_db: float, rng: np.random.Generator,
                          rate: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A statistical room impulse response: a direct path, then after a 2-10 ms gap a diffuse tail of
    Gaussian noise decaying by 60 dB in `rt60_s` below 1.5 kHz and faster above (air and walls absorb
    high frequencies more), scaled so that direct / tail energy is `drr_db`. Polack's model of the
    late reverberation; no early-reflection geometry, which a detector should not learn either."""
    length = int(min(1.2 * rt60_s, 1.0) * rate)
    gap = int(rng.uniform(0.002, 0.010) * rate)
    time = np.arange(length - gap) / rate
    noise = np.fft.rfft(rng.standard_normal(length - gap))
    low_band = np.fft.rfftfreq(length - gap, 1.0 / rate) < 1500.0
    low = np.fft.irfft(noise * low_band, length - gap)
    high = np.fft.irfft(noise * ~low_band, length - gap)
    high_rt60_s = rt60_s * rng.uniform(0.4, 0.8)
    tail = low * 10.0 ** (-3.0 * time / rt60_s) + high * 10.0 ** (-3.0 * time / high_rt60_s)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(tail ** 2) + 1e-20))
    response = np.zeros(length)
    response[0] = 1.0
    response[gap:] = tail
    return response


class RNNoiseDenoiser(_ChannelEffect):
    """RNNoise (pyrnnoise) at 48 kHz, as WebRTC/conferencing stacks apply it before encoding."""

    name = "rnnoise"

    def check_available(self) -> None:
        _rnnoise_lib()

    def apply(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        audio = check_audio(audio)
        rnnoise = _rnnoise_lib()
        frame = int(rnnoise.FRAME_SIZE)
        wide = resample(audio, SAMPLE_RATE_HZ, RNNOISE_RATE_HZ) * INT16_SCALE
        # one extra frame flushes the internal delay out of the denoiser
        num_frames = -(-len(wide) // frame) + 1
        buffer = np.zeros(num_frames * frame, np.float32)
        buffer[: len(wide)] = wide
        state = rnnoise.create()
        try:
            import ctypes

            pointer_type = ctypes.POINTER(ctypes.c_float)
            for start in range(0, len(buffer), frame):
                chunk = buffer[start:start + frame]  # a view: processed in place
                pointer = chunk.ctypes.data_as(pointer_type)
                rnnoise.lib.rnnoise_process_frame(state, pointer, pointer)
        finally:
            rnnoise.destroy(state)
        denoised = fit_length(buffer / INT16_SCALE, len(wide), RNNOISE_DELAY_SAMPLES)
        return np.clip(fit_length(resample(denoised, RNNOISE_RATE_HZ, SAMPLE_RATE_HZ), len(audio)),
                       -1.0, 1.0).astype(np.float32)


def _rnnoise_lib() -> Any:
    try:
        from pyrnnoise import rnnoise
    except (ImportError, OSError) as exc:
        raise TransformUnavailable(
            "RNNoise needs the PyPI package 'pyrnnoise' (pip install 'spoofwatch[train]')"
        ) from exc
    return rnnoise


def active_power(audio: np.ndarray, frame: int = 320, floor_db: float = -30.0) -> float:
    """Mean power over 20 ms frames within `floor_db` of the loudest one (speech-active level)."""
    usable = len(audio) // frame * frame
    if usable == 0:
        return float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12
    powers = np.mean(audio[:usable].astype(np.float64).reshape(-1, frame) ** 2, axis=1)
    active = powers[powers >= powers.max() * 10.0 ** (floor_db / 10.0)]
    return float(active.mean()) + 1e-12


def generate_noise(colour: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise of a colour; "babble" is several speech-shaped, syllable-modulated talkers."""
    if colour == "white":
        noise = rng.standard_normal(num_samples)
    elif colour in ("pink", "brown"):
        noise = _spectral_noise(num_samples, rng, exponent=1.0 if colour == "pink" else 2.0)
    elif colour == "babble":
        noise = _babble(num_samples, rng)
    else:
        raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")
    noise = noise - noise.mean()
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def _spectral_noise(num_samples: int, rng: np.random.Generator, exponent: float,
                    band_hz: tuple[float, float] = (20.0, 8000.0)) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent inside band_hz."""
    size = 1 << int(np.ceil(np.log2(max(num_samples, 2))))  # power of two: fast FFT for any length
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE_HZ)
    shape = np.zeros_like(freqs)
    inside = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    shape[inside] = freqs[inside] ** (-exponent / 2.0)
    return np.fft.irfft(spectrum * shape, n=size)[:num_samples]


def _babble(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    talkers = int(rng.integers(4, 9))
    total = np.zeros(num_samples)
    for _ in range(talkers):
        voice = _spectral_noise(num_samples, rng, exponent=1.0, band_hz=(100.0, 4000.0))
        # syllabic envelope: low-passed noise around 2-6 Hz, rectified and sharpened
        rate_hz = rng.uniform(2.0, 6.0)
        envelope = _spectral_noise(num_samples, rng, exponent=0.0, band_hz=(0.5, rate_hz))
        envelope = np.maximum(envelope / (envelope.std() + 1e-12), 0.0) ** 1.5
        total += voice / (voice.std() + 1e-12) * envelope
    return total
