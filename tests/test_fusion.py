"""streaming_models/runtime/fusion.py: the fixed rule that fuses the streaming and verifier scores."""

import numpy as np

from streaming_models.runtime.fusion import fuse_log_odds_mean, log_odds


def test_agreeing_scores_keep_their_value() -> None:
    p = np.array([0.05, 0.3, 0.7, 0.99])
    np.testing.assert_allclose(fuse_log_odds_mean(p, p), p, atol=1e-9)


def test_opposite_log_odds_cancel_to_one_half() -> None:
    np.testing.assert_allclose(fuse_log_odds_mean([0.9, 0.2], [0.1, 0.8]), [0.5, 0.5], atol=1e-9)


def test_one_undecided_model_moves_the_other_halfway_in_log_odds() -> None:
    fused = fuse_log_odds_mean(0.99, 0.5)
    np.testing.assert_allclose(log_odds(fused), 0.5 * log_odds(0.99), atol=1e-9)
    assert 0.5 < float(fused) < 0.99


def test_certain_scores_stay_finite() -> None:
    fused = fuse_log_odds_mean([0.0, 1.0, 1.0], [0.0, 1.0, 0.0])
    assert np.all(np.isfinite(fused))
    assert fused[0] < 1e-5 and fused[1] > 1 - 1e-5 and abs(fused[2] - 0.5) < 1e-9
