"""Training-time augmentation: what each transform does to a known signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_models import training_data
from streaming_models.data.manifest import CorpusItem, Source
from streaming_models.training_data import (
    Augmentation,
    Clip,
    augment,
    ground_truth_pairs,
    random_band_mask,
    random_equalizer,
    random_lowpass,
    random_reverb,
    sample_batch,
    sampling_weights,
    with_lossy_spoofs,
)


def _tones(n: int, fractions_of_nyquist: tuple[float, ...]) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64)
    return sum(torch.sin(torch.pi * f * t) for f in fractions_of_nyquist).float()[None, :]


def _level_at(audio: torch.Tensor, fraction: float) -> float:
    spectrum = torch.fft.rfft(audio[0]).abs()
    return float(spectrum[round(fraction * (audio.shape[1] // 2))])


def test_random_lowpass_removes_the_band_above_the_cutoff_only() -> None:
    audio = _tones(4000, (0.25, 0.75))
    out = random_lowpass(audio, Augmentation(lowpass_prob=1.0, lowpass_cutoff=(0.5, 0.5)), torch.Generator())
    assert abs(_level_at(out, 0.25) - _level_at(audio, 0.25)) < 1e-3 * _level_at(audio, 0.25)
    assert _level_at(out, 0.75) < 1e-4 * _level_at(audio, 0.75)


def test_random_lowpass_leaves_unchosen_rows_alone() -> None:
    audio = _tones(4000, (0.25, 0.75))
    out = random_lowpass(audio, Augmentation(lowpass_prob=0.0), torch.Generator())
    assert torch.allclose(out, audio, atol=1e-5)


def test_augment_is_seeded_and_the_band_limit_is_applied_within_it() -> None:
    audio = torch.randn(4, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    plain = augment(audio, Augmentation(), torch.Generator().manual_seed(7))
    limited = augment(audio, Augmentation(lowpass_prob=1.0), torch.Generator().manual_seed(7))
    assert not torch.allclose(plain, limited)
    assert torch.equal(plain, augment(audio, Augmentation(), torch.Generator().manual_seed(7)))
    assert np.isfinite(limited.numpy()).all() and limited.abs().max() <= 0.99 + 1e-6


def test_spoof_extra_noise_reaches_spoof_rows_only() -> None:
    audio = torch.randn(6, 8000, generator=torch.Generator().manual_seed(1)) * 0.1
    spoof = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    aug = Augmentation(gain_db=(0.0, 0.0), noise_prob=0.0, tilt_prob=0.0, spoof_extra_noise_prob=1.0)
    out = augment(audio, aug, torch.Generator().manual_seed(7), spoof)
    changed = (out - audio).abs().amax(dim=1) > 1e-6
    assert changed.tolist() == [True, False, True, False, True, False]
    with pytest.raises(ValueError, match="spoof targets"):
        augment(audio, aug, torch.Generator())
    # At 0 (the default) no extra random numbers are drawn: recipes without it are unchanged.
    default = Augmentation()
    assert torch.equal(augment(audio, default, torch.Generator().manual_seed(7), spoof),
                       augment(audio, default, torch.Generator().manual_seed(7)))


def test_random_equalizer_colours_chosen_rows_only_and_differently() -> None:
    audio = torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    notch = Augmentation(eq_prob=1.0, eq_max_bands=1, eq_gain_db=(-30.0, -30.0), eq_width=(0.05, 0.05))
    out = random_equalizer(audio, notch, torch.Generator().manual_seed(3))
    energy_ratio = out.pow(2).sum(1) / audio.pow(2).sum(1)
    assert (energy_ratio < 0.99).all() and (energy_ratio > 0.7).all()  # a notch 0.05 wide, not a mute
    response = torch.fft.rfft(out).abs() / torch.fft.rfft(audio).abs()
    assert not torch.allclose(response[0], response[1], atol=0.05)  # each row its own notch
    untouched = random_equalizer(audio, Augmentation(eq_prob=0.0), torch.Generator())
    assert torch.allclose(untouched, audio, atol=1e-5)


def test_random_reverb_rooms_chosen_rows_at_their_level() -> None:
    gen = torch.Generator().manual_seed(1)
    clicks = torch.zeros(8, 16000)
    clicks[:, 1000] = 1.0  # an impulse: the output row is the room's response itself
    aug = Augmentation(reverb_prob=0.5, reverb_rt60_s=(0.4, 0.4), reverb_drr_db=(0.0, 0.0))
    out = random_reverb(clicks, aug, gen)
    roomed = (out[:, 1200:] ** 2).sum(1) > 1e-6
    assert 0 < int(roomed.sum()) < 8
    assert torch.equal(out[~roomed], clicks[~roomed])
    assert torch.allclose(out.pow(2).sum(1), clicks.pow(2).sum(1), rtol=1e-4)  # level kept
    tail = out[roomed][:, 1001:]
    direct = out[roomed][:, 1000]
    ratio_db = 10 * torch.log10(direct ** 2 / tail.pow(2).sum(1))
    assert torch.allclose(ratio_db, torch.zeros_like(ratio_db), atol=0.3)  # the drawn 0 dB DRR
    assert out[roomed][:, :1000].abs().max() < 1e-6  # causal: nothing before the click (FFT round-off aside)
    again = random_reverb(clicks, aug, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # the seed decides the rooms


def test_spoof_rooms_go_to_spoof_rows_only() -> None:
    clicks = torch.zeros(6, 8000)
    clicks[:, 100] = 1.0
    spoof = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    aug = Augmentation(spoof_reverb_prob=1.0)
    out = random_reverb(clicks, aug, torch.Generator().manual_seed(0), spoof)
    roomed = (out[:, 300:] ** 2).sum(1) > 1e-6
    assert roomed.tolist() == [True, False, True, False, True, False]
    with pytest.raises(ValueError, match="spoof targets"):
        augment(clicks, aug, torch.Generator())


def test_rooms_off_skip_the_step_and_its_random_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Recipes without rooms must draw the same random numbers as before rooms existed, so the step
    # may not run at all (not even to draw and discard).
    def must_not_run(*args: object) -> torch.Tensor:
        raise AssertionError("random_reverb ran with rooms off")

    monkeypatch.setattr(training_data, "random_reverb", must_not_run)
    audio = torch.randn(4, 4000, generator=torch.Generator().manual_seed(2))
    augment(audio, Augmentation(), torch.Generator().manual_seed(5), torch.ones(4))
    with pytest.raises(AssertionError, match="rooms off"):
        augment(audio, Augmentation(spoof_reverb_prob=0.1), torch.Generator(), torch.ones(4))


def test_equalizer_notch_is_at_its_centre() -> None:
    audio = _tones(4000, (0.25, 0.75))
    gen = torch.Generator().manual_seed(0)
    aug = Augmentation(eq_prob=1.0, eq_max_bands=1, eq_gain_db=(-40.0, -40.0), eq_width=(0.01, 0.01))
    out = random_equalizer(audio, aug, gen)
    centre = torch.rand(1, 1, 1, generator=torch.Generator().manual_seed(0)).item()  # first draw
    near = min((0.25, 0.75), key=lambda f: abs(f - centre))
    far = 0.75 if near == 0.25 else 0.25
    expected_db = -40.0 * np.exp(-0.5 * ((near - centre) / 0.01) ** 2)
    assert abs(20 * np.log10(_level_at(out, near) / _level_at(audio, near)) - expected_db) < 0.5
    assert abs(_level_at(out, far) / _level_at(audio, far) - 1.0) < 1e-3 or abs(far - centre) < 0.06


def _runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, width) of each run of True channels."""
    runs, start = [], None
    for i, hidden in enumerate([*row.tolist(), False]):
        if hidden and start is None:
            start = i
        elif not hidden and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def test_band_masks_hide_one_or_two_bands_no_wider_than_asked_and_only_on_chosen_crops() -> None:
    masks = random_band_mask(400, 60, 0.5, 2, 0.2, torch.Generator().manual_seed(3))
    hidden_rows = masks.any(dim=1)
    assert 0.4 < hidden_rows.float().mean() < 0.6
    for row in masks[hidden_rows]:
        runs = _runs(row)
        assert 1 <= len(runs) <= 2
        assert all(width <= 2 * 12 for _, width in runs)  # two overlapping masks of <= 12 at most
    single = random_band_mask(200, 60, 1.0, 1, 0.2, torch.Generator().manual_seed(3))
    widths = [w for row in single for _, w in _runs(row)]
    assert len(widths) == 200 and max(widths) == 12 and min(widths) >= 1
    starts = [s for row in single for s, _ in _runs(row)]
    assert len(set(starts)) > 30  # positions spread over the band
    assert torch.equal(masks, random_band_mask(400, 60, 0.5, 2, 0.2, torch.Generator().manual_seed(3)))
    assert not random_band_mask(50, 60, 0.0, 2, 0.2, torch.Generator()).any()


