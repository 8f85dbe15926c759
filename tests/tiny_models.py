"""Tiny but REAL streaming detectors for daemon tests, exported like the real one.

A GRU cell over per-frame log energies, unrolled over the frames of one hop, with the
hidden state as an explicit input/output (streaming_models/runtime/model_format.py). Weights are
seeded, so outputs are deterministic and depend on the audio AND on the carried state.
Built with torch (legacy exporter, dynamo=False); torch is imported only here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from streaming_models.runtime.model_format import (
    AUDIO_INPUT,
    LOGITS_OUTPUT,
    METADATA_KEY,
    ModelMetadata,
    StateSpec,
)


def tiny_metadata(model_id: str = "tiny-gru", sample_rate_hz: int = 16000, hop_samples: int = 1600,
                  hidden: int = 8) -> ModelMetadata:
    return ModelMetadata(model_id=model_id, sample_rate_hz=sample_rate_hz, hop_samples=hop_samples,
                         states=(StateSpec("state_in", "state_out", (hidden,)),), label_policy="test")


def build_tiny_model(directory: Path, metadata: ModelMetadata | None = None, frames_per_hop: int = 4,
                     seed: int = 0) -> tuple[Path, Path]:
    """Write `<model_id>.onnx` and its TorchScript twin `<model_id>.pt`; return both paths."""
    import onnx
    import torch

    meta = metadata or tiny_metadata()
    hidden = meta.states[0].shape[0]
    hop = meta.hop_samples
    if hop % frames_per_hop:
        raise ValueError("hop_samples must divide into frames_per_hop")

    class TinyGru(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = torch.nn.GRUCell(2, hidden)
            self.head = torch.nn.Linear(hidden, 2)

        def forward(self, audio: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            frames = audio.reshape(audio.shape[0], frames_per_hop, hop // frames_per_hop)  # [B, F, L]
            log_energy = torch.log(frames.pow(2).mean(dim=2) + 1e-6)  # [B, F]
            zero_cross = (frames[:, :, 1:] * frames[:, :, :-1] < 0).float().mean(dim=2)  # [B, F]
            h = state
            for f in range(frames_per_hop):
                x = torch.stack([log_energy[:, f] / 10.0, zero_cross[:, f]], dim=1)  # [B, 2]
                h = self.cell(x, h)
            return self.head(h) * 3.0, h  # logits [B, 2], state [B, hidden]

    torch.manual_seed(seed)
    model = TinyGru().eval()
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / f"{meta.model_id}.onnx"
    script_path = directory / f"{meta.model_id}.pt"
    example = (torch.zeros(2, hop), torch.zeros(2, hidden))
    state = meta.states[0]
    torch.onnx.export(
        model, example, str(onnx_path), dynamo=False, opset_version=17,
        input_names=[AUDIO_INPUT, state.input_name], output_names=[LOGITS_OUTPUT, state.output_name],
        dynamic_axes={AUDIO_INPUT: {0: "batch"}, state.input_name: {0: "batch"},
                      LOGITS_OUTPUT: {0: "batch"}, state.output_name: {0: "batch"}},
    )
    graph = onnx.load(str(onnx_path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(graph)
    onnx.save(graph, str(onnx_path))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13, still works
        scripted = torch.jit.trace(model, example)
        torch.jit.save(scripted, str(script_path), _extra_files={METADATA_KEY: meta.to_json()})
    return onnx_path, script_path
