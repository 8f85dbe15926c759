"""Lyra v2 (SoundStream) neural codec from the shared TFLite models, run with ai-edge-litert.

Per 20 ms frame (320 samples at 16 kHz): soundstream_encoder -> quantizer `encode`
(keeps the first bitrate/50/4 of 46 residual stages, 4 bits each) -> quantizer `decode`
(unused stages are -1) -> lyragan decoder. The quantizer is stateless and its TFLite graph takes
one frame per invoke, so it runs as the same residual-VQ search in numpy over all frames at once,
with the codebooks read from quantizer.tflite and checked against the TFLite quantizer first. Encoder and decoder carry internal state across
frames that TFLite cannot reset, so every `apply` builds fresh interpreters (about 20 ms)
from model bytes held in memory: the output then depends only on the input, whatever ran before.
Measured delay (cross-correlation peak on the shipped clips, benchmarks/transforms.py): 0 samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streaming_models.data.transforms.base import (
    NeuralCodec,
    Objective,
    TransformUnavailable,
    model_dir_error,
)
from streaming_models.paths import shared_data_dir

FRAME_SAMPLES = 320
FEATURE_DIMS = 64
NUM_STAGES = 46
CODES_PER_STAGE = 16
BITRATES_BPS = {"3.2k": 3200, "6k": 6000, "9.2k": 9200}
MODEL_FILES = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")




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
        self._codebooks: np.ndarray | None = None  # verified RVQ codebooks, or empty: use TFLite

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
        num_frames = -(-len(audio) // FRAME_SAMPLES)
        padded = np.zeros(num_frames * FRAME_SAMPLES, np.float32)
        padded[: len(audio)] = audio
        features = self._encode(padded.reshape(num_frames, 1, FRAME_SAMPLES))  # (frames, 1, 64)
        return self._decode(self._quantize(features)).reshape(-1)  # (frames, 1, 320) -> samples

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        """Stateful SoundStream encoder, one 20 ms frame per invoke: (frames, 1, 320) -> (frames, 1, 64)."""
        encoder = self._load("soundstream_encoder.tflite")
        encoder.allocate_tensors()
        enc_in, enc_out = encoder.get_input_details()[0]["index"], encoder.get_output_details()[0]["index"]
        features = np.empty((len(frames), 1, FEATURE_DIMS), np.float32)
        for i, frame in enumerate(frames):
            encoder.set_tensor(enc_in, frame)
            encoder.invoke()
            features[i] = encoder.get_tensor(enc_out)[0]
        return features

    def _decode(self, features: np.ndarray) -> np.ndarray:
        """Stateful lyragan decoder: (frames, 1, 64) -> (frames, 1, 320)."""
        decoder = self._load("lyragan.tflite")
        decoder.allocate_tensors()
        dec_in, dec_out = decoder.get_input_details()[0]["index"], decoder.get_output_details()[0]["index"]
        out = np.empty((len(features), 1, FRAME_SAMPLES), np.float32)
        for i, frame_features in enumerate(features):
            decoder.set_tensor(dec_in, frame_features[None])  # (1, 1, 64)
            decoder.invoke()
            out[i] = decoder.get_tensor(dec_out)  # (1, 320)
        return out

    def _quantize(self, features: np.ndarray) -> np.ndarray:
        """Bitstream round trip: keep the first num_quantizers residual-VQ stages, decode them."""
        if self._codebooks is None:
            self._codebooks = self._verified_codebooks()
        if self._codebooks.size:
            return residual_vq(features.reshape(-1, FEATURE_DIMS), self._codebooks[: self.num_quantizers])[
                :, None, :]
        return self._quantize_tflite(features)

    def _quantize_tflite(self, features: np.ndarray) -> np.ndarray:
        quantizer = self._load("quantizer.tflite")
        quantize = quantizer.get_signature_runner("encode")
        dequantize = quantizer.get_signature_runner("decode")
        stages = np.array(self.num_quantizers, dtype=np.int32)
        out = np.empty_like(features)
        for i, frame_features in enumerate(features):
            indices = quantize(input_frames=frame_features[None], num_quantizers=stages)["output_0"].copy()
            indices[self.num_quantizers:] = -1  # (46, 1, 1): the bitstream carries only the first stages
            out[i] = dequantize(encoding_indices=indices)["output_0"][0]  # (1, 1, 64) -> (1, 64)
        return out

    def _verified_codebooks(self) -> np.ndarray:
        """The quantizer's 46 (16, 64) codebooks, if numpy RVQ with them matches the TFLite quantizer.

        The TFLite quantizer only takes one frame per invoke; the same search in numpy runs on all
        frames at once. If the model's constants are not where expected or disagree on probe
        frames, an empty array selects the (slower) TFLite path.
        """
        quantizer = self._load("quantizer.tflite")
        quantizer.allocate_tensors()
        by_name = {t["name"]: t["index"] for t in quantizer.get_tensor_details()}
        names = ["transpose"] + [f"transpose_{s}" for s in range(1, NUM_STAGES)]
        if not all(name in by_name for name in names):
            return np.empty(0, np.float32)
        books = np.stack([quantizer.get_tensor(by_name[name]) for name in names]).astype(np.float32)
        if books.shape != (NUM_STAGES, CODES_PER_STAGE, FEATURE_DIMS):
            return np.empty(0, np.float32)
        probe = np.random.default_rng(0).standard_normal((8, 1, FEATURE_DIMS)).astype(np.float32)
        probe *= np.float32(np.abs(books).mean() * 4)  # same scale as encoder features
        reference = self._quantize_tflite(probe)
        mine = residual_vq(probe.reshape(-1, FEATURE_DIMS), books[: self.num_quantizers])[:, None, :]
        return books if np.allclose(mine, reference, atol=1e-5) else np.empty(0, np.float32)


def residual_vq(features: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Greedy residual VQ encode + decode: (frames, dims), (stages, codes, dims) -> (frames, dims)."""
    residual = features.astype(np.float32).copy()
    decoded = np.zeros_like(residual)
    for book in codebooks:  # (codes, dims)
        # squared distances without the per-frame |r|^2 term, which does not change the argmin
        scores = (book * book).sum(axis=1)[None, :] - 2.0 * residual @ book.T  # (frames, codes)
        chosen = book[np.argmin(scores, axis=1)]
        residual -= chosen
        decoded += chosen
    return decoded


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise TransformUnavailable(
            "Lyra needs the PyPI package 'ai-edge-litert' (pip install 'spoofwatch[train]')"
        ) from exc
    return Interpreter
