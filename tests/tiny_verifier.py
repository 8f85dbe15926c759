"""A tiny but REAL second-tier verifier for daemon tests: the verifier model of
streaming_models/verifier/model.py on a Whisper-shaped encoder with tiny dims and seeded random
weights (no Whisper weights needed), exported with its own `export_onnx`, metadata included.
torch is imported only here."""

from __future__ import annotations

from pathlib import Path

TINY_MAX_POSITIONS = 150  # 3 s of encoder positions: a longer window fails, as 30 s does for Whisper


def build_tiny_verifier(path: Path, window_s: float = 1.0, seed: int = 0) -> Path:
    import torch

    from streaming_models.verifier.model import Verifier, VerifierConfig, export_onnx
    from streaming_models.verifier.whisper_encoder import (
        SAMPLE_RATE_HZ,
        EncoderDims,
        WhisperEncoder,
    )

    torch.manual_seed(seed)
    dims = EncoderDims(width=16, heads=2, layers=1, max_positions=TINY_MAX_POSITIONS)
    model = Verifier(WhisperEncoder(dims), VerifierConfig(trainable_blocks=1, pool_hidden=8))
    with torch.no_grad():  # positions are a zero buffer until weights are loaded; give them values
        model.encoder.positions.normal_(0.0, 0.1)
        model.out.weight.mul_(4.0)  # spread the probabilities, so windows of different audio differ visibly
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, path, round(window_s * SAMPLE_RATE_HZ), model_id="tiny-verifier")
    return path