def _clip(source: Source, generator: str, audio: np.ndarray | None = None, channel: tuple[str, ...] = ()) -> Clip:
    item = CorpusItem(path="x.flac", source=source, generator=generator, channel=channel)
    return Clip(item, np.zeros(16000, np.int16) if audio is None else audio, int(source == "spoof"), 0)


def _mass(clips: list[Clip], weights: np.ndarray, generator: str) -> float:
    return float(sum(w for c, w in zip(clips, weights, strict=True) if c.item.generator == generator))


def test_generator_weights_shift_mass_between_generators_and_keep_the_class_balance() -> None:
    clips = ([_clip("bonafide", "human")] * 5 + [_clip("spoof", "espeak")] * 6 + [_clip("spoof", "hifigan")] * 2
             + [_clip("spoof", "kokoro")])
    plain = sampling_weights(clips)
    assert _mass(clips, plain, "human") == pytest.approx(0.5)  # each target pair gets equal mass
    assert [_mass(clips, plain, g) for g in ("espeak", "hifigan", "kokoro")] == pytest.approx([1 / 6] * 3)
    assert np.array_equal(plain, sampling_weights(clips, {}))  # no weights: the recipe's sampler exactly

    weighted = sampling_weights(clips, {"espeak": 0.25, "kokoro": 2.0})
    assert weighted.sum() == pytest.approx(1.0)
    assert _mass(clips, weighted, "human") == pytest.approx(0.5)  # a weight never moves mass across classes
    # within the spoof half, shares follow 0.25 : 1 : 2
    assert [_mass(clips, weighted, g) for g in ("espeak", "hifigan", "kokoro")] == pytest.approx(
        [0.5 * 0.25 / 3.25, 0.5 * 1 / 3.25, 0.5 * 2 / 3.25])


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 2500, 5200, 7100), 1))
    return np.round(3000 * wave + 300 * rng.standard_normal(len(t))).astype(np.int16)


