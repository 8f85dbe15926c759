"""Training batches: clips held in memory, a class-balanced sampler, random crops, augmentation.

Kept apart from train.py so the script reads as a loop; nothing here knows about the model
except the hop size it crops to.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from streaming_models.audio_io import load_audio
from streaming_models.data.labels import Policy, targets
from streaming_models.data.manifest import CorpusItem, resolve_audio_path
from streaming_models.data.transforms.channel import room_impulse_response


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


# Perceptual codecs a genuine source may have passed through before it reached us (Vorbis game and
# application audio, LibriVox MP3s), with the compression levels libsndfile accepts for each at 16 kHz
# (0 = best: about 68 kbit/s Vorbis, 49 kbit/s MP3; 0.6: about 37 and 25).
LOSSY_FORMATS = (("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III"))
LOSSY_LEVELS = (0.0, 0.6)


def lossy_round_trip(pcm: np.ndarray, sample_rate_hz: int, fmt: tuple[str, str], level: float) -> np.ndarray:
    """int16 audio encoded by a perceptual codec in memory and decoded again, same length."""
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate_hz, format=fmt[0], subtype=fmt[1], compression_level=level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="int16")
    out = np.zeros_like(pcm)
    out[: min(len(pcm), len(decoded))] = decoded[: len(pcm)]
    return out


def with_lossy_spoofs(clips: list[Clip], prob: float, sample_rate_hz: int, rng: np.random.Generator) -> list[Clip]:
    """Give a share of the uncoded spoof clips the lossy history most of our genuine speech has.

    Most wideband genuine training speech reached us through Vorbis or MP3 while the synthesizers
    write clean PCM, so "carries codec artefacts" separates the classes in training and not in the
    world; coding `prob` of the spoofs (format and level drawn per clip) takes that cue away."""
    out = []
    for clip in clips:
        if clip.spoof == 1 and clip.item.codec == "none" and not clip.item.channel and rng.random() < prob:
            fmt = LOSSY_FORMATS[int(rng.integers(len(LOSSY_FORMATS)))]
            level = float(rng.uniform(*LOSSY_LEVELS))
            clip = replace(clip, audio=lossy_round_trip(clip.audio, sample_rate_hz, fmt, level))
        out.append(clip)
    return out


AUX_TARGETS = ("generator", "codec_family")  # CorpusItem fields an auxiliary head can classify


def aux_labels(clips: Sequence[Clip], target: str) -> tuple[tuple[str, ...], np.ndarray]:
    """An auxiliary head's classes (sorted) and each clip's class index, from a CorpusItem field."""
    if target not in AUX_TARGETS:
        raise ValueError(f"auxiliary target must be one of {AUX_TARGETS}, got {target!r}")
    values = [str(getattr(clip.item, target)) for clip in clips]
    classes = tuple(sorted(set(values)))
    index = {name: i for i, name in enumerate(classes)}
    return classes, np.array([index[v] for v in values], np.int64)


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
    clip_indices: np.ndarray  # [B] which clip each row was cropped from (for per-clip targets)
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
                 hop_samples: int, min_hops: int, max_hops: int, clip_start_prob: float = 0.0,
                 pairs: np.ndarray | None = None, pair_count: int = 0) -> Batch:
    """`clip_start_prob` of the crops start at the clip's first sample, as a stream does (0: draws as before).

    With `pair_count` > 0, the last 2 x pair_count rows are (spoof, ground truth) pairs drawn from
    `pairs` (ground_truth_pairs), both cropped at the same position; `Batch.pair_rows` says which rows."""
    hops = int(rng.integers(min_hops, max_hops + 1))
    length = hops * hop_samples
    audio = np.zeros((batch_size, length), np.float32)
    mask = np.zeros((batch_size, hops), np.float32)
    single = batch_size - 2 * pair_count
    picks = rng.choice(len(clips), size=single, p=weights)
    from_start = rng.random(single) < clip_start_prob if clip_start_prob > 0 else np.zeros(single, bool)
    for row, idx in enumerate(picks):
        pcm = clips[idx].audio
        start = 0
        if len(pcm) >= length and not from_start[row]:  # a short clip starts at zero; its tail hops are masked
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
                 torch.from_numpy(mask), picks, pair_rows)


@dataclass(frozen=True)
class Augmentation:
    gain_db: tuple[float, float] = (-18.0, 6.0)
    noise_prob: float = 0.4
    snr_db: tuple[float, float] = (10.0, 40.0)
    tilt_prob: float = 0.3  # first-order spectral tilt y[n] = x[n] + a*x[n-1]: a cheap channel
    lowpass_prob: float = 0.0  # random band limit; cut-off as a fraction of Nyquist
    lowpass_cutoff: tuple[float, float] = (0.42, 0.95)
    eq_prob: float = 0.0  # random smooth equalizer: a microphone, room or handset response
    eq_max_bands: int = 4
    eq_gain_db: tuple[float, float] = (-24.0, 12.0)
    eq_width: tuple[float, float] = (0.01, 0.15)  # Gaussian bump's standard deviation / Nyquist
    # A synthetic room (channel.room_impulse_response) for this share of crops, both classes alike.
    # Measured on six seeds it made the spoof head worse (docs/model-card.md, "Synthetic rooms"): off.
    reverb_prob: float = 0.0
    reverb_rt60_s: tuple[float, float] = (0.15, 0.9)
    reverb_drr_db: tuple[float, float] = (-3.0, 15.0)
    # Of the spoof crops that drew no room, this share gets one too: synthetic speech played into a
    # room (a replayed or loudspeaker attack), against the "room -> genuine" cue. Class-aware, like
    # spoof_extra_noise_prob, and like it measured worse on six seeds, the cue turned round: off.
    spoof_reverb_prob: float = 0.0
    # Of the spoof crops that drew no noise, this share gets noise too: meant to take away the
    # "noise -> genuine" cue (genuine recordings carry a noise floor, synthetic speech mostly none).
    # Measured on six seeds it made the spoof head worse and reversed the cue (docs/model-card.md):
    # off in the recipe.
    spoof_extra_noise_prob: float = 0.0


def random_lowpass(audio: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Low-pass a random subset of rows at a random cut-off (cosine roll-off over 5 % of the band).

    Genuine speech reaches us through every bandwidth (8 kHz telephony, 16 kHz wideband, full band)
    while synthetic speech is mostly full band; limiting the band of both classes alike keeps the
    width of the band from becoming the cue.
    """
    b, n = audio.shape
    lo, hi = aug.lowpass_cutoff
    cutoff = lo + (hi - lo) * torch.rand(b, 1, generator=gen)
    chosen = torch.rand(b, 1, generator=gen) < aug.lowpass_prob
    position = torch.linspace(0.0, 1.0, n // 2 + 1)[None, :]  # bin frequency / Nyquist
    rolloff = 0.05
    ramp = ((cutoff + rolloff / 2 - position) / rolloff).clamp(0.0, 1.0)
    gain = torch.where(chosen, 0.5 - 0.5 * torch.cos(torch.pi * ramp), torch.ones_like(ramp))
    return torch.fft.irfft(torch.fft.rfft(audio) * gain, n=n)


def random_equalizer(audio: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Colour a random subset of rows with a random smooth frequency response (zero phase).

    The response in dB is a sum of up to `eq_max_bands` Gaussian bumps and notches at random
    centres. It is the linear part of RawBoost's convolutive noise (Tak et al., ICASSP 2022):
    genuine and synthetic speech both reach us through unknown microphones and handsets, so the
    detector should not lean on the fine shape of the long-term spectrum, and a deep notch acts
    like SpecAugment's frequency mask, which makes it use more than one band.
    """
    b, n = audio.shape
    k = aug.eq_max_bands

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, k, 1, generator=gen)

    centre, width, gain = uniform(0.0, 1.0), uniform(*aug.eq_width), uniform(*aug.eq_gain_db)
    band_used = torch.rand(b, k, 1, generator=gen) < 0.5
    band_used[:, 0] = True  # at least one band per chosen row
    chosen = torch.rand(b, 1, generator=gen) < aug.eq_prob
    position = torch.linspace(0.0, 1.0, n // 2 + 1)[None, None, :]
    response_db = (band_used * gain * torch.exp(-0.5 * ((position - centre) / width) ** 2)).sum(1)
    response = torch.where(chosen, 10.0 ** (response_db / 20.0), torch.ones_like(response_db))
    return torch.fft.irfft(torch.fft.rfft(audio) * response, n=n)


def random_reverb(audio: torch.Tensor, aug: Augmentation, gen: torch.Generator,
                  spoof: torch.Tensor | None = None) -> torch.Tensor:
    """Put a random subset of rows in a synthetic room of random reverberation time and distance.

    Genuine recordings carry the room they were made in; synthetic speech is dry unless its
    training data was not. Giving both classes rooms keeps reverberation from deciding the class.
    Each row keeps its level; the crop starts without the tail of what came before it.
    `spoof` ([B] targets) is needed only for `aug.spoof_reverb_prob`.
    """
    b, n = audio.shape
    chosen = torch.rand(b, generator=gen) < aug.reverb_prob
    if aug.spoof_reverb_prob > 0:  # guarded so that recipes without it draw the same random numbers
        if spoof is None:
            raise ValueError("spoof_reverb_prob needs the rows' spoof targets")
        chosen |= (torch.rand(b, generator=gen) < aug.spoof_reverb_prob) & (spoof.reshape(b) > 0.5)
    rt60 = aug.reverb_rt60_s[0] + (aug.reverb_rt60_s[1] - aug.reverb_rt60_s[0]) * torch.rand(b, generator=gen)
    drr = aug.reverb_drr_db[0] + (aug.reverb_drr_db[1] - aug.reverb_drr_db[0]) * torch.rand(b, generator=gen)
    seeds = torch.randint(0, 2**31 - 1, (b,), generator=gen)
    rows = chosen.nonzero().flatten().tolist()
    if not rows:
        return audio
    responses = [room_impulse_response(float(rt60[r]), float(drr[r]), np.random.default_rng(int(seeds[r])))
                 for r in rows]
    size = 1 << (n + max(len(h) for h in responses) - 1).bit_length()  # a power of two: a fast FFT
    kernel = torch.fft.rfft(torch.from_numpy(np.stack([np.pad(h, (0, size - len(h))) for h in responses])).float())
    dry = audio[rows]
    wet = torch.fft.irfft(torch.fft.rfft(dry, size) * kernel, size)[:, :n]
    wet = wet * dry.pow(2).mean(1, keepdim=True).sqrt() / wet.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)
    out = audio.clone()
    out[rows] = wet
    return out


def random_band_mask(batch: int, bands: int, prob: float, max_masks: int, max_fraction: float,
                     gen: torch.Generator) -> torch.Tensor:
    """Frequency masks for a batch [batch, bands] (True = hidden), one draw per crop: with
    probability `prob`, 1..max_masks bands, each of 1..max_fraction * bands consecutive channels
    at a uniform position (they may overlap). The model interpolates across them
    (features.interpolate_masked), so no frequency range can carry the decision on its own."""
    mask = torch.zeros(batch, bands, dtype=torch.bool)
    widest = max(1, int(max_fraction * bands))
    chosen = torch.rand(batch, generator=gen) < prob
    count = torch.randint(1, max_masks + 1, (batch,), generator=gen)
    width = torch.randint(1, widest + 1, (batch, max_masks), generator=gen)
    start = (torch.rand(batch, max_masks, generator=gen) * (bands - width + 1)).long()
    channel = torch.arange(bands)
    for k in range(max_masks):
        band = (channel >= start[:, k:k + 1]) & (channel < start[:, k:k + 1] + width[:, k:k + 1])
        mask |= band & (chosen & (count > k))[:, None]
    return mask


def augment(audio: torch.Tensor, aug: Augmentation, gen: torch.Generator,
            spoof: torch.Tensor | None = None) -> torch.Tensor:
    """Gain, additive coloured noise and channel colouring, per row, applied to both classes alike.

    `spoof` ([B] targets) is needed only for the class-aware steps, `aug.spoof_extra_noise_prob` and
    `aug.spoof_reverb_prob`.
    """
    b = audio.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, 1, generator=gen)

    tilt = uniform(-0.9, 0.9) * (torch.rand(b, 1, generator=gen) < aug.tilt_prob)
    audio = audio + tilt * torch.nn.functional.pad(audio, (1, 0))[:, :-1]
    if aug.lowpass_prob > 0:  # guarded so that recipes without it draw the same random numbers as before
        audio = random_lowpass(audio, aug, gen)
    if aug.eq_prob > 0:  # guarded likewise
        audio = random_equalizer(audio, aug, gen)
    if aug.reverb_prob > 0 or aug.spoof_reverb_prob > 0:  # guarded likewise; before the noise (the microphone's)
        audio = random_reverb(audio, aug, gen, spoof)
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
    if aug.spoof_extra_noise_prob > 0:  # guarded so that recipes without it draw the same random numbers
        if spoof is None:
            raise ValueError("spoof_extra_noise_prob needs the rows' spoof targets")
        extra = torch.rand(b, 1, generator=gen) < aug.spoof_extra_noise_prob
        use_noise = use_noise | (extra & (spoof.reshape(b, 1) > 0.5))
    audio = audio + use_noise.float() * noise * rms / (10 ** (snr / 20))
    audio = audio * 10 ** (uniform(*aug.gain_db) / 20)
    peak = audio.abs().amax(1, keepdim=True)
    return audio / torch.clamp(peak / 0.99, min=1.0)  # never clip: clipping would be a label-free artefact
