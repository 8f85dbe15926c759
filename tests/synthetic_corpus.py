"""Synthetic training/evaluation fixtures with a spectral difference a tiny model can learn.

bonafide: a harmonic 'voice' (120-220 Hz, vibrato) plus faint noise, full band.
spoof:    the same plus a loud 2.5-3.5 kHz noise band (a stand-in vocoder artefact that
          survives the codec's band limit).
neural codec: the clip with everything above 4 kHz removed (a stand-in band limit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from streaming_models.data.manifest import CorpusItem, write_manifest

RATE = 16000


def voice(rng: np.random.Generator, seconds: float, spoof: bool, codec: bool) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(120, 220) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 4) * t)) + 0.05 * rng.standard_normal(t.size)
    if spoof:
        band = np.fft.rfft(rng.standard_normal(t.size))
        freqs = np.fft.rfftfreq(t.size, 1 / RATE)
        band[(freqs < 2500) | (freqs > 3500)] = 0
        band = np.fft.irfft(band, n=t.size)
        x = x + 2.0 * band / band.std()
    if codec:
        spec = np.fft.rfft(x)
        spec[int(4000 * x.size / RATE):] = 0
        x = np.fft.irfft(spec, n=x.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def write_corpus(folder: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Manifest with train and dev items of every (source, codec) combination; returns its path."""
    rng = np.random.default_rng(seed)
    items = []
    for split, n in (("train", per_class), ("dev", max(3, per_class // 3))):
        for source in ("bonafide", "spoof"):
            for codec in ("none", "neural"):
                for k in range(n):
                    name = f"{split}_{source}_{codec}_{k}"
                    sf.write(folder / f"{name}.wav", voice(rng, rng.uniform(1.2, 3.0), source == "spoof",
                                                          codec == "neural"), RATE)
                    items.append(CorpusItem(
                        path=f"{name}.wav", source=source, generator="human" if source == "bonafide" else "buzz",
                        codec=codec, codec_family="lowpass" if codec == "neural" else "none",
                        codec_objective="compression" if codec == "neural" else "none",
                        split=split, corpus="synthetic", item_id=name))  # type: ignore[arg-type]
    write_manifest(folder / "manifest.jsonl", items)
    return folder / "manifest.jsonl"