def test_lossy_spoofs_code_only_uncoded_spoof_clips_keep_length_and_are_seeded() -> None:
    clips = [_clip("spoof", "espeak", _speechlike(1.3, 0)), _clip("bonafide", "human", _speechlike(1.0, 1)),
             _clip("spoof", "kokoro", _speechlike(0.7, 2), channel=("g711-mulaw",))]
    coded = with_lossy_spoofs(clips, 1.0, 16000, np.random.default_rng(5))
    original, changed = clips[0].audio.astype(float), coded[0].audio.astype(float)
    assert len(changed) == len(original) and not np.array_equal(changed, original)
    error_db = 10 * np.log10(((changed - original) ** 2).sum() / (original ** 2).sum())
    assert -40 < error_db < -10  # audibly coded, not noise, and aligned (a shift would be near 0 dB)
    assert coded[1] is clips[1] and coded[2] is clips[2]  # genuine, and spoofs already through a channel
    again = with_lossy_spoofs(clips, 1.0, 16000, np.random.default_rng(5))
    assert np.array_equal(again[0].audio, coded[0].audio)
    assert with_lossy_spoofs(clips, 0.0, 16000, np.random.default_rng(5))[0] is clips[0]


def test_clip_start_prob_starts_that_share_of_crops_at_the_first_sample() -> None:
    ramp = np.arange(32000, dtype=np.int16)  # each sample's value is its position
    clips = [_clip("bonafide", "human", ramp)]
    weights = np.ones(1)

    def firsts(prob: float) -> np.ndarray:
        batch = sample_batch(clips, weights, np.random.default_rng(0), 400, 1600, 2, 2, prob)
        return np.round(batch.audio[:, 0].numpy() * 32768.0)

    assert np.mean(firsts(0.0) == 0) < 0.01  # uniform starts: the first sample is rarely drawn
    share = np.mean(firsts(0.5) == 0)
    assert 0.4 < share < 0.6
    assert np.all(firsts(1.0) == 0)
    # 0 is the default and draws nothing extra
    default = sample_batch(clips, weights, np.random.default_rng(0), 8, 1600, 2, 2)
    assert torch.equal(default.audio, sample_batch(clips, weights, np.random.default_rng(0), 8, 1600, 2, 2, 0.0).audio)


