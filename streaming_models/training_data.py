"""Training batches: clips held in memory, a class-balanced sampler, random crops, augmentation.

Kept apart from train.py so the script reads as a loop; nothing here knows about the model
except the hop size it crops to.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streaming_models.audio_io import load_audio
from streaming_models.data.labels import Policy, targets
from streaming_models.data.manifest import CorpusItem, resolve_audio_path


@dataclass(frozen=True)
class Clip:
    item: CorpusItem
    audio: np.ndarray  # int16 at the model rate: half the memory of float32
    spoof: int
    codec: int


def load_clips(manifest: Path, items: Sequence[CorpusItem], policy: Policy, sample_rate_hz: int,
               desc: str) -> list[Clip]:
    clips = []
    for item in tqdm(items, desc=desc, unit="file", leave=False):
        audio = load_audio(resolve_audio_path(manifest, item), sample_rate_hz)
        pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
        clips.append(Clip(item, pcm, *targets(item, policy)))
    return clips


def balance_group(clip: Clip) -> tuple[object, ...]:
    """What the sampler balances: generator, codec family and the first channel stage."""
    channel = clip.item.channel[0].split("@")[0] if clip.item.channel else "clean"
    return (clip.spoof, clip.codec, clip.item.generator, clip.item.codec_family, channel)


def sampling_weights(clips: Sequence[Clip], generator_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Each (spoof, codec) target pair gets equal mass, shared by its balance groups: equally, or in
    proportion to `generator_weights` (generator family -> relative weight, 1 where unnamed). A
    weight moves mass between generators of the same target pair only, so the class balance holds."""
    factors = generator_weights or {}
    groups = [balance_group(c) for c in clips]
    group_size = Counter(groups)
    target_mass: dict[tuple[object, ...], float] = defaultdict(float)  # summed group factors per target pair
    for g in group_size:
        target_mass[g[:2]] += factors.get(str(g[2]), 1.0)
    n_targets = len(target_mass)
    w = np.array([1.0 / n_targets * factors.get(str(g[2]), 1.0) / target_mass[g[:2]] / group_size[g]
                  for g in groups])
    return w / w.sum()


@dataclass(frozen=True)
class Batch:
    audio: torch.Tensor  # [B, hops * hop_samples] float32
    spoof: torch.Tensor  # [B] float32 target
    codec: torch.Tensor  # [B] float32 target
    hop_mask: torch.Tensor  # [B, hops] 1 where the hop holds real audio
    pair_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # [P, 2] (spoof row, its truth's row)


def ground_truth_pairs(clips: Sequence[Clip]) -> np.ndarray:
    """[P, 2] clip indices (spoof, the genuine recording it renders): the same sentence, speaker and
    page, so within a pair only the synthesis differs. A spoof's truth is its `parent` (the importer
    sets it from the page's sentence pairing; copy-synthesis sets it to its source)."""
    index = {clip.item.item_id: i for i, clip in enumerate(clips)}
    pairs = [(i, index[clip.item.parent]) for i, clip in enumerate(clips)
             if clip.spoof == 1 and clip.item.parent in index and clips[index[clip.item.parent]].spoof == 0]
    return np.array(pairs, np.int64).reshape(-1, 2)


