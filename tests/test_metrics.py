from __future__ import annotations

import numpy as np
import pytest

from streaming_models.metrics import eer, eer_interval, min_dcf, threshold_at_false_positive_rate


def test_eer_perfect_inverted_and_known_overlap() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert eer(np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]), labels)[0] == 0.0
    assert eer(np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1]), labels)[0] == 1.0
    # one negative above one positive: 1 of 4 errors on each side at the crossing
    value, _ = eer(np.array([0.1, 0.2, 0.3, 0.75, 0.6, 0.7, 0.8, 0.9]), labels)
    assert value == pytest.approx(0.25)


def test_eer_of_random_scores_is_about_half() -> None:
    rng = np.random.default_rng(0)
    value, _ = eer(rng.random(20000), rng.integers(0, 2, 20000))
    assert value == pytest.approx(0.5, abs=0.02)


def test_eer_interval_holds_the_estimate_and_narrows_with_more_files() -> None:
    rng = np.random.default_rng(1)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        return rng.normal(labels * 1.0, 1.0), labels  # true EER about 31 %

    few, many = draw(200), draw(5000)
    low, high = eer_interval(*few, resamples=300)
    assert low < eer(*few)[0] < high
    assert 0.0 < low and high < 1.0
    low_many, high_many = eer_interval(*many, resamples=300)
    assert high_many - low_many < (high - low) / 3  # width shrinks like 1/sqrt(n)
    assert eer_interval(*few, resamples=300) == (low, high)  # seeded: repeatable
    separable = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    assert eer_interval(*separable, resamples=50) == (0.0, 0.0)


def test_min_dcf_asvspoof5_cost_model() -> None:
    # ASVspoof 5: pi_spoof = 0.05, C_miss = 1, C_fa = 10 -> normaliser min(0.95, 0.5) = 0.5.
    labels = np.array([0] * 10 + [1] * 10)
    perfect = np.concatenate([np.linspace(0, 0.4, 10), np.linspace(0.6, 1, 10)])
    assert min_dcf(perfect, labels)[0] == 0.0
    # One bona fide scored above every spoof: flag it too (P_miss_bona = 0.1): 0.95*0.1/0.5 = 0.19,
    # or let all spoofs through (P_fa_spoof = 1): 0.5/0.5 = 1. The minimum is 0.19.
    scores = perfect.copy()
    scores[0] = 2.0
    assert min_dcf(scores, labels)[0] == pytest.approx(0.19)
    # A system with no information costs at most 1 (the better of the two trivial decisions).
    assert min_dcf(np.zeros(20), labels)[0] == pytest.approx(1.0)


def test_threshold_at_false_positive_rate() -> None:
    neg = np.arange(100) / 100.0
    t = threshold_at_false_positive_rate(neg, 0.05)
    assert (neg >= t).mean() <= 0.05
    assert (neg >= t).mean() == pytest.approx(0.05)


@pytest.mark.parametrize("scores,labels,needle", [
    (np.array([0.1, 0.2]), np.array([1, 1]), "both"),
    (np.array([0.1, np.nan]), np.array([0, 1]), "NaN"),
    (np.array([0.1]), np.array([0, 1]), "length"),
    (np.array([0.1, 0.2]), np.array([0, 2]), "0 or 1"),
])
def test_bad_input_is_rejected(scores: np.ndarray, labels: np.ndarray, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        eer(scores, labels)
