"""Label policies: codec-aware item labels -> training targets for the two heads.

See docs/labels.md for why. The codec head's target never depends on the policy:
it is 1 exactly when the audio went through a neural codec. The policy decides
what neural-codec resynthesis of *genuine* speech means for the spoof head.
"""

from __future__ import annotations

from typing import Literal, get_args

from streaming_models.data.manifest import CorpusItem

Policy = Literal["codec_as_bonafide", "codec_as_spoof", "by_objective"]
POLICIES: tuple[str, ...] = get_args(Policy)


def check_policy(policy: str) -> Policy:
    if policy not in POLICIES:
        raise ValueError(f"label policy must be one of {POLICIES}, got {policy!r}")
    return policy  # type: ignore[return-value]


def spoof_target(item: CorpusItem, policy: Policy) -> int:
    if item.source == "spoof":
        return 1
    if item.codec != "neural":
        return 0
    if policy == "codec_as_bonafide":
        return 0
    if policy == "codec_as_spoof":
        return 1
    # by_objective: compression codecs transport genuine speech; synthesis codecs are TTS token spaces.
    return 1 if item.codec_objective == "synthesis" else 0


def codec_target(item: CorpusItem) -> int:
    return 1 if item.codec == "neural" else 0


def targets(item: CorpusItem, policy: Policy) -> tuple[int, int]:
    """(spoof, codec) targets, in the order of model_format.HEADS."""
    return spoof_target(item, policy), codec_target(item)
