"""Audio transforms by name: neural codecs, telephone codecs and channel effects.

A spec is `family` or `family@parameter`, e.g. "lyra@6k", "g711-mulaw", "opus@12k", "gsm",
"amr-nb@12.2k", "codec2@1300", "bandlimit@8k", "gain@-6dB", "noise-pink@20dB", "rnnoise".
The spec is also the transform's `name`, which goes into the manifest's `channel` chain.

To add a neural codec: subclass `NeuralCodec` (base.py) in its own module and add one
`_Family` line to `_FAMILIES` in registry.py.
"""

from __future__ import annotations

from streaming_models.data.transforms.base import (
    SAMPLE_RATE_HZ,
    AudioTransform,
    NeuralCodec,
    TransformUnavailable,
)
from streaming_models.data.transforms.chain import ChainConfig, ChannelChain
from streaming_models.data.transforms.registry import get_transform, list_transforms

__all__ = [
    "SAMPLE_RATE_HZ",
    "AudioTransform",
    "ChainConfig",
    "ChannelChain",
    "NeuralCodec",
    "TransformUnavailable",
    "get_transform",
    "list_transforms",
]
