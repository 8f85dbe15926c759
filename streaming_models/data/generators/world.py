"""WORLD vocoder analysis-resynthesis (pyworld): the classic statistical-parametric vocoder."""

from __future__ import annotations

import warnings

import numpy as np

from streaming_models.data.generators.base import GeneratorUnavailable, check_output, require_module


class WorldVocoder:
    family = "world"

    def check_available(self) -> None:
        require_module("pyworld", "pyworld")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pyworld  # noqa: F401
        except ImportError as exc:  # pyworld 0.3.5 needs pkg_resources, i.e. setuptools<81
            raise GeneratorUnavailable(f"pyworld does not import ({exc}): pip install 'setuptools<81'") from exc

    def resynthesize(
        self, audio: np.ndarray, sample_rate_hz: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyworld imports the deprecated pkg_resources
            import pyworld

        x = np.ascontiguousarray(audio, dtype=np.float64)
        frame_period_ms = 5.0
        f0, times = pyworld.dio(x, sample_rate_hz, frame_period=frame_period_ms)
        f0 = pyworld.stonemask(x, f0, times, sample_rate_hz)
        envelope = pyworld.cheaptrick(x, f0, times, sample_rate_hz)
        # d4c can return NaN on frames it cannot analyse; treat those as fully aperiodic (noise).
        aperiodicity = np.nan_to_num(pyworld.d4c(x, f0, times, sample_rate_hz), nan=1.0)
        # A mild pitch shift as voice-conversion systems apply; 1.0 keeps plain resynthesis.
        f0 = f0 * float(rng.choice([1.0, 1.0, rng.uniform(0.85, 1.18)]))
        y = pyworld.synthesize(f0, envelope, aperiodicity, sample_rate_hz, frame_period_ms)
        return check_output(y.astype(np.float32), sample_rate_hz, "WORLD resynthesis")
