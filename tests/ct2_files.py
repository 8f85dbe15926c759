"""Write CTranslate2 model.bin files for the tests, so no test needs downloaded weights.

The writer follows the layout CTranslate2's model_spec serializes (binary version 6), written
here independently of streaming_models/verifier/ct2_weights.py, which reads it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DTYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, spec: str, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
                    revision: int = 3, version: int = 6) -> Path:
    """bfloat16 is written for arrays of dtype uint16 whose name ends in ':bf16' (the suffix dropped)."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision), struct.pack("<I", len(variables))]
    for name, array in variables.items():
        dtype_id = 5 if name.endswith(":bf16") else DTYPE_IDS[str(array.dtype)]
        out.append(_string(name.removesuffix(":bf16")))
        out.append(struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape))
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        out.append(struct.pack("<B", dtype_id) + struct.pack("<I", len(data)) + data)
    out.append(struct.pack("<I", len(aliases or {})))
    for alias, target in (aliases or {}).items():
        out.append(_string(alias) + _string(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def tiny_whisper_variables(rng: np.random.Generator, width: int = 32, heads: int = 2, layers: int = 2,
                           n_mels: int = 80, positions: int = 1500) -> dict[str, np.ndarray]:
    """The encoder variables of a WhisperSpec model, random, in float16, plus a decoder stand-in."""
    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float16)

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}/beta": weight(width) * 0.1, f"{prefix}/gamma": (1 + 0.1 * weight(width)).astype(np.float16)}

    variables = {"decoder/alignment_heads": np.array(1, np.int16),
                 "decoder/embeddings/weight": weight(16, width),
                 "encoder/conv1/bias": weight(width), "encoder/conv1/weight": weight(width, n_mels, 3),
                 "encoder/conv2/bias": weight(width), "encoder/conv2/weight": weight(width, width, 3)}
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        variables |= norm(p + "ffn/layer_norm") | norm(p + "self_attention/layer_norm")
        variables |= {p + "ffn/linear_0/weight": weight(4 * width, width), p + "ffn/linear_0/bias": weight(4 * width),
                      p + "ffn/linear_1/weight": weight(width, 4 * width), p + "ffn/linear_1/bias": weight(width),
                      p + "self_attention/linear_0/weight": weight(3 * width, width),
                      p + "self_attention/linear_0/bias": weight(3 * width),
                      p + "self_attention/linear_1/weight": weight(width, width),
                      p + "self_attention/linear_1/bias": weight(width)}
    variables |= norm("encoder/layer_norm")
    variables["encoder/num_heads"] = np.array(heads, np.int16)
    t = np.arange(positions)[:, None] / 10000 ** (np.arange(width // 2)[None, :] / (width // 2 - 1))
    variables["encoder/position_encodings/encodings"] = np.concatenate([np.sin(t), np.cos(t)], 1).astype(np.float16)
    return variables


def write_tiny_whisper(folder: Path, seed: int = 0, **dims: int) -> Path:
    """A CTranslate2 Whisper folder (model.bin) with a tiny random encoder; returns the folder."""
    variables = tiny_whisper_variables(np.random.default_rng(seed), **dims)
    write_model_bin(folder / "model.bin", "WhisperSpec", variables,
                    aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    return folder
