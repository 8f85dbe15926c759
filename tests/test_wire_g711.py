"""G.711 tables against independent references: CPython's documented `audioop` (the Sun
reference algorithm; in the stdlib up to 3.12) and values fixed by the ITU-T G.711 tables."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from daemon.wire import g711

ALL_CODES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def _audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            if sys.version_info < (3, 13):
                raise
            pytest.skip("audioop left the stdlib in Python 3.13")
    return audioop


def test_mulaw_decode_matches_audioop() -> None:
    reference = np.frombuffer(_audioop().ulaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(g711.mulaw_table_int16(), reference)
    np.testing.assert_array_equal(g711.decode_mulaw(ALL_CODES), reference.astype(np.float32) / 32768)


def test_alaw_decode_matches_audioop() -> None:
    reference = np.frombuffer(_audioop().alaw2lin(ALL_CODES, 2), dtype="<i2")
    np.testing.assert_array_equal(g711.alaw_table_int16(), reference)
    np.testing.assert_array_equal(g711.decode_alaw(ALL_CODES), reference.astype(np.float32) / 32768)


def test_encoders_match_audioop_on_every_int16() -> None:
    audioop = _audioop()
    assert g711.encode_mulaw(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)
    assert g711.encode_alaw(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


@pytest.mark.parametrize("code,linear", [
    (0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xEF, 132), (0x6F, -132),
])
def test_mulaw_known_values(code: int, linear: int) -> None:
    # G.711 µ-law: 0xFF/0x7F are the two zeros, 0x80/0x00 the extremes (+-8031 << 2)
    assert int(g711.mulaw_table_int16()[code]) == linear


@pytest.mark.parametrize("code,linear", [
    (0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256),
])
def test_alaw_known_values(code: int, linear: int) -> None:
    # G.711 A-law: even bits inverted (0x55); 0xD5 is the smallest positive step, 0xAA the largest
    assert int(g711.alaw_table_int16()[code]) == linear


def test_float_round_trip_error_is_within_one_quantisation_step() -> None:
    x = np.linspace(-0.99, 0.99, 4001, dtype=np.float32)
    for encode, decode in ((g711.encode_mulaw, g711.decode_mulaw), (g711.encode_alaw, g711.decode_alaw)):
        y = decode(encode(x))
        # logarithmic quantiser: error relative to magnitude stays under ~1/16 (one segment step)
        assert np.all(np.abs(y - x) <= 0.07 * np.abs(x) + 2e-3)
