"""Bonafide training speech for the resynthesis models, and random fixed-length crops from it.

Only the training speakers are reachable: sources are names from config.TRAINING_SOURCE_DIRS
(LibriSpeech train-clean-100 and FSDD), never test-other or dev-eval. FSDD clips are shorter than a
crop, so each FSDD speaker's clips are joined into one long recording.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import structlog

from streaming_models.resynthesis.config import SAMPLE_RATE_HZ, TRAINING_SOURCE_DIRS, DataConfig

log = structlog.get_logger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav")
GAP_BETWEEN_JOINED_CLIPS_S = 0.1


class TrainingDataError(RuntimeError):
    """Training audio is missing or unreadable; the message names the folder or file."""




def read_mono_16k(path: Path) -> np.ndarray:
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise TrainingDataError(f"cannot read {path}: {exc}") from exc
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        mono = soxr.resample(mono, rate, SAMPLE_RATE_HZ, quality="HQ")
    return mono.astype(np.float32)


def _source_files(root: Path, max_files: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise TrainingDataError(f"no audio files under {root}")
    return files[:max_files] if max_files > 0 else files


def _fsdd_speaker(path: Path) -> str:
    # FSDD names are DIGIT_SPEAKER_INDEX.wav
    parts = path.stem.split("_")
    return parts[1] if len(parts) == 3 else path.stem


def load_training_audio(cfg: DataConfig, data_dir: Path) -> list[np.ndarray]:
    """One float32 16 kHz array per recording (per FSDD speaker: the joined clips)."""
    recordings: list[np.ndarray] = []
    for source in cfg.sources:
        root = data_dir / TRAINING_SOURCE_DIRS[source]
        if not root.is_dir():
            raise TrainingDataError(f"training source {source!r} not found at {root} "
                                    f"(set SPOOFWATCH_SHARED_DATA to the shared data folder)")
        files = _source_files(root, cfg.max_files_per_source)
        if source == "fsdd":
            gap = np.zeros(int(GAP_BETWEEN_JOINED_CLIPS_S * SAMPLE_RATE_HZ), dtype=np.float32)
            by_speaker: dict[str, list[np.ndarray]] = defaultdict(list)
            for path in files:
                by_speaker[_fsdd_speaker(path)] += [read_mono_16k(path), gap]
            recordings += [np.concatenate(clips) for _, clips in sorted(by_speaker.items())]
        else:
            recordings += [read_mono_16k(path) for path in files]
        log.info("training_source_loaded", source=source, files=len(files))
    return recordings


class CropSampler:
    """Random crops, each recording weighted by its length; peak-normalised to a random level."""

    def __init__(self, recordings: list[np.ndarray], crop_samples: int) -> None:
        usable = [r for r in recordings if r.size >= crop_samples]
        if not usable:
            raise TrainingDataError(f"no training recording is at least {crop_samples} samples long")
        self.recordings = usable
        self.crop_samples = crop_samples
        lengths = np.array([r.size - crop_samples + 1 for r in usable], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    @property
    def total_seconds(self) -> float:
        return sum(r.size for r in self.recordings) / SAMPLE_RATE_HZ

    def batch(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """(batch_size, crop_samples) float32; each crop scaled to a random peak in [0.3, 0.95]."""
        out = np.empty((batch_size, self.crop_samples), dtype=np.float32)
        picks = rng.choice(len(self.recordings), size=batch_size, p=self.weights)
        for row, index in enumerate(picks):
            recording = self.recordings[index]
            start = int(rng.integers(0, recording.size - self.crop_samples + 1))
            crop = recording[start:start + self.crop_samples]
            peak = float(np.abs(crop).max())
            gain = rng.uniform(0.3, 0.95) / peak if peak > 1e-4 else 1.0
            out[row] = crop * gain
        return out
