"""Render one planned job into audio files and manifest items (runs inside a worker process).

Every item is resampled to 16 kHz, set to a level drawn per item (so that loudness
is no shortcut between classes), passed through its transform chain, peak-limited
and written as 16-bit FLAC via a temporary name, so a file that exists is complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from streaming_models.data.generators import Generator, make_generator
from streaming_models.data.manifest import CorpusItem
from streaming_models.data.plan import Job, OutputSpec, job_rng

SAMPLE_RATE_HZ = 16000
TransformFactory = Callable[[str], Any]  # spec -> AudioTransform (streaming_models.data.transforms)
GeneratorFactory = Callable[[str, Path], Generator]


def registry_transform(spec: str) -> Any:
    """The real transform registry, imported only when a recipe uses transforms."""
    from streaming_models.data.transforms import get_transform

    return get_transform(spec)


@dataclass(frozen=True)
class RenderConfig:
    out_dir: Path
    seed: int
    cache_dir: Path
    max_item_s: float
    level_dbfs: tuple[float, float]
    transform_factory: TransformFactory = registry_transform
    generator_factory: GeneratorFactory = make_generator


def audio_relpath(job: Job, output: OutputSpec) -> str:
    return f"audio/{job.split}/{job.generator}/{output.item_id}.flac"


def to_mono_16k(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sample_rate_hz != SAMPLE_RATE_HZ:
        audio = soxr.resample(audio, sample_rate_hz, SAMPLE_RATE_HZ, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def set_level(audio: np.ndarray, target_dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms < 1e-6:
        return audio
    return (audio * (10 ** (target_dbfs / 20) / rms)).astype(np.float32)


def peak_limit(audio: np.ndarray, ceiling: float = 0.98) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if peak <= ceiling else (audio * (ceiling / peak)).astype(np.float32)


def write_flac_atomic(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.flac")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), SAMPLE_RATE_HZ, subtype="PCM_16", format="FLAC")
    tmp.replace(path)


def codec_labels(transforms: list[Any]) -> tuple[str, str, str]:
    """(codec, codec_family, codec_objective) of a chain: a neural codec wins over a telephone codec."""
    for kind in ("neural", "telephony"):
        for t in transforms:
            if t.kind == kind:
                return kind, t.codec_family, t.codec_objective
    return "none", "none", "none"


class Renderer:
    """Holds the engines and transforms one worker has loaded, so each loads once per process."""

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self._generators: dict[str, Generator] = {}
        self._transforms: dict[str, Any] = {}

    def generator(self, family: str) -> Generator:
        if family not in self._generators:
            self._generators[family] = self.config.generator_factory(family, self.config.cache_dir)
        return self._generators[family]

    def transform(self, spec: str) -> Any:
        if spec not in self._transforms:
            self._transforms[spec] = self.config.transform_factory(spec)
        return self._transforms[spec]

    def _read_source(self, path: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 1.0:  # a few float Ogg files decode far beyond full scale (klettres tn/alpha/k.ogg: 44)
            audio = audio / peak
        limit = int(self.config.max_item_s * sr)
        if audio.size > limit:
            start = int(rng.integers(0, audio.size - limit + 1))
            audio = audio[start:start + limit]
        return audio, int(sr)

    def _read_joined(self, paths: tuple[str, ...], rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Clips at 16 kHz with a natural pause between them, cut to max_item_s."""
        parts: list[np.ndarray] = []
        for i, path in enumerate(paths):
            if i:
                parts.append(np.zeros(int(SAMPLE_RATE_HZ * rng.uniform(0.15, 0.5)), np.float32))
            audio, sr = sf.read(path, dtype="float32", always_2d=True)
            parts.append(to_mono_16k(audio.mean(axis=1), int(sr)))
        joined = np.concatenate(parts)
        return joined[: int(self.config.max_item_s * SAMPLE_RATE_HZ)], SAMPLE_RATE_HZ

    def base_audio(self, job: Job, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        if job.kind == "bonafide":
            assert job.audio_path is not None
            if not job.joined_paths:
                return self._read_source(job.audio_path, rng)
            return self._read_joined((job.audio_path, *job.joined_paths), rng)
        generator = self.generator(job.generator)
        if job.kind == "tts":
            assert job.text is not None and job.voice is not None
            return generator.synthesize(job.text, job.voice, rng)  # type: ignore[union-attr]
        assert job.audio_path is not None
        audio, sr = self._read_source(job.audio_path, rng)
        return generator.resynthesize(audio, sr, rng)  # type: ignore[union-attr]

    def run(self, job: Job) -> list[CorpusItem]:
        rng = job_rng(self.config.seed, job.job_id)
        raw, native_rate_hz = self.base_audio(job, rng)
        base = to_mono_16k(raw, native_rate_hz)
        items = []
        for output in job.outputs:
            out_rng = job_rng(self.config.seed, f"render:{output.item_id}")
            transforms = [self.transform(spec) for spec in output.transforms]
            audio = set_level(base, float(out_rng.uniform(*self.config.level_dbfs)))
            for t in transforms:
                audio = np.asarray(t.apply(audio, out_rng), dtype=np.float32)
            audio = peak_limit(audio)
            rel = audio_relpath(job, output)
            write_flac_atomic(self.config.out_dir / rel, audio)
            codec, family, objective = codec_labels(transforms)
            extra = {"native_rate_hz": str(native_rate_hz), "job": job.job_id}
            if job.joined_paths:
                extra["native_rate_hz"] = str(sf.info(job.audio_path).samplerate)
                extra["joined_clips"] = str(1 + len(job.joined_paths))
            if job.text is not None:
                extra["text"] = job.text
            if job.voice is not None:
                extra["voice"] = job.voice.voice_id
            items.append(CorpusItem(
                path=rel, source=job.source, generator=job.generator, codec=codec,  # type: ignore[arg-type]
                codec_family=family, codec_objective=objective, channel=output.transforms,  # type: ignore[arg-type]
                speaker=job.speaker, language=job.language, split=job.split,
                parent=job.parent if output.item_id == job.job_id else job.job_id,
                duration_s=round(audio.size / SAMPLE_RATE_HZ, 4), sample_rate_hz=SAMPLE_RATE_HZ,
                corpus=job.corpus, item_id=output.item_id, extra=extra,
            ))
        return items
