"""How the streaming detector's score and the second-tier verifier's are fused into one p_spoof.

The rule is fixed, not fitted, so it cannot be tuned to one evaluation set: the mean of the two
scores' log-odds, mapped back to a probability. Either model alone moves the fused score halfway
(in log-odds) towards its own verdict; when both agree it is as confident as they are. Before the
verifier's first window the fused score is the streaming score alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_EPS = 1e-6  # keeps log-odds finite for scores of exactly 0 or 1


def log_odds(p: npt.ArrayLike) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


def fuse_log_odds_mean(p_streaming: npt.ArrayLike, p_verifier: npt.ArrayLike) -> np.ndarray:
    """sigmoid((logit(p_streaming) + logit(p_verifier)) / 2), elementwise."""
    mean = 0.5 * (log_odds(p_streaming) + log_odds(p_verifier))
    return 1.0 / (1.0 + np.exp(-mean))
