"""Find copies of one recording: the same samples, or the same waveform re-encoded.

Demo pages re-host each other's clips, sometimes re-encoded (another md5, other bytes). A copy
keeps the waveform: after alignment it correlates with the original above `min_correlation`.
A vocoded or codec-resynthesized rendering of the same sentence keeps the envelope but not the
phase, so it stays: those are distinct training items, not copies. A waveform-preserving codec
at a high bitrate can keep the phase too, so a near copy must also be of the same kind (class
and codec) to count; the same samples under two kinds are a labelling conflict, reported as such.
Within one repository only exact copies are dropped, since a page's renderings of one sentence
are meant to sit side by side.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

RATE_HZ = 16000
_ENV_FRAME = 320  # 20 ms
_BIN_S = 0.02


def exact_hash(audio: np.ndarray) -> str:
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    return hashlib.sha1(pcm.tobytes()).hexdigest()


def _envelope(audio: np.ndarray) -> np.ndarray:
    n = len(audio) // _ENV_FRAME
    frames = audio[: n * _ENV_FRAME].reshape(n, _ENV_FRAME)
    return np.log(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)


def _normalized(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    norm = np.linalg.norm(x)
    return x / norm if norm > 0 else x


def middle_excerpt(audio: np.ndarray, excerpt: int = 32000) -> np.ndarray:
    mid = len(audio) // 2
    half = min(excerpt // 2, mid)
    return audio[mid - half: mid + half]


def excerpt_correlation(excerpt: np.ndarray, b: np.ndarray, max_lag: int = 1600) -> float:
    """Peak normalized cross-correlation of a clip's middle excerpt with clip b, near b's middle."""
    if len(excerpt) < 1600:
        return 0.0
    xa = _normalized(excerpt.astype(np.float64))
    mid_b, half = len(b) // 2, len(excerpt) // 2
    lo, hi = max(0, mid_b - half - max_lag), min(len(b), mid_b + half + max_lag)
    xb = b[lo:hi].astype(np.float64)
    if len(xb) < len(xa):
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(xa) + len(xb))))
    corr = np.fft.irfft(np.fft.rfft(xb, size) * np.conj(np.fft.rfft(xa, size)), size)[: len(xb) - len(xa) + 1]
    cumulative = np.concatenate(([0.0], np.cumsum(xb ** 2)))
    energy = np.sqrt(np.maximum(cumulative[len(xa):] - cumulative[: len(xb) - len(xa) + 1], 0.0))
    return float(np.max(np.abs(corr) / np.maximum(energy, 1e-12)))


def waveform_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """How well b copies a's waveform (1.0 = the same samples, up to a shift and a gain)."""
    return excerpt_correlation(middle_excerpt(a), b)


def _envelope_correlation(a: np.ndarray, b: np.ndarray, max_shift: int) -> float:
    """Best correlation of two log-energy envelopes over shifts of up to max_shift frames."""
    best = -1.0
    for shift in range(-max_shift, max_shift + 1):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        n = min(len(x), len(y))
        if n >= 10:
            best = max(best, float(np.dot(_normalized(x[:n]), _normalized(y[:n]))))
    return best


ANY_KIND = ""  # an entry that every kind copies (dev-eval's files: any copy of them is held out)


@dataclass(frozen=True)
class Copy:
    key: str  # the earlier clip's key
    conflicting: bool  # the same samples under another kind (class or codec): a labelling conflict


@dataclass
class _Entry:
    key: str
    group: str
    kind: str
    length: int
    excerpt: np.ndarray  # only the middle is kept: a corpus of hours stays small in memory
    envelope: np.ndarray


@dataclass
class DuplicateIndex:
    """Add clips one by one; `find` says which earlier clip (if any) a new one copies."""

    min_correlation: float = 0.9
    max_length_diff_s: float = 0.15  # codec padding: an MP3 round trip adds ~0.1 s
    min_envelope_correlation: float = 0.8
    _exact: dict[str, tuple[str, str]] = field(default_factory=dict)  # sample hash -> (key, kind)
    _bins: dict[int, list[_Entry]] = field(default_factory=lambda: defaultdict(list))

    def find(self, audio: np.ndarray, group: str, kind: str = ANY_KIND) -> Copy | None:
        """An earlier copy of `audio`: the same samples anywhere, or a re-encoding of the same kind in
        another group."""
        digest = exact_hash(audio)
        if digest in self._exact:
            key, earlier_kind = self._exact[digest]
            return Copy(key, ANY_KIND not in (kind, earlier_kind) and kind != earlier_kind)
        seconds = len(audio) / RATE_HZ
        reach = int(np.ceil(self.max_length_diff_s / _BIN_S))
        center = int(seconds / _BIN_S)
        candidates = [e for b in range(center - reach, center + reach + 1) for e in self._bins.get(b, ())
                      if e.group != group and abs(e.length - len(audio)) <= self.max_length_diff_s * RATE_HZ
                      and (ANY_KIND in (e.kind, kind) or e.kind == kind)]
        if not candidates:
            return None
        envelope = _envelope(audio)
        max_shift = int(np.ceil(self.max_length_diff_s * RATE_HZ / _ENV_FRAME))
        for entry in candidates:
            if _envelope_correlation(envelope, entry.envelope, max_shift) < self.min_envelope_correlation:
                continue
            if excerpt_correlation(entry.excerpt, audio) >= self.min_correlation:
                return Copy(entry.key, False)
        return None

    def add(self, audio: np.ndarray, key: str, group: str, kind: str = ANY_KIND) -> None:
        self._exact.setdefault(exact_hash(audio), (key, kind))
        entry = _Entry(key, group, kind, len(audio), middle_excerpt(audio).copy(), _envelope(audio))
        self._bins[int(len(audio) / RATE_HZ / _BIN_S)].append(entry)
