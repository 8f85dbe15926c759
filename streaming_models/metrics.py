"""Detection metrics: EER and the ASVspoof 5 minimum normalized DCF.

Convention here: a higher score means "more likely positive" (spoof for the spoof head,
neural codec for the codec head); labels are 1 for positive, 0 for negative.

minDCF follows the ASVspoof 5 evaluation plan (Track 1, the challenge's evaluation
package `calculate_modules.compute_mindcf`), with its fixed cost model

    pi_spoof = 0.05   prior of a spoofing attack
    C_miss   = 1      cost of rejecting a bona fide utterance
    C_fa     = 10     cost of accepting a spoofed utterance

    DCF(t) = (C_miss * (1 - pi_spoof) * P_miss_bona(t) + C_fa * pi_spoof * P_fa_spoof(t))
             / min(C_miss * (1 - pi_spoof), C_fa * pi_spoof)

where P_miss_bona(t) is the fraction of bona fide (negative) scores flagged at threshold t
and P_fa_spoof(t) the fraction of spoof (positive) scores let through; minDCF is the
minimum over all thresholds. The codec head uses the same formula with "neural codec"
in the role of spoof.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PI_SPOOF = 0.05
C_MISS = 1.0
C_FA = 10.0


@dataclass(frozen=True)
class ErrorCurve:
    """Error rates at each candidate threshold (a score >= threshold is called positive)."""

    thresholds: np.ndarray
    false_positive: np.ndarray  # negatives called positive (bona fide flagged)
    false_negative: np.ndarray  # positives called negative (spoof let through)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("need both positive and negative examples")
    return scores, labels


def error_curve(scores: np.ndarray, labels: np.ndarray) -> ErrorCurve:
    scores, labels = _check(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    n_pos, n_neg = y.sum(), (~y).sum()
    # Candidate thresholds: every distinct score, plus one above the maximum (nothing flagged).
    uniq, first = np.unique(s, return_index=True)
    pos_below = np.concatenate([[0], np.cumsum(y)])[first]  # positives strictly below each threshold
    neg_below = np.concatenate([[0], np.cumsum(~y)])[first]
    thresholds = np.concatenate([uniq, [np.inf]])
    fn = np.concatenate([pos_below, [n_pos]]) / n_pos
    fp = 1.0 - np.concatenate([neg_below, [n_neg]]) / n_neg
    return ErrorCurve(thresholds, fp, fn)


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(equal error rate, threshold there). Interpolates where the two rates cross."""
    curve = error_curve(scores, labels)
    diff = curve.false_positive - curve.false_negative  # decreasing from +1 towards -1
    i = int(np.argmax(diff <= 0))  # first threshold where misses catch up with false alarms
    if i == 0:
        return float(curve.false_negative[0]), float(curve.thresholds[0])
    d0, d1 = diff[i - 1], diff[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    fp = curve.false_positive[i - 1] + w * (curve.false_positive[i] - curve.false_positive[i - 1])
    fn = curve.false_negative[i - 1] + w * (curve.false_negative[i] - curve.false_negative[i - 1])
    return float((fp + fn) / 2.0), float(curve.thresholds[i])


def eer_interval(scores: np.ndarray, labels: np.ndarray, level: float = 0.95, resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER over files, positives and negatives resampled apart.

    On a few hundred files one EER is one draw: this says how far another draw of files from the
    same sources could move it (not how far another training seed would: that needs more runs).
    """
    scores, labels = _check(scores, labels)
    if not 0 < level < 1 or resamples < 1:
        raise ValueError("level must be in (0, 1) and resamples >= 1")
    rng = np.random.default_rng(seed)
    pos, neg = scores[labels], scores[~labels]
    both = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    draws = [eer(np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)]), both)[0]
             for _ in range(resamples)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def min_dcf(scores: np.ndarray, labels: np.ndarray, pi_spoof: float = PI_SPOOF, c_miss: float = C_MISS,
            c_fa: float = C_FA) -> tuple[float, float]:
    """(ASVspoof 5 minimum normalized DCF, threshold there)."""
    curve = error_curve(scores, labels)
    cost = c_miss * (1 - pi_spoof) * curve.false_positive + c_fa * pi_spoof * curve.false_negative
    i = int(np.argmin(cost))
    return float(cost[i] / min(c_miss * (1 - pi_spoof), c_fa * pi_spoof)), float(curve.thresholds[i])


def threshold_at_false_positive_rate(negative_scores: np.ndarray, rate: float) -> float:
    """Lowest threshold that flags at most `rate` of the negatives (score >= threshold flags)."""
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64))
    if neg.size == 0:
        raise ValueError("need negative scores")
    allowed = int(np.floor(rate * neg.size))
    return float(np.nextafter(neg[neg.size - allowed - 1], np.inf))