def _crop(pcm: np.ndarray, start: int, length: int, hop_samples: int, audio: np.ndarray, mask: np.ndarray) -> None:
    """Write pcm[start:start + length] into one batch row, masking hops past the clip's end."""
    piece = pcm[start:start + length]
    audio[: len(piece)] = piece / 32768.0
    mask[: max(1, len(piece) // hop_samples)] = 1.0


def sample_batch(clips: Sequence[Clip], weights: np.ndarray, rng: np.random.Generator, batch_size: int,
                 hop_samples: int, min_hops: int, max_hops: int,
                 pairs: np.ndarray | None = None, pair_count: int = 0) -> Batch:
    """Crops of one random length (min_hops..max_hops hops) from clips drawn by `weights`.

    With `pair_count` > 0, the last 2 x pair_count rows are (spoof, ground truth) pairs drawn from
    `pairs` (ground_truth_pairs), both cropped at the same position; `Batch.pair_rows` says which rows."""
    hops = int(rng.integers(min_hops, max_hops + 1))
    length = hops * hop_samples
    audio = np.zeros((batch_size, length), np.float32)
    mask = np.zeros((batch_size, hops), np.float32)
    single = batch_size - 2 * pair_count
    picks = rng.choice(len(clips), size=single, p=weights)
    for row, idx in enumerate(picks):
        pcm = clips[idx].audio
        start = 0
        if len(pcm) >= length:  # a short clip starts at zero; its tail hops are masked
            start = int(rng.integers(0, len(pcm) - length + 1))
        _crop(pcm, start, length, hop_samples, audio[row], mask[row])
    pair_rows = np.zeros((0, 2), np.int64)
    if pair_count > 0:
        if pairs is None or not len(pairs):
            raise ValueError("pair rows asked for, but the training clips hold no (spoof, ground truth) pairs")
        chosen = pairs[rng.integers(len(pairs), size=pair_count)]
        pair_rows = single + np.arange(2 * pair_count).reshape(-1, 2)
        for (spoof_idx, truth_idx), (spoof_row, truth_row) in zip(chosen, pair_rows, strict=True):
            shorter = min(len(clips[spoof_idx].audio), len(clips[truth_idx].audio))
            start = int(rng.integers(0, shorter - length + 1)) if shorter > length else 0
            _crop(clips[spoof_idx].audio, start, length, hop_samples, audio[spoof_row], mask[spoof_row])
            _crop(clips[truth_idx].audio, start, length, hop_samples, audio[truth_row], mask[truth_row])
        picks = np.concatenate([picks, chosen.reshape(-1)])
    spoof = np.array([clips[i].spoof for i in picks], np.float32)
    codec = np.array([clips[i].codec for i in picks], np.float32)
    return Batch(torch.from_numpy(audio), torch.from_numpy(spoof), torch.from_numpy(codec),
                 torch.from_numpy(mask), pair_rows)


@dataclass(frozen=True)
class Augmentation:
    gain_db: tuple[float, float] = (-18.0, 6.0)
    noise_prob: float = 0.4
    snr_db: tuple[float, float] = (10.0, 40.0)
    tilt_prob: float = 0.3  # first-order spectral tilt y[n] = x[n] + a*x[n-1]: a cheap channel


def augment(audio: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Gain, additive coloured noise and a spectral tilt, per row, applied to both classes alike."""
    b = audio.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, 1, generator=gen)

    tilt = uniform(-0.9, 0.9) * (torch.rand(b, 1, generator=gen) < aug.tilt_prob)
    audio = audio + tilt * torch.nn.functional.pad(audio, (1, 0))[:, :-1]
    rms = audio.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-5)
    # Coloured noise, shaped in the frequency domain: 1/f^(2*slope) power, slope in [0, 1]
    # per row (white .. brown).
    spectrum = torch.fft.rfft(torch.randn(audio.shape, generator=gen))
    freqs = torch.arange(spectrum.shape[1]).clamp(min=1).float()  # [bins]
    spectrum = spectrum * freqs[None, :] ** -uniform(0.0, 1.0)
    noise = torch.fft.irfft(spectrum, n=audio.shape[1])
    noise = noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)
    snr = uniform(*aug.snr_db)
    use_noise = torch.rand(b, 1, generator=gen) < aug.noise_prob
    audio = audio + use_noise.float() * noise * rms / (10 ** (snr / 20))
    audio = audio * 10 ** (uniform(*aug.gain_db) / 20)
    peak = audio.abs().amax(1, keepdim=True)
    return audio / torch.clamp(peak / 0.99, min=1.0)  # never clip: clipping would be a label-free artefact