def _paired_clip(source: Source, item_id: str, audio: np.ndarray, parent: str | None = None) -> Clip:
    item = CorpusItem(path="x.flac", source=source, generator="human" if source == "bonafide" else "vits",
                      item_id=item_id, parent=parent)
    return Clip(item, audio, int(source == "spoof"), 0)


def test_ground_truth_pairs_link_spoofs_to_their_genuine_parent_only() -> None:
    ramp = np.arange(32000, dtype=np.int16)
    clips = [_paired_clip("bonafide", "gt", ramp), _paired_clip("spoof", "tts", ramp, parent="gt"),
             _paired_clip("spoof", "orphan", ramp, parent="not-loaded"),
             _paired_clip("bonafide", "codec-copy", ramp, parent="gt"),  # genuine: not a spoof pair
             _paired_clip("spoof", "of-a-spoof", ramp, parent="tts")]  # its parent is no ground truth
    assert ground_truth_pairs(clips).tolist() == [[1, 0]]
    assert ground_truth_pairs(clips[:1]).shape == (0, 2)


def test_pair_rows_are_cropped_at_the_same_place_and_the_rest_of_the_batch_is_unchanged() -> None:
    truth = np.arange(32000, dtype=np.int16)
    fake = (np.arange(32000) // 2).astype(np.int16)  # sample k of the pair's spoof holds k // 2
    clips = [_paired_clip("bonafide", "gt", truth), _paired_clip("spoof", "tts", fake, parent="gt")]
    weights, pairs = np.array([0.5, 0.5]), ground_truth_pairs(clips)
    batch = sample_batch(clips, weights, np.random.default_rng(1), 8, 1600, 2, 2, 0.0, pairs, 2)
    assert batch.pair_rows.tolist() == [[4, 5], [6, 7]]
    for spoof_row, truth_row in batch.pair_rows:
        assert batch.spoof[spoof_row] == 1 and batch.spoof[truth_row] == 0
        start = round(float(batch.audio[truth_row, 0]) * 32768.0)
        assert round(float(batch.audio[spoof_row, 0]) * 32768.0) == start // 2
    plain = sample_batch(clips, weights, np.random.default_rng(1), 4, 1600, 2, 2)
    assert torch.equal(plain.audio, batch.audio[:4]) and plain.pair_rows.shape == (0, 2)
    with pytest.raises(ValueError, match="no \\(spoof, ground truth\\) pairs"):
        sample_batch(clips[:1], np.ones(1), np.random.default_rng(1), 8, 1600, 2, 2, 0.0, pairs[:0], 2)
