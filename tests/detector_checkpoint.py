"""A fresh (untrained) detector saved as a training checkpoint, or exported, for export/evaluate/api tests."""

from __future__ import annotations

from pathlib import Path

import torch

from streaming_models import export
from streaming_models.model import ModelConfig, StreamingDetector


def write_checkpoint(path: Path, features: str = "logpow", top_hz: float | None = None) -> Path:
    torch.manual_seed(0)
    model = StreamingDetector(ModelConfig(features=features, conv_channels=32, gru_hidden=48, top_hz=top_hz))
    with torch.no_grad():
        model.frontend.fit_normalization(0.1 * torch.randn(2, 160 + 16000))
    torch.save({"model": model.state_dict(), "model_args": model.config.to_dict(), "policy": "by_objective",
                "corpus_hash": "0123456789abcdef", "step": 7, "thresholds": {"spoof": 0.6, "codec": 0.7},
                "dev_metrics": {"spoof_eer": 0.1}, "manifest": "m.jsonl"}, path)
    return path


def write_exported_model(folder: Path, name: str = "model.onnx") -> Path:
    """`write_checkpoint` exported to ONNX in `folder` (checkpoint beside it as ckpt.pt)."""
    model = folder / name
    export.export_checkpoint(write_checkpoint(folder / "ckpt.pt"), model)
    return model
