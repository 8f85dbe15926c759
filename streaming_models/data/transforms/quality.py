"""Similarity measures between a transform's input and output (tests and benchmarks use them)."""

from __future__ import annotations

import numpy as np

from streaming_models.data.transforms.base import SAMPLE_RATE_HZ


def estimate_lag(reference: np.ndarray, processed: np.ndarray, max_lag: int) -> int:
    """Lag (samples, positive = processed is late) of the waveform cross-correlation peak."""
    n = min(len(reference), len(processed))
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(processed[:n], size) * np.conj(np.fft.rfft(reference[:n], size))
    corr = np.fft.irfft(spectrum, size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[size - max_lag:]])
    return int(lags[int(np.argmax(values))])


def envelope_lag(reference: np.ndarray, processed: np.ndarray, max_lag: int, hop: int = 16) -> int:
    """Lag of the log-energy envelope correlation peak: for codecs that do not keep the waveform."""
    ref, proc = _log_energy(reference, hop), _log_energy(processed, hop)
    n = min(len(ref), len(proc))
    ref, proc = ref[:n] - ref[:n].mean(), proc[:n] - proc[:n].mean()
    best, best_value = 0, -np.inf
    for lag in range(-max_lag // hop, max_lag // hop + 1):
        a = ref[max(0, -lag): n - max(0, lag)]
        b = proc[max(0, lag): n - max(0, -lag)]
        value = float(np.dot(a, b)) / max(len(a), 1)
        if value > best_value:
            best, best_value = lag, value
    return best * hop


def log_mel_correlation(reference: np.ndarray, processed: np.ndarray, num_mels: int = 64,
                        sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """Pearson correlation of 25 ms / 10 ms log-mel spectrograms (over all bins and frames)."""
    n = min(len(reference), len(processed))
    ref = log_mel(reference[:n], num_mels, sample_rate_hz)
    proc = log_mel(processed[:n], num_mels, sample_rate_hz)
    return float(np.corrcoef(ref.ravel(), proc.ravel())[0, 1])


def log_mel(audio: np.ndarray, num_mels: int = 64, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    win, hop, n_fft = int(0.025 * sample_rate_hz), int(0.010 * sample_rate_hz), 512
    if len(audio) < win:
        raise ValueError(f"audio shorter than one {win}-sample window")
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), win)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(win), n_fft, axis=1)) ** 2  # (frames, 257)
    return np.log(power @ _mel_filterbank(num_mels, n_fft, sample_rate_hz).T + 1e-8)  # (frames, mels)


def _mel_filterbank(num_mels: int, n_fft: int, sample_rate_hz: int) -> np.ndarray:
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = to_hz(np.linspace(0.0, to_mel(np.array(sample_rate_hz / 2.0)), num_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    bank = np.zeros((num_mels, len(freqs)))
    for m in range(num_mels):
        low, centre, high = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - low) / max(centre - low, 1e-9)
        falling = (high - freqs) / max(high - centre, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def _log_energy(audio: np.ndarray, hop: int) -> np.ndarray:
    usable = len(audio) // hop * hop
    return np.log(np.mean(audio[:usable].astype(np.float64).reshape(-1, hop) ** 2, axis=1) + 1e-8)
