"""Lyra v2 (SoundStream) neural codec from the shared TFLite models, run with ai-edge-litert.

Per 20 ms frame (320 samples at 16 kHz): soundstream_encoder -> quantizer `encode`
(keeps the first bitrate/50/4 of 46 residual stages, 4 bits each) -> quantizer `decode`
(unused stages are -1) -> lyragan decoder. Encoder and decoder carry internal state across
frames that TFLite cannot reset, so every `apply` builds fresh interpreters (about 20 ms)
from model bytes held in memory: the output then depends only on the input, whatever ran before.
Measured delay (cross-correlation peak on the shipped clips, benchmarks/transforms.py): 0 samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from streaming_models.data.transforms.base import (
    NeuralCodec,
    Objective,
    TransformUnavailable,
    model_dir_error,
)

FRAME_SAMPLES = 320
NUM_STAGES = 46
BITRATES_BPS = {"3.2k": 3200, "6k": 6000, "9.2k": 9200}
MODEL_FILES = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")
REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_data_dir() -> Path:
    return Path(os.environ.get("SPOOFWATCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def default_model_dir() -> Path:
    return shared_data_dir() / "codecs" / "lyra-v2"


def num_quantizers(bitrate_bps: int) -> int:
    return bitrate_bps // 50 // 4


class LyraCodec(NeuralCodec):
    codec_family = "lyra"
    codec_objective: Objective = "compression"
    native_rate_hz = 16000
    delay_samples = 0

    def __init__(self, bitrate: str, model_dir: Path | None = None, num_threads: int = 1) -> None:
        if bitrate not in BITRATES_BPS:
            raise ValueError(f"Lyra bitrate must be one of {sorted(BITRATES_BPS)}, got {bitrate!r}")
        super().__init__(f"lyra@{bitrate}")
        self.bitrate_bps = BITRATES_BPS[bitrate]
        self.num_quantizers = num_quantizers(self.bitrate_bps)
        self.model_dir = model_dir if model_dir is not None else default_model_dir()
        self.num_threads = num_threads
        self._model_bytes: dict[str, bytes] = {}

    def check_available(self) -> None:
        _interpreter_class()
        missing = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise model_dir_error(self.model_dir, f"Lyra v2 ({', '.join(missing)})")

    def _load(self, filename: str) -> Any:
        if filename not in self._model_bytes:
            self.check_available()
            self._model_bytes[filename] = (self.model_dir / filename).read_bytes()
        return _interpreter_class()(model_content=self._model_bytes[filename], num_threads=self.num_threads)

    def resynthesize(self, audio: np.ndarray) -> np.ndarray:
        encoder, quantizer, decoder = (self._load(f) for f in MODEL_FILES)
        encoder.allocate_tensors()
        decoder.allocate_tensors()
        enc_in, enc_out = encoder.get_input_details()[0]["index"], encoder.get_output_details()[0]["index"]
        dec_in, dec_out = decoder.get_input_details()[0]["index"], decoder.get_output_details()[0]["index"]
        quantize = quantizer.get_signature_runner("encode")
        dequantize = quantizer.get_signature_runner("decode")
        stages = np.array(self.num_quantizers, dtype=np.int32)

        num_frames = -(-len(audio) // FRAME_SAMPLES)
        padded = np.zeros(num_frames * FRAME_SAMPLES, np.float32)
        padded[: len(audio)] = audio
        frames = padded.reshape(num_frames, 1, FRAME_SAMPLES)  # (frames, batch 1, 320)
        out = np.empty_like(frames)
        for i in range(num_frames):
            encoder.set_tensor(enc_in, frames[i])
            encoder.invoke()
            features = encoder.get_tensor(enc_out)  # (1, 1, 64)
            indices = quantize(input_frames=features, num_quantizers=stages)["output_0"]  # (46, 1, 1)
            indices = indices.copy()
            indices[self.num_quantizers:] = -1  # the bitstream carries only the first stages
            decoded_features = dequantize(encoding_indices=indices)["output_0"]  # (1, 1, 64)
            decoder.set_tensor(dec_in, decoded_features)
            decoder.invoke()
            out[i] = decoder.get_tensor(dec_out)  # (1, 320)
        return out.reshape(-1)


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise TransformUnavailable(
            "Lyra needs the PyPI package 'ai-edge-litert' (pip install 'spoofwatch[train]')"
        ) from exc
    return Interpreter
