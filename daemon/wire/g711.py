"""G.711 µ-law and A-law, as 256-entry decode tables and vectorised encoders.

The tables follow ITU-T G.711 as in the Sun reference implementation (g711.c) that
CPython's `audioop` also used: decoded values are 16-bit linear PCM, scaled here to
float32 in [-1, 1) by 1/32768. Stdlib + numpy only (clients import this).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

_SCALE = 1.0 / 32768.0
# upper bounds of the 8 segments (Sun g711.c seg_uend / seg_aend)
_MULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


@cache
def mulaw_table_int16() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    linear = np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84)
    table = linear.astype(np.int16)
    table.setflags(write=False)
    return table


@cache
def alaw_table_int16() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    magnitude = (code & 0x0F) << 4
    magnitude = np.where(segment == 0, magnitude + 8, magnitude + 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    linear = np.where(code & 0x80, magnitude, -magnitude)
    table = linear.astype(np.int16)
    table.setflags(write=False)
    return table


@cache
def _float_table(law: str) -> npt.NDArray[np.float32]:
    source = mulaw_table_int16() if law == "mulaw" else alaw_table_int16()
    table = (source.astype(np.float32) * np.float32(_SCALE)).astype(np.float32)
    table.setflags(write=False)
    return table


def decode_mulaw(data: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    codes = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return _float_table("mulaw").take(codes)


def decode_alaw(data: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    codes = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return _float_table("alaw").take(codes)


def _to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int32]:
    x = np.asarray(samples)
    if x.dtype == np.int16:
        return x.astype(np.int32)
    scaled = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype(np.int32)


def encode_mulaw(samples: npt.ArrayLike) -> bytes:
    """float samples in [-1, 1] (or int16) -> µ-law bytes."""
    pcm = _to_int16(samples) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(pcm), 8159) + 0x21
    segment = np.searchsorted(_MULAW_SEG_END, value, side="left")
    code = np.where(segment >= 8, 0x7F,
                    (np.minimum(segment, 7) << 4) | ((value >> (np.minimum(segment, 7) + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8).tobytes()


def encode_alaw(samples: npt.ArrayLike) -> bytes:
    """float samples in [-1, 1] (or int16) -> A-law bytes."""
    pcm = _to_int16(samples) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    value = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEG_END, value, side="left")
    mantissa = np.where(segment < 2, (value >> 1) & 0x0F, (value >> np.maximum(segment, 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, (np.minimum(segment, 7) << 4) | mantissa)
    return (code ^ mask).astype(np.uint8).tobytes()
