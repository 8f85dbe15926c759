"""How the streaming detector's score and the second-tier verifier's are fused into one p_spoof.

The rule is fixed, not fitted, so it cannot be tuned to one evaluation set: the mean of the two
scores' log-odds, mapped back to a probability (the geometric mean of the two odds). Either model
alone moves the fused score halfway (in log-odds) towards its own verdict; when both agree it is as
confident as they are. Before the verifier's first window the fused score is the streaming score alone.

Two forms of the one rule: `fuse_log_odds_mean` for arrays (studies, benchmarks) and
`fuse_log_odds_mean_scalar` for two floats (the daemon fuses every hop of every stream on its event
loop, where numpy's per-call overhead would cost about 7x the scalar arithmetic).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

EPS = 1e-6  # keeps log-odds finite for scores of exactly 0 or 1 (float32 sigmoids reach both)
FUSION_RULES = ("log_odds_mean",)


def log_odds(p: npt.ArrayLike) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(q) - np.log1p(-q)


def fuse_log_odds_mean(p_streaming: npt.ArrayLike, p_verifier: npt.ArrayLike) -> np.ndarray:
    """sigmoid((logit(p_streaming) + logit(p_verifier)) / 2), elementwise."""
    mean = 0.5 * (log_odds(p_streaming) + log_odds(p_verifier))
    return 1.0 / (1.0 + np.exp(-mean))


def _scalar_log_odds(p: float) -> float:
    p = min(max(p, EPS), 1.0 - EPS)
    return math.log(p) - math.log1p(-p)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def fuse_log_odds_mean_scalar(p_stream: float, p_verifier: float) -> float:
    """`fuse_log_odds_mean` for two floats."""
    return _sigmoid(0.5 * (_scalar_log_odds(p_stream) + _scalar_log_odds(p_verifier)))


def fused_p_spoof(rule: str, p_stream: float, p_verifier: float | None) -> float:
    """The fused spoof probability under `rule` (FUSION_RULES); the streaming score alone while the
    verifier has not scored the stream yet."""
    if rule not in FUSION_RULES:
        raise ValueError(f"unknown fusion rule {rule!r}; known: {', '.join(FUSION_RULES)}")
    if p_verifier is None:
        return p_stream
    return fuse_log_odds_mean_scalar(p_stream, p_verifier)
